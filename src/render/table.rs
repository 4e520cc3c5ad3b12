//! `check`'s table: columns as wide as their widest cell, like `ss`.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::StateName;
use super::{
    Addr, HOST_NETWORK_NOTE, direction_label, ignore_uid_hint, owner, owner_summary,
    uninspected_note,
};
use crate::decide::Entry;
use crate::sink::Verdict;

/// The column titles of the `check` table; VERDICT only with `--all`.
const HEADER: [&str; 7] = [
    "STATE",
    "LOCAL",
    "REMOTE",
    "DIRECTION",
    "UID",
    "PROCESS",
    "VERDICT",
];

/// The rows the table shows, each with its VERDICT cell.
fn table_rows(verdict: &Verdict, all: bool) -> impl Iterator<Item = (Entry<'_>, &'static str)> {
    let blocking = verdict.blocking().map(|e| (e, "blocks"));
    let ignored = verdict
        .ignored()
        .filter(move |_| all)
        .map(|e| (e, e.reason.map_or("", |r| r.as_str())));
    blocking.chain(ignored)
}

/// Fills one row's cells, reusing their buffers.
fn fill_cells(cells: &mut [String; 7], e: &Entry, verdict_cell: &str) {
    for c in cells.iter_mut() {
        c.clear();
    }
    cells[0].push_str(e.socket.state.as_str());
    let _ = write!(cells[1], "{}", Addr(&e.socket.local));
    let _ = write!(cells[2], "{}", Addr(&e.socket.remote));
    cells[3].push_str(direction_label(e));
    let _ = write!(cells[4], "{}", e.socket.uid);
    cells[5].push_str(&owner(e));
    cells[6].push_str(verdict_cell);
}

/// One table line: every cell but the last padded to its column's width.
/// `{:<w$}` pads by characters, so widths count characters too.
fn write_line(
    w: &mut impl Write,
    line: &mut String,
    cells: &[&str],
    widths: &[usize; 7],
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
/// memory as 126,000 strings.
pub fn write_text(w: &mut impl Write, verdict: &Verdict, all: bool) -> io::Result<()> {
    let columns = if all { 7 } else { 6 };
    let mut cells: [String; 7] = Default::default();
    let mut widths = HEADER.map(str::len);
    let mut any = false;
    for (e, why) in table_rows(verdict, all) {
        any = true;
        fill_cells(&mut cells, &e, why);
        for (w, c) in widths.iter_mut().zip(&cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = String::new();
    if any {
        write_line(w, &mut line, &HEADER[..columns], &widths)?;
        for (e, why) in table_rows(verdict, all) {
            fill_cells(&mut cells, &e, why);
            let refs: [&str; 7] = std::array::from_fn(|i| cells[i].as_str());
            write_line(w, &mut line, &refs[..columns], &widths)?;
        }
    }
    match verdict.blocking_count() {
        0 => writeln!(w, "nothing blocks")?,
        1 => writeln!(w, "1 socket blocks")?,
        n => writeln!(w, "{n} sockets block")?,
    }
    let owners = verdict.owners();
    if !owners.is_empty() {
        writeln!(w, "by owner: {}", owner_summary(&owners))?;
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
