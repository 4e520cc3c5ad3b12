//! Deciding: which sockets hold the proxy back, and why the others do not.
//!
//! Pure functions over [`Socket`] and [`Holders`]: no I/O, so every rule is
//! tested on plain values.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use crate::procread::{Holder, HolderList, Holders, Socket, TcpState};

/// Istio's inbound passthrough source: the proxy connects to the app from
/// 127.0.0.6 so that the app's own outbound rules do not loop the traffic back.
pub const INBOUND_PASSTHROUGH_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// Envoy's outbound (15001) and inbound (15006) capture ports in Istio.
pub const PROXY_CAPTURE_PORTS: [u16; 2] = [15001, 15006];

/// Which way a blocking socket faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A listening socket.
    Listen,
    /// A connection accepted on a listening port, or from Istio's 127.0.0.6.
    Inbound,
    /// A connection the app made; it needs the proxy until it closes.
    Outbound,
}

impl Direction {
    /// The name used in JSON and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Listen => "listen",
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Classifies a socket given the ports that something in the pod listens on.
///
/// Accepted sockets share the listener's local port, which is what tells them
/// from the app's own calls; the 127.0.0.6 rule catches inbound connections
/// whose listener is already closed.
pub fn direction(socket: &Socket, listen_ports: &HashSet<u16>) -> Direction {
    if socket.state == TcpState::Listen {
        return Direction::Listen;
    }
    let from_passthrough = match socket.remote.ip() {
        IpAddr::V4(v4) => v4 == INBOUND_PASSTHROUGH_SOURCE,
        IpAddr::V6(v6) => v6.to_ipv4_mapped() == Some(INBOUND_PASSTHROUGH_SOURCE),
    };
    if from_passthrough || listen_ports.contains(&socket.local.port()) {
        Direction::Inbound
    } else {
        Direction::Outbound
    }
}

/// Whether an outbound connection's peer is the proxy's own capture port, as
/// when the app talks to the proxy explicitly (e.g. `localhost:15001`).
pub fn to_proxy(socket: &Socket) -> bool {
    socket.remote.ip().to_canonical().is_loopback()
        && PROXY_CAPTURE_PORTS.contains(&socket.remote.port())
}

/// What counts as the proxy, and what the user chose to ignore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Sockets created under these uids are the proxy's (Istio: 1337).
    pub proxy_uids: Vec<u32>,
    /// Processes whose `comm` or `argv[0]` basename is one of these are the proxy's.
    pub proxy_names: Vec<String>,
    /// Sockets with one of these local ports never block.
    pub ignore_ports: Vec<u16>,
    /// Only LISTEN sockets block (the old `netstat -plunt` loop's rule).
    pub listen_only: bool,
}

/// Why a socket does not block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Its owner uid is a proxy uid.
    ProxyUid,
    /// Every visible process holding it is a proxy process.
    ProxyProcess,
    /// Its local port is in `--ignore-port`.
    IgnoredPort,
    /// `--listen-only` is set and it is not listening.
    NotListening,
}

impl Reason {
    /// The name used in JSON and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ProxyUid => "proxy-uid",
            Reason::ProxyProcess => "proxy-process",
            Reason::IgnoredPort => "ignored-port",
            Reason::NotListening => "not-listening",
        }
    }
}

/// A socket with the visible processes holding it (possibly none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The table row.
    pub socket: Socket,
    /// Visible holders, by ascending pid; empty when none could be seen.
    pub holders: HolderList,
    /// Which way it faces (see [`direction`]).
    pub direction: Direction,
}

impl From<Socket> for Entry {
    /// A row as read: no holders yet, and a direction [`decide`] replaces.
    fn from(socket: Socket) -> Self {
        Entry {
            socket,
            holders: HolderList::None,
            direction: Direction::Outbound,
        }
    }
}

/// The outcome of one look at the tables.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Sockets that hold the proxy back, in table order (tcp, then tcp6).
    pub blocking: Vec<Entry>,
    /// Sockets that do not, with the reason; filled only when asked for.
    pub ignored: Vec<(Entry, Reason)>,
    /// Processes whose fds could not be listed (see [`Holders::uninspected_processes`]).
    pub uninspected_processes: usize,
    /// Fd links that could not be read (see [`Holders::unreadable_fds`]).
    pub unreadable_fds: usize,
}

/// Whether a socket takes part at all: inode 0 means no process holds it any
/// more (TIME_WAIT, orphaned FIN_WAIT), so nothing of the app is waiting on it.
pub fn is_held(socket: &Socket) -> bool {
    socket.inode != 0
}

/// The rules that need only the table row: checked first, so the costly fd
/// scan runs only for sockets these leave.
pub fn cheap_reason(socket: &Socket, rules: &Rules) -> Option<Reason> {
    if rules.proxy_uids.contains(&socket.uid) {
        Some(Reason::ProxyUid)
    } else if rules.ignore_ports.contains(&socket.local.port()) {
        Some(Reason::IgnoredPort)
    } else if rules.listen_only && socket.state != TcpState::Listen {
        Some(Reason::NotListening)
    } else {
        None
    }
}

/// Whether a process is one of the proxy's, by `comm` or `argv[0]` basename.
pub fn is_proxy_process(holder: &Holder, rules: &Rules) -> bool {
    rules
        .proxy_names
        .iter()
        .any(|n| n == holder.comm() || n == holder.argv0())
}

/// Decides every socket: the pure core of both `check` and `wait`.
///
/// `entries` are the held sockets of both tables (see [`Entry::from`]);
/// `holders` is the fd scan for (at least) those that no cheap rule excused. A
/// socket with no visible holder blocks: in a pod without a shared PID
/// namespace the app's processes are invisible, and that is exactly the case
/// this tool exists for. Ignored sockets are kept in the verdict only when
/// `keep_ignored` is set.
///
/// The verdict's rows are `entries` itself, filled in and filtered in place:
/// a busy table's kept rows are held once, not once as read and again as
/// decided.
///
/// `listen_ports` are the local ports of every LISTEN socket in both tables,
/// whoever owns them; they tell accepted connections from outbound ones.
pub fn decide(
    mut entries: Vec<Entry>,
    holders: Holders,
    rules: &Rules,
    keep_ignored: bool,
    listen_ports: &HashSet<u16>,
) -> Verdict {
    entries.retain(|e| is_held(&e.socket));
    for entry in &mut entries {
        entry.holders = holders.of(entry.socket.inode).cloned().collect();
        entry.direction = direction(&entry.socket, listen_ports);
    }
    let mut ignored = Vec::new();
    if keep_ignored {
        let mut reasons = Vec::new();
        let excused: Vec<Entry> = entries
            .extract_if(.., |e| match reason(e, rules) {
                Some(r) => {
                    reasons.push(r);
                    true
                }
                None => false,
            })
            .collect();
        ignored = excused.into_iter().zip(reasons).collect();
    } else {
        entries.retain(|e| reason(e, rules).is_none());
    }
    Verdict {
        blocking: entries,
        ignored,
        uninspected_processes: holders.uninspected_processes,
        unreadable_fds: holders.unreadable_fds,
    }
}

/// Why an entry, its holders filled in, does not block; `None` when it does.
fn reason(entry: &Entry, rules: &Rules) -> Option<Reason> {
    cheap_reason(&entry.socket, rules).or_else(|| {
        let seen = &entry.holders;
        (!seen.is_empty() && seen.iter().all(|h| is_proxy_process(h, rules)))
            .then_some(Reason::ProxyProcess)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn rules() -> Rules {
        Rules {
            proxy_uids: vec![1337],
            proxy_names: vec!["envoy".into(), "pilot-agent".into()],
            ignore_ports: vec![],
            listen_only: false,
        }
    }

    fn sock(state: TcpState, local: &str, uid: u32, inode: u64) -> Socket {
        Socket {
            state,
            local: local.parse::<SocketAddr>().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            uid,
            inode,
        }
    }

    fn holder(pid: i32, comm: &str, argv0: &str) -> Holder {
        Holder::new(pid, comm, argv0)
    }

    fn holders(pairs: &[(u64, Holder)]) -> Holders {
        Holders::from_pairs(pairs.to_vec())
    }

    fn rows(socks: Vec<Socket>) -> Vec<Entry> {
        socks.into_iter().map(Entry::from).collect()
    }

    fn one(socket: Socket, h: &Holders, r: &Rules) -> Option<Reason> {
        let v = decide(vec![socket.into()], h.clone(), r, true, &HashSet::new());
        match (v.blocking.len(), v.ignored.as_slice()) {
            (1, []) => None,
            (0, [(_, reason)]) => Some(*reason),
            other => panic!("unexpected verdict shape {other:?}"),
        }
    }

    #[test]
    fn unowned_app_socket_blocks() {
        let s = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 7);
        assert_eq!(one(s, &Holders::default(), &rules()), None);
    }

    #[test]
    fn inode_zero_is_dropped_entirely() {
        let s = sock(TcpState::TimeWait, "127.0.0.1:8080", 0, 0);
        let v = decide(
            vec![s.into()],
            Holders::default(),
            &rules(),
            true,
            &HashSet::new(),
        );
        assert!(v.blocking.is_empty() && v.ignored.is_empty());
        let s = sock(TcpState::FinWait2, "127.0.0.1:8080", 1000, 0);
        assert!(
            decide(
                vec![s.into()],
                Holders::default(),
                &rules(),
                true,
                &HashSet::new()
            )
            .blocking
            .is_empty()
        );
    }

    #[test]
    fn proxy_uid_excuses() {
        let s = sock(TcpState::Listen, "0.0.0.0:15001", 1337, 7);
        assert_eq!(
            one(s, &Holders::default(), &rules()),
            Some(Reason::ProxyUid)
        );
        let mut r = rules();
        r.proxy_uids = vec![2102, 0];
        let s = sock(TcpState::Listen, "0.0.0.0:4143", 2102, 7);
        assert_eq!(
            one(s.clone(), &Holders::default(), &r),
            Some(Reason::ProxyUid)
        );
        r.proxy_uids.clear();
        assert_eq!(one(s, &Holders::default(), &r), None);
    }

    #[test]
    fn proxy_process_by_comm_or_argv0() {
        let s = sock(TcpState::Listen, "0.0.0.0:15020", 0, 7);
        for h in [
            holder(5, "pilot-agent", "pilot-agent"),
            holder(5, "envoy", ""),
            holder(5, "wrapper", "envoy"),
        ] {
            let hs = holders(&[(7, h)]);
            assert_eq!(one(s.clone(), &hs, &rules()), Some(Reason::ProxyProcess));
        }
        let hs = holders(&[(7, holder(5, "envoyx", "not-envoy"))]);
        assert_eq!(one(s, &hs, &rules()), None);
    }

    #[test]
    fn shared_socket_blocks_if_any_holder_is_not_proxy() {
        let s = sock(TcpState::Established, "127.0.0.1:40000", 0, 7);
        let hs = holders(&[
            (7, holder(5, "envoy", "envoy")),
            (7, holder(9, "app", "app")),
        ]);
        let v = decide(vec![s.into()], hs, &rules(), false, &HashSet::new());
        assert_eq!(v.blocking.len(), 1);
        assert_eq!(v.blocking[0].holders.len(), 2);
    }

    #[test]
    fn holder_of_another_inode_does_not_excuse() {
        let s = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 7);
        let hs = holders(&[(8, holder(5, "envoy", "envoy"))]);
        assert_eq!(one(s, &hs, &rules()), None);
    }

    #[test]
    fn ignored_port_matches_local_port_only() {
        let mut r = rules();
        r.ignore_ports = vec![9090];
        let s = sock(TcpState::Listen, "[::]:9090", 1000, 7);
        assert_eq!(one(s, &Holders::default(), &r), Some(Reason::IgnoredPort));
        let mut s = sock(TcpState::Established, "127.0.0.1:40000", 1000, 7);
        s.remote = "127.0.0.1:9090".parse().unwrap();
        assert_eq!(one(s, &Holders::default(), &r), None);
    }

    #[test]
    fn listen_only_excuses_everything_but_listen() {
        let mut r = rules();
        r.listen_only = true;
        for st in [
            TcpState::Established,
            TcpState::SynSent,
            TcpState::CloseWait,
            TcpState::FinWait1,
            TcpState::LastAck,
        ] {
            let s = sock(st, "127.0.0.1:40000", 1000, 7);
            assert_eq!(one(s, &Holders::default(), &r), Some(Reason::NotListening));
        }
        let s = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 7);
        assert_eq!(one(s, &Holders::default(), &r), None);
    }

    #[test]
    fn cheap_rules_take_precedence_in_documented_order() {
        let mut r = rules();
        r.ignore_ports = vec![15001];
        r.listen_only = true;
        let s = sock(TcpState::Established, "0.0.0.0:15001", 1337, 7);
        assert_eq!(cheap_reason(&s, &r), Some(Reason::ProxyUid));
        let s = sock(TcpState::Established, "0.0.0.0:15001", 1000, 7);
        assert_eq!(cheap_reason(&s, &r), Some(Reason::IgnoredPort));
        let s = sock(TcpState::Established, "0.0.0.0:80", 1000, 7);
        assert_eq!(cheap_reason(&s, &r), Some(Reason::NotListening));
        // A proxy process holding a socket the cheap rules already excuse
        // reports the cheap reason, which needed no scan.
        let hs = holders(&[(7, holder(5, "envoy", "envoy"))]);
        assert_eq!(one(s, &hs, &r), Some(Reason::NotListening));
    }

    #[test]
    fn ignored_are_dropped_unless_asked_and_order_is_kept() {
        let socks = vec![
            sock(TcpState::Listen, "0.0.0.0:8080", 1000, 1),
            sock(TcpState::Listen, "0.0.0.0:15001", 1337, 2),
            sock(TcpState::Listen, "[::]:8081", 1000, 3),
        ];
        let mut hs = Holders::default();
        (hs.uninspected_processes, hs.unreadable_fds) = (3, 1);
        let v = decide(
            rows(socks.clone()),
            hs.clone(),
            &rules(),
            false,
            &HashSet::new(),
        );
        let ports: Vec<u16> = v.blocking.iter().map(|e| e.socket.local.port()).collect();
        assert_eq!(ports, vec![8080, 8081]);
        assert!(v.ignored.is_empty());
        assert_eq!((v.uninspected_processes, v.unreadable_fds), (3, 1));
        let v = decide(rows(socks), hs, &rules(), true, &HashSet::new());
        assert_eq!(v.ignored.len(), 1);
        assert_eq!(v.ignored[0].1.as_str(), "proxy-uid");
    }

    #[test]
    fn empty_proxy_names_never_match_empty_argv0() {
        // A zombie has an empty cmdline; with no names configured it must not
        // be taken for the proxy.
        let mut r = rules();
        r.proxy_names.clear();
        let s = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 7);
        let hs = holders(&[(7, holder(5, "", ""))]);
        assert_eq!(one(s, &hs, &r), None);
    }

    #[test]
    fn direction_of_listeners_accepted_and_outbound() {
        let ports: HashSet<u16> = [8080, 9090].into();
        let mut s = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 1);
        assert_eq!(direction(&s, &ports), Direction::Listen);
        s.state = TcpState::Established;
        s.remote = "10.0.0.9:50000".parse().unwrap();
        assert_eq!(direction(&s, &ports), Direction::Inbound);
        // The listener is gone, but 127.0.0.6 still marks Istio's inbound path.
        s.local = "10.1.2.3:7070".parse().unwrap();
        s.remote = "127.0.0.6:41000".parse().unwrap();
        assert_eq!(direction(&s, &HashSet::new()), Direction::Inbound);
        s.local = "[::ffff:10.1.2.3]:7070".parse().unwrap();
        s.remote = "[::ffff:127.0.0.6]:41000".parse().unwrap();
        assert_eq!(direction(&s, &HashSet::new()), Direction::Inbound);
        s.local = "10.1.2.3:45000".parse().unwrap();
        s.remote = "10.9.8.7:443".parse().unwrap();
        assert_eq!(direction(&s, &ports), Direction::Outbound);
        assert!(!to_proxy(&s));
        s.remote = "127.0.0.1:15001".parse().unwrap();
        assert_eq!(direction(&s, &ports), Direction::Outbound);
        assert!(to_proxy(&s));
        s.remote = "[::1]:15006".parse().unwrap();
        assert!(to_proxy(&s));
        s.remote = "10.0.0.1:15001".parse().unwrap();
        assert!(!to_proxy(&s), "a remote host's 15001 is not our proxy");
    }

    #[test]
    fn decide_fills_direction() {
        let mut out = sock(TcpState::SynSent, "10.1.2.3:45000", 1000, 2);
        out.remote = "10.9.8.7:443".parse().unwrap();
        let socks = vec![sock(TcpState::Listen, "0.0.0.0:8080", 1000, 1), out];
        let v = decide(
            rows(socks),
            Holders::default(),
            &rules(),
            false,
            &[8080].into(),
        );
        let dirs: Vec<Direction> = v.blocking.iter().map(|e| e.direction).collect();
        assert_eq!(dirs, vec![Direction::Listen, Direction::Outbound]);
    }
}
