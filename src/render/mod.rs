//! Rendering decided sockets, one module per output: `table` (`check`'s
//! aligned table), `json` (`check --json`, also as a `Sink` that writes
//! each entry as it is decided) and `lines` (the fragments the hooks log).
//! What they share is here: addresses, owners, directions, counts. Only
//! formatting happens in them: every fact comes decided in the [`Entry`].

mod json;
mod lines;
mod table;

pub use json::{JsonSink, json_string, push_u64, write_json};
pub use lines::{
    HOST_NETWORK_NOTE, ignore_uid_hint, ignoring, owner_summary, owners_by, summary,
    uninspected_note, whose_sockets,
};
pub use table::write_text;

use json::push_addr;

use std::net::SocketAddr;

use crate::decide::{Direction, Entry};
use crate::procread::TcpState;

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

/// `pid/name` of the first visible holder, `-` when none is visible (most
/// rows of a pod, which cost no allocation then).
fn owner<'e>(entry: &Entry<'e>) -> std::borrow::Cow<'e, str> {
    match entry.holders.first() {
        Some(h) => {
            let name = printable(h.name());
            let more = entry.holders.len() - 1;
            if more > 0 {
                format!("{}/{} (+{more})", h.pid, name).into()
            } else {
                format!("{}/{}", h.pid, name).into()
            }
        }
        None => "-".into(),
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

/// `1 socket`, `2 sockets`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The kernel's name of a TCP state, as `ss` and `netstat` print it.
pub trait StateName {
    /// `ESTABLISHED`, `LISTEN`, ...
    fn as_str(&self) -> &'static str;
}

impl StateName for TcpState {
    fn as_str(&self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json::{push_int, push_u64};
    use super::*;
    use crate::decide::{PodFacts, Rules};
    use crate::procread::{Holder, Holders, Socket, TcpState};
    use crate::sink::Verdict;

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
            cgroup: 0,
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
        write_json(
            &mut out,
            v,
            all,
            &crate::decide::Containers::Flags("test".into()),
            Vec::new(),
        )
        .unwrap();
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
            "{\"blocking\":[{\"state\":\"LISTEN\",\"local\":\"[::]:9090\",\"remote\":\"[::]:0\",\"uid\":1000,\"inode\":42,\"cgroup\":null,\"this_container\":null,\"pid\":null,\"process\":null,\"direction\":\"listen\",\"to_proxy\":false}],\"uninspected_processes\":2,\"unreadable_fds\":0,\"host_network\":false,\"source\":\"proc\",\"containers\":{\"by\":\"uid\",\"cgroup\":null,\"why\":\"test\"}}\n"
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
        assert!(json(&v, false).contains(",\"host_network\":true,\"source\":\"proc\","));
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

    #[test]
    fn by_cgroup_the_table_groups_by_container_and_the_hint_names_ports() {
        // The hook's container is cgroup 50 (the proxy, any uid); the app
        // (60) and a collector (70) share uid 1000; rows come mixed.
        let mut rules = Rules::default();
        rules.attribute(&crate::decide::Containers::Cgroup(50));
        let rows = [
            (listen("0.0.0.0:4317"), 70),
            (listen("0.0.0.0:8080"), 60),
            (
                sock(TcpState::Listen, "0.0.0.0:4143", "0.0.0.0:0", 2102),
                50,
            ),
            (
                sock(
                    TcpState::Established,
                    "10.0.0.5:45000",
                    "10.0.0.9:4317",
                    1000,
                ),
                60,
            ),
        ];
        let mut facts = PodFacts::default();
        let sockets: Vec<Socket> = rows
            .iter()
            .enumerate()
            .map(|(i, (s, cg))| {
                let mut s = s.clone();
                (s.inode, s.cgroup) = (42 + i as u64, *cg);
                facts.note(&s, &rules);
                s
            })
            .collect();
        let v = crate::pass::decide_rows(
            &[&sockets],
            &Holders::default(),
            &rules,
            facts,
            crate::sink::Collect::new(true),
        )
        .unwrap();
        let t = text(&v, true);
        let lines: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines[0][..2], ["CONTAINER", "STATE"], "{t}");
        let firsts: Vec<(&str, &str)> = lines[1..5].iter().map(|l| (l[0], l[2])).collect();
        assert_eq!(
            firsts,
            [
                ("60", "0.0.0.0:8080"),
                ("60", "10.0.0.5:45000"),
                ("70", "0.0.0.0:4317"),
                ("this", "0.0.0.0:4143")
            ],
            "{t}"
        );
        assert_eq!(lines[4].last(), Some(&"proxy-container"), "{t}");
        assert!(t.contains("\nby container: cgroup 60 (uid 1000): 2 sockets (local ports 8080, 45000); cgroup 70 (uid 1000): 1 socket (local port 4317)\n"), "{t}");
        assert!(t.contains("(uids here: 1000); containers that share a uid, by their ports: --ignore-port PORT\n"), "{t}");
        let j: serde_json::Value = serde_json::from_str(&json(&v, true)).unwrap();
        assert_eq!(j["blocking"][0]["cgroup"], 70);
        assert_eq!(j["blocking"][0]["this_container"], false);
        assert_eq!(j["ignored"][0]["this_container"], true);
        assert_eq!(j["ignored"][0]["reason"], "proxy-container");
    }
}
