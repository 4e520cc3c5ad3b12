//! Rendering decided sockets: the `check` table, `check --json` (also as a
//! [`Sink`] that writes each entry as it is decided), and the fragments
//! `wait` logs, into any writer. Only formatting happens here: every fact
//! comes decided in the [`Entry`].

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;

use crate::decide::{Direction, Entry, StateName};
use crate::procread::TcpState;
use crate::sink::{OwnerGroup, Sink, Trailer, Verdict};

/// Displays an address as `ss` does: IPv6 in brackets,
/// `[::ffff:1.2.3.4]:80` for mapped. Through [`push_addr`], the one
/// formatter of addresses, so the table, the log and JSON agree.
pub struct Addr<'a>(pub &'a SocketAddr);

impl std::fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::with_capacity(64);
        push_addr(&mut out, self.0);
        // push_addr writes ASCII only.
        f.write_str(std::str::from_utf8(&out).map_err(|_| std::fmt::Error)?)
    }
}

/// A name safe for a terminal or a log line: any process can set its
/// `comm` to newlines or escape sequences (and a path may hold them too), so
/// control characters are escaped.
pub fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        name.into()
    }
}

/// `pid/name` of the first visible holder, `-` when none is visible.
fn owner(entry: &Entry) -> String {
    match entry.holders.first() {
        Some(h) => {
            let name = printable(h.name());
            let more = entry.holders.len() - 1;
            if more > 0 {
                format!("{}/{} (+{more})", h.pid, name)
            } else {
                format!("{}/{}", h.pid, name)
            }
        }
        None => "-".to_owned(),
    }
}

/// `listen`, `inbound`, `outbound`, or `outbound>proxy` when the peer is the
/// proxy's own capture port.
pub fn direction_label(entry: &Entry) -> &'static str {
    if entry.to_proxy() {
        "outbound>proxy"
    } else {
        entry.direction.as_str()
    }
}

/// One socket for a log line, `STATE local -> remote (who)`, with the
/// direction for connections:
/// `ESTABLISHED 127.0.0.1:40000 -> 127.0.0.1:15001 outbound>proxy (uid 1000)`.
pub fn describe(entry: &Entry) -> String {
    let s = entry.socket;
    let who = match entry.holders.first() {
        Some(_) => format!("pid {}", owner(entry)),
        None => format!("uid {}", s.uid),
    };
    let direction = match entry.direction {
        // "LISTEN ... listen" says nothing twice.
        Direction::Listen => String::new(),
        _ => format!(" {}", direction_label(entry)),
    };
    format!(
        "{} {} -> {}{direction} ({who})",
        s.state.as_str(),
        Addr(&s.local),
        Addr(&s.remote),
    )
}

/// The first `max` of `count` entries joined for a log line, with `and N more`.
pub fn summary<'a>(entries: impl Iterator<Item = Entry<'a>>, count: usize, max: usize) -> String {
    let mut out = entries
        .take(max)
        .map(|e| describe(&e))
        .collect::<Vec<_>>()
        .join(", ");
    if count > max {
        let _ = write!(out, ", and {} more", count - max);
    }
    out
}

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

/// Said once by `wait` and by `check` when the tables are the node's.
pub const HOST_NETWORK_NOTE: &str = "these are the node's sockets, not a pod's (the kubelet's port 10250 is listening: hostNetwork: true); every socket on the node counts, so the wait lasts until --timeout (see README, hostNetwork pods)";

/// How many local ports a group names before `+N more`.
const GROUP_PORTS: usize = 8;

/// `uid 1000: 2 sockets (local ports 8080, 9090); uid 65532: 1 socket (local port 5432)`.
pub fn owner_summary(groups: &[OwnerGroup]) -> String {
    let mut out = String::new();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(
            out,
            "uid {}: {}",
            g.uid,
            count(g.sockets, "socket", "sockets")
        );
        let ports: Vec<String> = g
            .ports
            .iter()
            .take(GROUP_PORTS)
            .map(u16::to_string)
            .collect();
        let _ = write!(
            out,
            " ({} {}",
            if g.ports.len() == 1 {
                "local port"
            } else {
                "local ports"
            },
            ports.join(", ")
        );
        if g.ports.len() > GROUP_PORTS {
            let _ = write!(out, ", +{} more", g.ports.len() - GROUP_PORTS);
        }
        out.push(')');
    }
    out
}

/// How to excuse another container than the app: nothing in the tables tells
/// containers apart (they share the network namespace, and the hook cannot
/// see the others' processes), but each usually runs as its own uid.
pub fn ignore_uid_hint(groups: &[OwnerGroup]) -> String {
    let uids: Vec<String> = groups.iter().map(|g| g.uid.to_string()).collect();
    format!(
        "if a uid here belongs to another container than the app (a log shipper, vault-agent, a native sidecar), excuse it with --ignore-uid UID (uids here: {})",
        uids.join(", ")
    )
}

/// `1 socket`, `2 sockets`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Says what the fd scan could not look at, or `None` when it saw everything.
///
/// Without `CAP_SYS_PTRACE` (the hook's normal case: uid 1337, capabilities
/// dropped) the fds of other uids' processes cannot be read, and then their
/// sockets show no process and block, which is the safe side.
pub fn uninspected_note(processes: usize, fds: usize) -> Option<String> {
    let mut parts = Vec::new();
    match processes {
        0 => {}
        1 => parts.push("1 process".to_owned()),
        n => parts.push(format!("{n} processes")),
    }
    match fds {
        0 => {}
        1 => parts.push("1 fd".to_owned()),
        n => parts.push(format!("{n} fds")),
    }
    (!parts.is_empty()).then(|| {
        format!(
            "could not inspect {} (no permission); sockets held only there show no process and block",
            parts.join(" and ")
        )
    })
}

/// Writes the `check --json` object of a whole verdict; `ignored` only
/// when `all`. Bytes are written by hand, not through `write!`: at 18,000
/// rows the formatting machinery was most of `check`'s own CPU time.
pub fn write_json(w: &mut impl Write, verdict: &Verdict, all: bool) -> io::Result<()> {
    let mut json = JsonSink::new(w)?;
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
}

impl<'w, W: Write> JsonSink<'w, W> {
    /// Writes the opening `{"blocking":[`.
    pub fn new(w: &'w mut W) -> io::Result<Self> {
        w.write_all(b"{\"blocking\":[")?;
        Ok(JsonSink {
            w,
            out: Vec::with_capacity(256),
            entries: 0,
        })
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
        writeln!(
            self.w,
            ",\"uninspected_processes\":{},\"unreadable_fds\":{},\"host_network\":{},\"source\":\"{}\"}}",
            t.uninspected_processes, t.unreadable_fds, t.host_network, t.source
        )
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
fn push_int(out: &mut Vec<u8>, n: impl Into<i64>) {
    let n: i64 = n.into();
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends an unsigned integer in decimal.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
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
fn push_addr(out: &mut Vec<u8>, a: &SocketAddr) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{PodFacts, Rules};
    use crate::procread::{Holder, Holders, Socket, TcpState};

    fn addr(a: &SocketAddr) -> String {
        Addr(a).to_string()
    }

    /// A row of uid 1000 (blocks) or 1337 (the proxy's), inode from its place.
    fn sock(state: TcpState, local: &str, remote: &str, uid: u32) -> Socket {
        Socket {
            state,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            uid,
            inode: 0,
            rx_queue: 0,
            tx_queue: 0,
            info: None,
        }
    }

    /// Decides `rows` as a poll would, with `--all`: proxy uid 1337, proxy
    /// process `envoy`, each row's holder (pid, comm) if any.
    fn verdict(rows: Vec<(Socket, Option<(i32, &str)>)>) -> Verdict {
        let rules = Rules {
            proxy_uids: vec![1337],
            proxy_names: vec!["envoy".into()],
            ..Rules::default()
        };
        let mut facts = PodFacts::default();
        let mut pairs = Vec::new();
        let mut sockets = Vec::new();
        for (i, (mut s, holder)) in rows.into_iter().enumerate() {
            s.inode = 42 + i as u64;
            facts.note(&s, &rules);
            if let Some((pid, comm)) = holder {
                pairs.push((s.inode, Holder::new(pid, comm, comm)));
            }
            sockets.push(s);
        }
        crate::pass::decide_rows(
            &[&sockets],
            &Holders::from_pairs(pairs),
            &rules,
            facts,
            crate::sink::Collect::new(true),
        )
        .unwrap()
    }

    fn listen(local: &str) -> Socket {
        let any = if local.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        sock(TcpState::Listen, local, any, 1000)
    }

    fn first(v: &Verdict) -> String {
        describe(&v.blocking().next().expect("a blocking entry"))
    }

    fn text(v: &Verdict, all: bool) -> String {
        let mut out = Vec::new();
        write_text(&mut out, v, all).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json(v: &Verdict, all: bool) -> String {
        let mut out = Vec::new();
        write_json(&mut out, v, all).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn addresses_bracket_ipv6_and_keep_mapped_form() {
        assert_eq!(addr(&"0.0.0.0:8080".parse().unwrap()), "0.0.0.0:8080");
        assert_eq!(addr(&"[::]:9090".parse().unwrap()), "[::]:9090");
        assert_eq!(
            addr(&"[::ffff:127.0.0.1]:80".parse().unwrap()),
            "[::ffff:127.0.0.1]:80"
        );
    }

    #[test]
    fn every_state_has_its_kernel_name() {
        let names = [
            "ESTABLISHED",
            "SYN_SENT",
            "SYN_RECV",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "TIME_WAIT",
            "CLOSE",
            "CLOSE_WAIT",
            "LAST_ACK",
            "LISTEN",
            "CLOSING",
            "NEW_SYN_RECV",
        ];
        for (i, name) in names.iter().enumerate() {
            let state = TcpState::from_u8(i as u8 + 1).unwrap();
            assert_eq!(state.as_str(), *name);
        }
    }

    #[test]
    fn describe_listen_without_remote_and_connections_with_owner() {
        let v = verdict(vec![(listen("0.0.0.0:8080"), None)]);
        assert_eq!(first(&v), "LISTEN 0.0.0.0:8080 -> 0.0.0.0:0 (uid 1000)");
        let call = sock(
            TcpState::Established,
            "127.0.0.1:40000",
            "127.0.0.1:15001",
            1000,
        );
        let v = verdict(vec![(call, Some((7, "app")))]);
        assert_eq!(
            first(&v),
            "ESTABLISHED 127.0.0.1:40000 -> 127.0.0.1:15001 outbound>proxy (pid 7/app)"
        );
    }

    #[test]
    fn summary_cuts_after_max() {
        let v = verdict(
            (1..=3)
                .map(|p| (listen(&format!("0.0.0.0:{p}")), None))
                .collect(),
        );
        let s = summary(v.blocking(), v.blocking_count(), 2);
        assert!(s.ends_with(", and 1 more"), "{s}");
        assert_eq!(s.matches("LISTEN").count(), 2);
        assert_eq!(summary(Verdict::default().blocking(), 0, 3), "");
    }

    #[test]
    fn json_shape_with_and_without_all() {
        let mut v = verdict(vec![
            (listen("[::]:9090"), None),
            (
                sock(TcpState::Listen, "127.0.0.1:15000", "0.0.0.0:0", 0),
                Some((3, "envoy")),
            ),
        ]);
        v.trailer.uninspected_processes = 2;
        assert_eq!(
            json(&v, false),
            "{\"blocking\":[{\"state\":\"LISTEN\",\"local\":\"[::]:9090\",\"remote\":\"[::]:0\",\"uid\":1000,\"inode\":42,\"pid\":null,\"process\":null,\"direction\":\"listen\",\"to_proxy\":false}],\"uninspected_processes\":2,\"unreadable_fds\":0,\"host_network\":false,\"source\":\"proc\"}\n"
        );
        let all = json(&v, true);
        assert!(all.contains("\"ignored\":[{\"state\":\"LISTEN\",\"local\":\"127.0.0.1:15000\""));
        assert!(all.contains(
            "\"pid\":3,\"process\":\"envoy\",\"direction\":\"listen\",\"to_proxy\":false,\"reason\":\"proxy-process\"}"
        ));
    }

    #[test]
    fn json_escapes_hostile_process_names() {
        let mut s = Vec::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}\u{7f}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001\\u007fé\"".as_bytes());
    }

    #[test]
    fn hand_formatting_matches_display() {
        let int = |n: i64| {
            let mut v = Vec::new();
            push_int(&mut v, n);
            String::from_utf8(v).unwrap()
        };
        for n in [0, 1, 9, 10, 99, 100, 65535, -1, -10, i64::MIN, i64::MAX] {
            assert_eq!(int(n), n.to_string());
        }
        for n in [0, 7, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
        let fmt = |a: &SocketAddr| {
            let mut v = Vec::new();
            push_addr(&mut v, a);
            String::from_utf8(v).unwrap()
        };
        for a in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::]:0",
            "[::ffff:127.0.0.6]:41000",
            "[2001:db8::1]:443",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(fmt(&a), addr(&a), "{a}");
        }
        // Many IPv4 addresses and ports, from a fixed-seed generator.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = SocketAddr::from((std::net::Ipv4Addr::from(x as u32), (x >> 32) as u16));
            assert_eq!(fmt(&a), addr(&a), "{a}");
        }
    }

    #[test]
    fn text_table_aligns_and_summarises() {
        let v = verdict(vec![
            (listen("0.0.0.0:8080"), None),
            (
                sock(
                    TcpState::Established,
                    "[::ffff:127.0.0.1]:8080",
                    "[::ffff:127.0.0.6]:41000",
                    1000,
                ),
                Some((12, "app")),
            ),
        ]);
        let t = text(&v, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        assert!(lines[0].starts_with("STATE "));
        assert!(!lines[0].contains("VERDICT"));
        // Columns line up: LOCAL starts at the same offset in every row.
        let col = lines[0].find("LOCAL").unwrap();
        assert_eq!(&lines[1][col..col + 12], "0.0.0.0:8080");
        assert_eq!(&lines[2][col..col + 7], "[::ffff");
        assert!(lines[2].ends_with("12/app"));
        assert_eq!(lines[3], "2 sockets block");
        assert_eq!(lines[4], "by owner: uid 1000: 2 sockets (local port 8080)");
        assert!(lines[5].starts_with("hint: if a uid here belongs to another container"));
        assert!(lines[5].ends_with("--ignore-uid UID (uids here: 1000)"));
    }

    #[test]
    fn owners_are_grouped_by_uid_with_their_ports_bounded() {
        let mut rows: Vec<(Socket, Option<(i32, &str)>)> = (0..10)
            .map(|i| (listen(&format!("0.0.0.0:{}", 8000 + i)), None))
            .collect();
        rows.push((
            sock(TcpState::Listen, "0.0.0.0:5432", "0.0.0.0:0", 65532),
            None,
        ));
        rows.push((sock(TcpState::Listen, "[::]:5432", "[::]:0", 65532), None));
        let v = verdict(rows);
        let owners = v.owners();
        assert_eq!(
            owners
                .iter()
                .map(|g| (g.uid, g.sockets, g.ports.len()))
                .collect::<Vec<_>>(),
            vec![(1000, 10, 10), (65532, 2, 1)]
        );
        assert_eq!(
            owner_summary(&owners),
            "uid 1000: 10 sockets (local ports 8000, 8001, 8002, 8003, 8004, 8005, 8006, 8007, +2 more); uid 65532: 2 sockets (local port 5432)"
        );
        assert!(ignore_uid_hint(&owners).ends_with("(uids here: 1000, 65532)"));
        assert!(Verdict::default().owners().is_empty());
    }

    #[test]
    fn host_network_is_said_in_text_and_json() {
        let v = verdict(vec![(
            sock(TcpState::Listen, "0.0.0.0:10250", "0.0.0.0:0", 0),
            None,
        )]);
        assert!(v.trailer.host_network);
        assert!(text(&v, false).ends_with(&format!("note: {HOST_NETWORK_NOTE}\n")));
        assert!(json(&v, false).ends_with(",\"host_network\":true,\"source\":\"proc\"}\n"));
    }

    #[test]
    fn text_with_all_shows_reasons_and_notes_uninspected() {
        let mut v = verdict(vec![(
            sock(TcpState::Listen, "0.0.0.0:15001", "0.0.0.0:0", 1337),
            None,
        )]);
        v.trailer.uninspected_processes = 1;
        let t = text(&v, true);
        assert!(t.lines().next().unwrap().ends_with("VERDICT"));
        assert!(t.contains("proxy-uid"));
        assert!(t.contains("nothing blocks"));
        assert!(t.contains("note: could not inspect 1 process (no permission)"));
        assert_eq!(
            text(&v, false),
            "nothing blocks\nnote: could not inspect 1 process (no permission); sockets held only there show no process and block\n"
        );
        assert!(
            uninspected_note(2, 263)
                .unwrap()
                .starts_with("could not inspect 2 processes and 263 fds")
        );
        assert_eq!(uninspected_note(0, 0), None);
    }

    #[test]
    fn hostile_names_cannot_break_lines_or_columns() {
        let v = verdict(vec![(listen("0.0.0.0:8080"), Some((7, "x\n\u{1b}[2Jy")))]);
        assert_eq!(
            first(&v),
            "LISTEN 0.0.0.0:8080 -> 0.0.0.0:0 (pid 7/x\\n\\u{1b}[2Jy)"
        );
        let v = verdict(vec![
            (listen("0.0.0.0:8080"), Some((7, "été"))),
            (listen("0.0.0.0:1"), None),
        ]);
        let t = text(&v, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        // The VERDICT column starts at the same character offset in every row.
        let col = |l: &str| {
            l.chars()
                .collect::<Vec<_>>()
                .windows(6)
                .position(|w| w.iter().collect::<String>() == "blocks")
        };
        assert_eq!(col(lines[1]), col(lines[2]), "{t}");
    }
}
