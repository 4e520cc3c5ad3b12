//! `check --json`: one object, written whole or streamed row by row.

use std::io::{self, Write};
use std::net::SocketAddr;

use super::StateName;
use crate::decide::{Containers, Entry};
use crate::procread::TcpState;
use crate::sink::{Sink, Trailer, Verdict};

/// Writes the `check --json` object of a whole verdict; `ignored` only
/// when `all`. Bytes are written by hand, not through `write!`: at 18,000
/// rows the formatting machinery was most of `check`'s own CPU time.
pub fn write_json(
    w: &mut impl Write,
    verdict: &Verdict,
    all: bool,
    containers: &Containers,
    fields: Vec<u8>,
) -> io::Result<()> {
    let mut json = JsonSink::new(w, containers)?.ending_with(fields);
    for e in verdict.blocking() {
        json.write_entry(&e)?;
    }
    json.end(all.then(|| verdict.ignored()), &verdict.trailer)
}

/// `check --json` as a [`Sink`]: each blocking entry written as the pass
/// decides it, through one reused buffer, so neither the document nor its
/// rows are ever held. Give it a buffered writer. Its output is the number
/// of blocking sockets, for the exit code.
pub struct JsonSink<'w, W: Write> {
    w: &'w mut W,
    out: Vec<u8>,
    entries: usize,
    /// The trailer's `containers` object, written at the end.
    containers: Vec<u8>,
    /// Fields written after it, each with its leading comma.
    fields: Vec<u8>,
}

impl<'w, W: Write> JsonSink<'w, W> {
    /// Writes the opening `{"blocking":[`; the trailer will say how
    /// `containers` are told apart.
    pub fn new(w: &'w mut W, containers: &Containers) -> io::Result<Self> {
        w.write_all(b"{\"blocking\":[")?;
        let mut c = Vec::new();
        match containers {
            Containers::Cgroup(id) => {
                c.extend_from_slice(b"{\"by\":\"cgroup\",\"cgroup\":");
                push_u64(&mut c, *id);
                c.extend_from_slice(b",\"why\":null}");
            }
            Containers::Flags(why) => {
                c.extend_from_slice(b"{\"by\":\"uid\",\"cgroup\":null,\"why\":");
                json_string(&mut c, why);
                c.push(b'}');
            }
        }
        Ok(JsonSink {
            w,
            out: Vec::with_capacity(256),
            entries: 0,
            containers: c,
            fields: Vec::new(),
        })
    }

    /// Ends the object with `fields`, already JSON, each with its leading
    /// comma (`check`'s `quiesce` view: the caller's to render).
    pub fn ending_with(mut self, fields: Vec<u8>) -> Self {
        self.fields = fields;
        self
    }

    fn write_entry(&mut self, e: &Entry) -> io::Result<()> {
        self.out.clear();
        if self.entries > 0 {
            self.out.push(b',');
        }
        self.entries += 1;
        json_entry(&mut self.out, e);
        self.w.write_all(&self.out)
    }

    /// Closes the array, writes `ignored` if given (`--all`) and the trailer.
    fn end<'a>(
        mut self,
        ignored: Option<impl Iterator<Item = Entry<'a>>>,
        t: &Trailer,
    ) -> io::Result<()> {
        self.w.write_all(b"]")?;
        if let Some(ignored) = ignored {
            self.w.write_all(b",\"ignored\":[")?;
            for (i, e) in ignored.enumerate() {
                self.out.clear();
                if i > 0 {
                    self.out.push(b',');
                }
                json_entry(&mut self.out, &e);
                self.w.write_all(&self.out)?;
            }
            self.w.write_all(b"]")?;
        }
        write!(
            self.w,
            ",\"uninspected_processes\":{},\"unreadable_fds\":{},\"host_network\":{},\"source\":\"{}\",\"containers\":",
            t.uninspected_processes, t.unreadable_fds, t.host_network, t.source
        )?;
        self.w.write_all(&self.containers)?;
        self.w.write_all(&self.fields)?;
        self.w.write_all(b"}\n")
    }
}

impl<W: Write> Sink for JsonSink<'_, W> {
    type Output = io::Result<usize>;

    fn entry(&mut self, _seq: usize, e: &Entry<'_>) -> io::Result<()> {
        self.write_entry(e)
    }

    fn finish(self, trailer: &Trailer) -> io::Result<usize> {
        self.end(None::<std::iter::Empty<Entry>>, trailer)?;
        Ok(trailer.blocking)
    }
}

/// One entry; `reason` only for the ignored ones.
fn json_entry(out: &mut Vec<u8>, e: &Entry) {
    let s = e.socket;
    out.extend_from_slice(b"{\"state\":\"");
    out.extend_from_slice(s.state.as_str().as_bytes());
    out.extend_from_slice(b"\",\"local\":\"");
    push_addr(out, &s.local);
    out.extend_from_slice(b"\",\"remote\":\"");
    push_addr(out, &s.remote);
    out.extend_from_slice(b"\",\"uid\":");
    push_int(out, s.uid);
    out.extend_from_slice(b",\"inode\":");
    push_u64(out, s.inode);
    // A listener's tcp_info says nothing of traffic.
    if let (Some(info), false) = (s.info, s.state == TcpState::Listen) {
        out.extend_from_slice(b",\"idle_ms\":");
        push_u64(out, info.last_data_recv_ms.into());
    }
    match e.container {
        Some(this) => {
            out.extend_from_slice(b",\"cgroup\":");
            push_u64(out, s.cgroup);
            out.extend_from_slice(if this {
                b",\"this_container\":true"
            } else {
                b",\"this_container\":false"
            });
        }
        None => out.extend_from_slice(b",\"cgroup\":null,\"this_container\":null"),
    }
    match e.holders.first() {
        Some(h) => {
            out.extend_from_slice(b",\"pid\":");
            push_int(out, h.pid);
            out.extend_from_slice(b",\"process\":");
            json_string(out, h.name());
        }
        None => out.extend_from_slice(b",\"pid\":null,\"process\":null"),
    }
    out.extend_from_slice(b",\"direction\":\"");
    out.extend_from_slice(e.direction.as_str().as_bytes());
    out.extend_from_slice(if e.to_proxy() {
        b"\",\"to_proxy\":true"
    } else {
        b"\",\"to_proxy\":false"
    });
    if let Some(r) = e.reason {
        out.extend_from_slice(b",\"reason\":\"");
        out.extend_from_slice(r.as_str().as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// Appends an integer in decimal, as `Display` would (u64 arithmetic: a
/// wider type made this a 128-bit division per digit).
pub(super) fn push_int(out: &mut Vec<u8>, n: impl Into<i64>) {
    let n: i64 = n.into();
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends an unsigned integer in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends an address as `ss` prints it. IPv4, nearly every row, by hand;
/// IPv6 through std, for its `::` compression and mapped form.
pub(super) fn push_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_int(out, octet);
            }
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "[{}]", v6.ip());
        }
    }
    out.push(b':');
    push_int(out, a.port());
}

/// Appends `s` as a JSON string literal. Process names come from `comm`, which
/// any process can set to arbitrary bytes, so everything is escaped.
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}
