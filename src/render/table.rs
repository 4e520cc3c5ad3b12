//! `check`'s table: columns as wide as their widest cell, like `ss`.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::StateName;
use super::{
    Addr, HOST_NETWORK_NOTE, direction_label, ignore_uid_hint, owner, owner_summary, owners_by,
    uninspected_note,
};
use crate::decide::Entry;
use crate::sink::Verdict;

/// The column titles of the `check` table: CONTAINER only where the
/// cgroup tells containers apart, VERDICT only with `--all`.
const HEADER: [&str; 8] = [
    "CONTAINER",
    "STATE",
    "LOCAL",
    "REMOTE",
    "DIRECTION",
    "UID",
    "PROCESS",
    "VERDICT",
];

/// The rows the table shows, each with its VERDICT cell: blocking ones
/// first, then (`--all`) the others, each part grouped by container (this
/// one's first, then by cgroup id), in table order within a container.
fn table_rows(verdict: &Verdict, all: bool) -> Vec<(Entry<'_>, &'static str)> {
    let by_container = |e: &Entry| match e.container {
        Some(true) => (0, 0),
        Some(false) => (1, e.socket.cgroup),
        None => (2, 0),
    };
    let mut blocking: Vec<_> = verdict.blocking().map(|e| (e, "blocks")).collect();
    blocking.sort_by_key(|(e, _)| by_container(e));
    let mut ignored: Vec<_> = verdict
        .ignored()
        .filter(|_| all)
        .map(|e| (e, e.reason.map_or("", |r| r.as_str())))
        .collect();
    ignored.sort_by_key(|(e, _)| by_container(e));
    blocking.extend(ignored);
    blocking
}

/// Fills one row's cells, reusing their buffers.
fn fill_cells(cells: &mut [String; 8], e: &Entry, verdict_cell: &str) {
    for c in cells.iter_mut() {
        c.clear();
    }
    match e.container {
        Some(true) => cells[0].push_str("this"),
        Some(false) => {
            let _ = write!(cells[0], "{}", e.socket.cgroup);
        }
        None => cells[0].push('-'),
    }
    cells[1].push_str(e.socket.state.as_str());
    let _ = write!(cells[2], "{}", Addr(&e.socket.local));
    let _ = write!(cells[3], "{}", Addr(&e.socket.remote));
    cells[4].push_str(direction_label(e));
    let _ = write!(cells[5], "{}", e.socket.uid);
    cells[6].push_str(&owner(e));
    cells[7].push_str(verdict_cell);
}

/// One table line: every cell but the last padded to its column's width.
/// `{:<w$}` pads by characters, so widths count characters too.
fn write_line(
    w: &mut impl Write,
    line: &mut String,
    cells: &[&str],
    widths: &[usize],
) -> io::Result<()> {
    line.clear();
    for (i, c) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            line.push_str(c);
        } else {
            let _ = write!(line, "{c:<width$}  ", width = widths[i]);
        }
    }
    line.push('\n');
    w.write_all(line.as_bytes())
}

/// Writes the human table: one socket a line, like `ss`, then a one-line summary.
///
/// Cells are formatted twice (once to size the columns, once to write) rather
/// than held: at node scale a table of 18,000 rows would otherwise sit in
/// memory as 144,000 strings; only the rows' order (borrowed entries) is.
pub fn write_text(w: &mut impl Write, verdict: &Verdict, all: bool) -> io::Result<()> {
    let rows = table_rows(verdict, all);
    // CONTAINER where the cgroup tells; VERDICT with --all.
    let first = if rows.iter().any(|(e, _)| e.container.is_some()) {
        0
    } else {
        1
    };
    let end = if all { 8 } else { 7 };
    let mut cells: [String; 8] = Default::default();
    let mut widths = HEADER.map(str::len);
    for (e, why) in &rows {
        fill_cells(&mut cells, e, why);
        for (w, c) in widths.iter_mut().zip(&cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = String::new();
    if !rows.is_empty() {
        write_line(w, &mut line, &HEADER[first..end], &widths[first..])?;
        for (e, why) in &rows {
            fill_cells(&mut cells, e, why);
            let refs: [&str; 8] = std::array::from_fn(|i| cells[i].as_str());
            write_line(w, &mut line, &refs[first..end], &widths[first..])?;
        }
    }
    match verdict.blocking_count() {
        0 => writeln!(w, "nothing blocks")?,
        1 => writeln!(w, "1 socket blocks")?,
        n => writeln!(w, "{n} sockets block")?,
    }
    let owners = verdict.owners();
    if !owners.is_empty() {
        writeln!(w, "by {}: {}", owners_by(&owners), owner_summary(&owners))?;
        writeln!(w, "hint: {}", ignore_uid_hint(&owners))?;
    }
    let t = &verdict.trailer;
    if let Some(note) = uninspected_note(t.uninspected_processes, t.unreadable_fds) {
        writeln!(w, "note: {note}")?;
    }
    if t.host_network {
        writeln!(w, "note: {HOST_NETWORK_NOTE}")?;
    }
    Ok(())
}
