//! `check`'s table: columns as wide as their widest cell, like `ss`.

use std::io::{self, Write};

use super::StateName;
use super::json::{push_addr, push_u64};
use super::{
    HOST_NETWORK_NOTE, direction_label, ignore_uid_hint, owner, owner_summary, owners_by,
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

/// Fills one row's cells, reusing their buffers. Bytes are pushed by hand
/// (the JSON's integer and address writers), not through `write!`: at
/// 18,000 rows, each formatted twice, `core::fmt` and an allocation per
/// address were most of the table's own cost.
fn fill_cells(cells: &mut [Vec<u8>; 8], e: &Entry, verdict_cell: &str) {
    for c in cells.iter_mut() {
        c.clear();
    }
    match e.container {
        Some(true) => cells[0].extend_from_slice(b"this"),
        Some(false) => push_u64(&mut cells[0], e.socket.cgroup),
        None => cells[0].push(b'-'),
    }
    cells[1].extend_from_slice(e.socket.state.as_str().as_bytes());
    push_addr(&mut cells[2], &e.socket.local);
    push_addr(&mut cells[3], &e.socket.remote);
    cells[4].extend_from_slice(direction_label(e).as_bytes());
    push_u64(&mut cells[5], e.socket.uid.into());
    cells[6].extend_from_slice(owner(e).as_bytes());
    cells[7].extend_from_slice(verdict_cell.as_bytes());
}

/// A cell's width in characters (cells are UTF-8: count all but
/// continuation bytes).
fn width(cell: &[u8]) -> usize {
    cell.iter().filter(|&&b| b & 0xC0 != 0x80).count()
}

/// One table line: every cell but the last padded with spaces to its
/// column's width in characters.
fn write_line(
    w: &mut impl Write,
    line: &mut Vec<u8>,
    cells: &[&[u8]],
    widths: &[usize],
) -> io::Result<()> {
    line.clear();
    for (i, c) in cells.iter().enumerate() {
        line.extend_from_slice(c);
        if i + 1 < cells.len() {
            let pad = widths[i].saturating_sub(width(c)) + 2;
            line.resize(line.len() + pad, b' ');
        }
    }
    line.push(b'\n');
    w.write_all(line)
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
    let mut cells: [Vec<u8>; 8] = Default::default();
    let mut widths = HEADER.map(str::len);
    for (e, why) in &rows {
        fill_cells(&mut cells, e, why);
        for (w, c) in widths.iter_mut().zip(&cells) {
            *w = (*w).max(width(c));
        }
    }
    let mut line = Vec::new();
    if !rows.is_empty() {
        let header = HEADER.map(str::as_bytes);
        write_line(w, &mut line, &header[first..end], &widths[first..])?;
        for (e, why) in &rows {
            fill_cells(&mut cells, e, why);
            let refs: [&[u8]; 8] = std::array::from_fn(|i| cells[i].as_slice());
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
