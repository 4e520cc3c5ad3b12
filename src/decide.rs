//! Deciding: which sockets hold the proxy back, and why the others do not.
//!
//! Pure functions over [`Socket`] and its holders: no I/O, so every rule is
//! tested on plain values. [`decide`] is the one place a socket is decided
//! (its reason and direction; [`Entry::to_proxy`] follows from them); the
//! pass ([`crate::pass`]) asks [`decide_so_far`] as each row is read, and
//! [`decide`] at its table's end for the rows only the end can settle, and
//! hands the [`Entry`] on. [`Rules`] is also `quiesce`'s word on whose
//! socket is whose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::keys::{PortSet, connection_key};
use crate::procread::{Holder, Socket, TcpState};

/// Istio's inbound passthrough source: the proxy connects to the app from
/// 127.0.0.6 so that the app's own outbound rules do not loop the traffic back.
pub const INBOUND_PASSTHROUGH_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// The same source in IPv6 pods: `::6` (Istio's `listener_address.go`).
pub const INBOUND_PASSTHROUGH_SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6);

/// The kubelet's API port. The API server reaches every kubelet there, so
/// the node's network namespace always has a listener on it, and a pod's own
/// namespace has none unless its app chose the port.
pub const KUBELET_PORT: u16 = 10250;

/// Ports Istio reserves for its proxies' traffic capture: Envoy's outbound
/// and inbound (15001, 15006) and the HBONE tunnel (15008). A connection to
/// one is a connection to the proxy. In ambient mode ztunnel opens its
/// listeners on them inside the pod's network namespace (not as uid 1337),
/// and the app's own outbound calls arrive at 15001: so `quiesce` never
/// counts them as the app's, unless `--port` names them.
pub const MESH_PORTS: [u16; 3] = [15001, 15006, 15008];

/// What counts as the proxy, and what the user chose to ignore.
///
/// Where the kernel tells containers apart ([`Containers::Cgroup`], set by
/// [`Rules::attribute`]), a socket in the hook's own container is the
/// proxy's (`wait`, `check`) or the app's (`quiesce`), and one in another
/// container's cgroup is not: no uid or name is needed. `--proxy-uid` and
/// `--proxy-name` given explicitly add to that rule; their defaults (Istio's
/// uid 1337, `envoy`, `pilot-agent`) decide only where the cgroup cannot
/// (the fallback, or a row without a cgroup id). `--ignore-uid`,
/// `--ignore-port` and `--listen-only` apply in both.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Sockets created under these uids are the proxy's (Istio: 1337).
    pub proxy_uids: Vec<u32>,
    /// Processes whose `comm` or `argv[0]` basename is one of these are the proxy's.
    pub proxy_names: Vec<String>,
    /// Whether `proxy_uids` were given (flag or environment), not defaults.
    pub proxy_uids_given: bool,
    /// Whether `proxy_names` were given, not defaults.
    pub proxy_names_given: bool,
    /// Sockets owned by these uids never block: other containers of the pod.
    pub ignore_uids: Vec<u32>,
    /// Sockets with one of these local ports never block.
    pub ignore_ports: Vec<u16>,
    /// Only LISTEN sockets block (the old `netstat -plunt` loop's rule).
    pub listen_only: bool,
    /// The cgroup v2 id of the hook's own container, where the kernel
    /// tells containers apart.
    pub own_cgroup: Option<u64>,
}

impl Rules {
    /// Takes in how containers are told apart, learnt once at the start.
    pub fn attribute(&mut self, containers: &Containers) {
        self.own_cgroup = match containers {
            Containers::Cgroup(id) => Some(*id),
            Containers::Flags(_) => None,
        };
    }

    /// What the cgroup says of `s`: `Some(true)` it is the hook's own
    /// container's, `Some(false)` another container's, `None` the cgroup
    /// cannot tell (the fallback; a row with no cgroup id).
    pub fn own_container(&self, s: &Socket) -> Option<bool> {
        match self.own_cgroup {
            Some(own) if s.cgroup != 0 => Some(s.cgroup == own),
            _ => None,
        }
    }

    /// Whether `s` is the proxy's by its uid: a given `--proxy-uid` always,
    /// the default only where the cgroup cannot tell.
    pub fn proxy_uid(&self, s: &Socket) -> bool {
        self.proxy_uids.contains(&s.uid)
            && (self.proxy_uids_given || self.own_container(s).is_none())
    }

    /// Whether the processes holding `s` can change what it is, so that the
    /// fd scan is worth its cost: given `--proxy-name`s always, the default
    /// names only where the cgroup cannot tell.
    pub fn names_apply(&self, s: &Socket) -> bool {
        !self.proxy_names.is_empty() && (self.proxy_names_given || self.own_container(s).is_none())
    }

    /// Whether `s` is the proxy's by its row alone, for `wait`'s and
    /// `check`'s view of a pod (its own container, or a proxy uid).
    pub fn is_proxys(&self, s: &Socket) -> bool {
        self.own_container(s) == Some(true) || self.proxy_uid(s)
    }

    /// `quiesce`'s view, from the app's container: whether `s` is another
    /// container's than the app's (another cgroup, a proxy uid, an
    /// `--ignore-uid`).
    pub fn is_other_container(&self, s: &Socket) -> bool {
        self.own_container(s) == Some(false)
            || self.proxy_uid(s)
            || self.ignore_uids.contains(&s.uid)
    }
}

/// How a command tells one container's sockets from another's, learnt once
/// at its start (see [`crate::source::Chosen::containers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containers {
    /// By the kernel's cgroup v2 id of each socket: this is the hook's own
    /// container's.
    Cgroup(u64),
    /// By uid and process name, as flagged; with why not by cgroup.
    Flags(String),
}

impl std::fmt::Display for Containers {
    /// The hooks' first line and `check`'s note: `containers by cgroup
    /// (this one's: 4242)`, or `containers by uid and process name (why)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Containers::Cgroup(id) => write!(f, "containers by cgroup (this one's: {id})"),
            Containers::Flags(why) => write!(f, "containers by uid and process name: {why}"),
        }
    }
}

/// Why a socket does not block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// It is in the hook's own container's cgroup: the proxy's.
    ProxyContainer,
    /// Its owner uid is a proxy uid.
    ProxyUid,
    /// Its owner uid is in `--ignore-uid`.
    IgnoredUid,
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
            Reason::ProxyContainer => "proxy-container",
            Reason::ProxyUid => "proxy-uid",
            Reason::IgnoredUid => "ignored-uid",
            Reason::ProxyProcess => "proxy-process",
            Reason::IgnoredPort => "ignored-port",
            Reason::NotListening => "not-listening",
        }
    }
}

/// Which way a socket faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A listening socket.
    Listen,
    /// A connection into the pod: see [`direction`].
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

/// What the whole pod's tables say about any one connection in them.
///
/// Filled from every row read, the excused ones included: the proxy's own
/// listeners and connections tell accepted connections from outbound ones as
/// much as the app's. Fixed in size whatever the table holds (72 KiB), and
/// reused from poll to poll: a bit per port for the listeners, and a Bloom
/// filter of the proxy's connections, whose rare false positive can only
/// mislabel a direction, never change what blocks.
#[derive(Clone, PartialEq, Eq)]
pub struct PodFacts {
    listening: PortSet,
    proxy_connections: Box<[u64; BLOOM_WORDS]>,
}

/// 2^19 bits: at 20,000 proxy connections a false positive is about 1 in 1,000.
const BLOOM_WORDS: usize = (1 << 19) / 64;

impl Default for PodFacts {
    fn default() -> Self {
        PodFacts {
            listening: PortSet::new(),
            proxy_connections: Box::new([0; BLOOM_WORDS]),
        }
    }
}

impl std::fmt::Debug for PodFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodFacts")
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

impl PodFacts {
    /// Forgets everything, for the next poll.
    pub fn clear(&mut self) {
        self.listening.clear();
        self.proxy_connections.fill(0);
    }

    /// Takes in one row of either table.
    pub fn note(&mut self, socket: &Socket, rules: &Rules) {
        if socket.state == TcpState::Listen {
            self.listening.insert(socket.local.port());
        } else if rules.is_proxys(socket) {
            for bit in bloom_bits(connection_key(socket.local, socket.remote)) {
                self.proxy_connections[bit / 64] |= 1 << (bit % 64);
            }
        }
    }

    /// Whether something in the pod listens on `port`, whoever owns it.
    pub fn listens_on(&self, port: u16) -> bool {
        self.listening.contains(port)
    }

    /// Whether these tables are the node's rather than a pod's: the kubelet
    /// listens on [`KUBELET_PORT`] in the node's network namespace, which a
    /// `hostNetwork: true` pod shares.
    pub fn node_network(&self) -> bool {
        self.listens_on(KUBELET_PORT)
    }

    /// Whether `socket`'s peer could be the proxy's end of a connection the
    /// proxy made: an address of the pod, on a port nothing listens on.
    pub(crate) fn proxy_may_have_connected(&self, socket: &Socket) -> bool {
        let peer = socket.remote.ip().to_canonical();
        (peer.is_loopback() || peer == socket.local.ip().to_canonical())
            && !self.listens_on(socket.remote.port())
    }

    /// Whether the proxy holds the other end of `socket`, having connected
    /// to it from inside the pod: the proxy's end is `socket` mirrored, its
    /// local port is no listener's (so it made the connection rather than
    /// accepted it), and its address is the pod's own (loopback, or the
    /// app's address). That last part keeps TPROXY's outbound connections
    /// out: there the proxy's accepted end has the remote service's address.
    fn proxy_connected_to(&self, socket: &Socket) -> bool {
        self.proxy_may_have_connected(socket)
            && bloom_bits(connection_key(socket.remote, socket.local))
                .iter()
                .all(|&bit| self.proxy_connections[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// Three 19-bit positions from one key.
fn bloom_bits(key: u64) -> [usize; 3] {
    let mask = (1 << 19) - 1;
    [
        (key & mask) as usize,
        ((key >> 21) & mask) as usize,
        ((key >> 42) & mask) as usize,
    ]
}

/// Whether a socket takes part at all: inode 0 means no process holds it any
/// more (TIME_WAIT, orphaned FIN_WAIT), so nothing of the app is waiting on it.
pub fn is_held(socket: &Socket) -> bool {
    socket.inode != 0
}

/// The rules that need only the table row, in their documented order.
pub fn row_reason(socket: &Socket, rules: &Rules) -> Option<Reason> {
    if rules.own_container(socket) == Some(true) {
        Some(Reason::ProxyContainer)
    } else if rules.proxy_uid(socket) {
        Some(Reason::ProxyUid)
    } else if rules.ignore_uids.contains(&socket.uid) {
        Some(Reason::IgnoredUid)
    } else if rules.ignore_ports.contains(&socket.local.port()) {
        Some(Reason::IgnoredPort)
    } else if rules.listen_only && socket.state != TcpState::Listen {
        Some(Reason::NotListening)
    } else {
        None
    }
}

/// The first stage of [`decide`], run on each row as it is read: whether the
/// row goes on to the fd scan and the verdict. Rows the table alone settles
/// are dropped here, so a busy table is never held whole; `keep_ignored`
/// (`check --all`) keeps them too, so their owners can be shown.
pub fn keep_row(socket: &Socket, rules: &Rules, keep_ignored: bool) -> bool {
    is_held(socket) && (keep_ignored || row_reason(socket, rules).is_none())
}

/// Why a held socket does not block, given the visible processes holding it;
/// `None` when it blocks. The one rule set of `check` and `wait`: the row
/// rules in their documented order, then the proxy-process rule.
pub fn reason(socket: &Socket, holders: &[Holder], rules: &Rules) -> Option<Reason> {
    row_reason(socket, rules).or_else(|| {
        (rules.names_apply(socket)
            && !holders.is_empty()
            && holders
                .iter()
                .all(|h| is_proxy_process(h, &rules.proxy_names)))
        .then_some(Reason::ProxyProcess)
    })
}

/// Whether a process is one of the proxy's, its `comm` or `argv[0]`
/// basename one of `proxy_names`.
pub fn is_proxy_process(holder: &Holder, proxy_names: &[String]) -> bool {
    proxy_names
        .iter()
        .any(|n| n == holder.comm() || n == holder.argv0())
}

/// Classifies a socket.
///
/// Accepted sockets share the listener's local port, which is what tells them
/// from the app's own calls. Two rules catch inbound connections whose
/// listener is already closed (the app stops accepting first, then finishes
/// what it accepted): Istio's passthrough source, and the proxy holding the
/// connection's other end as the side that connected.
pub fn direction(socket: &Socket, facts: &PodFacts) -> Direction {
    if socket.state == TcpState::Listen {
        return Direction::Listen;
    }
    if is_passthrough_source(socket.remote.ip())
        || facts.listens_on(socket.local.port())
        || facts.proxy_connected_to(socket)
    {
        Direction::Inbound
    } else {
        Direction::Outbound
    }
}

/// 127.0.0.6 (also IPv4-mapped) or `::6`.
fn is_passthrough_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == INBOUND_PASSTHROUGH_SOURCE,
        IpAddr::V6(v6) => {
            v6 == INBOUND_PASSTHROUGH_SOURCE_V6
                || v6.to_ipv4_mapped() == Some(INBOUND_PASSTHROUGH_SOURCE)
        }
    }
}

/// What was decided about one socket: why it does not block (`None`: it
/// blocks) and which way it faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Why it does not block; `None` when it blocks.
    pub reason: Option<Reason>,
    /// Which way it faces.
    pub direction: Direction,
    /// Whether it is in the hook's own container (`None`: the cgroup
    /// cannot tell; see [`Rules::own_container`]).
    pub container: Option<bool>,
}

/// Decides one socket, given its visible holders and the pod's facts: the
/// one place a socket's reason and direction are computed. A socket with no
/// visible holder blocks: in a pod without a shared PID namespace the app's
/// processes are invisible, and that is exactly the case this tool exists
/// for. `facts` must hold the whole of the socket's table (see
/// [`decide_so_far`] for a table still being read).
pub fn decide(socket: &Socket, holders: &[Holder], rules: &Rules, facts: &PodFacts) -> Decision {
    Decision {
        reason: reason(socket, holders, rules),
        direction: direction(socket, facts),
        container: rules.own_container(socket),
    }
}

/// [`decide`] while the socket's table is still being read, or `None` when
/// only its end can tell the direction: a connection the proxy may yet turn
/// out to have made (see [`PodFacts::proxy_connected_to`]) whose proxy end
/// has not been read. The kernel lists a table's LISTEN sockets before its
/// connections (`tcp_get_idx`: the listening hash, then the established
/// one), so the listeners are all known by the time a connection is read.
pub fn decide_so_far(
    socket: &Socket,
    holders: &[Holder],
    rules: &Rules,
    facts: &PodFacts,
) -> Option<Decision> {
    let d = decide(socket, holders, rules, facts);
    let may_change = d.direction == Direction::Outbound && facts.proxy_may_have_connected(socket);
    (!may_change).then_some(d)
}

/// One decided socket, as output sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The table row.
    pub socket: &'a Socket,
    /// Visible holders, by ascending pid; empty when none could be seen.
    pub holders: &'a [Holder],
    /// Which way it faces.
    pub direction: Direction,
    /// Why it does not block; `None` when it blocks.
    pub reason: Option<Reason>,
    /// Whether it is in the hook's own container (`None`: the cgroup
    /// cannot tell).
    pub container: Option<bool>,
}

impl<'a> Entry<'a> {
    /// A socket with what was decided about it.
    pub fn new(socket: &'a Socket, holders: &'a [Holder], d: Decision) -> Self {
        Entry {
            socket,
            holders,
            direction: d.direction,
            reason: d.reason,
            container: d.container,
        }
    }

    /// The cgroup id output groups it by: 0 where the cgroup cannot tell
    /// containers apart.
    pub fn cgroup(&self) -> u64 {
        if self.container.is_some() {
            self.socket.cgroup
        } else {
            0
        }
    }

    /// An outbound connection to the proxy's own capture port on loopback,
    /// as when the app talks to the proxy explicitly (`localhost:15001`).
    pub fn to_proxy(&self) -> bool {
        self.direction == Direction::Outbound
            && self.socket.remote.ip().to_canonical().is_loopback()
            && MESH_PORTS.contains(&self.socket.remote.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procread::Holders;
    use crate::sink::{Collect, Verdict};

    /// Decides `rows` as one table, as a pass would, into a verdict.
    fn verdict(
        rows: Vec<Socket>,
        h: &Holders,
        r: &Rules,
        facts: &PodFacts,
        keep_ignored: bool,
    ) -> Verdict {
        crate::pass::decide_rows(&[&rows], h, r, facts.clone(), Collect::new(keep_ignored)).unwrap()
    }

    /// [`Entry::to_proxy`] of `s` facing `direction`.
    fn to_proxy(s: &Socket, direction: Direction) -> bool {
        let d = Decision {
            reason: None,
            direction,
            container: None,
        };
        Entry::new(s, &[], d).to_proxy()
    }

    /// Every entry of a verdict, in table order.
    fn entries(v: &Verdict) -> Vec<Entry<'_>> {
        let mut all: Vec<Entry> = v.blocking().chain(v.ignored()).collect();
        all.sort_by_key(|e| e.socket.inode);
        all
    }
    use std::net::SocketAddr;

    fn rules() -> Rules {
        crate::fixture::istio_rules()
    }

    fn sock(state: TcpState, local: &str, uid: u32, inode: u64) -> Socket {
        Socket {
            state,
            local: local.parse::<SocketAddr>().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            uid,
            inode,
            rx_queue: 0,
            tx_queue: 0,
            info: None,
            cgroup: 0,
        }
    }

    fn holder(pid: i32, comm: &str, argv0: &str) -> Holder {
        Holder::new(pid, comm, argv0)
    }

    fn holders(pairs: &[(u64, Holder)]) -> Holders {
        Holders::from_pairs(pairs.to_vec())
    }

    fn facts(ports: &[u16]) -> PodFacts {
        let mut f = PodFacts::default();
        for &p in ports {
            f.note(
                &sock(TcpState::Listen, &format!("0.0.0.0:{p}"), 0, 1),
                &rules(),
            );
        }
        f
    }

    fn conn(local: &str, remote: &str, uid: u32) -> Socket {
        let mut s = sock(TcpState::Established, local, uid, 9);
        s.remote = remote.parse().unwrap();
        s
    }

    fn one(socket: Socket, h: &Holders, r: &Rules) -> Option<Reason> {
        let v = verdict(vec![socket], h, r, &PodFacts::default(), true);
        let all = entries(&v);
        assert_eq!(all.len(), 1, "{v:?}");
        assert_eq!(v.blocking_count(), usize::from(all[0].reason.is_none()));
        all[0].reason
    }

    #[test]
    fn unowned_app_socket_blocks() {
        let s = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 7);
        assert_eq!(one(s, &Holders::default(), &rules()), None);
    }

    #[test]
    fn inode_zero_is_dropped_entirely() {
        for s in [
            sock(TcpState::TimeWait, "127.0.0.1:8080", 0, 0),
            sock(TcpState::FinWait2, "127.0.0.1:8080", 1000, 0),
        ] {
            assert!(!keep_row(&s, &rules(), true));
            let v = verdict(
                vec![s],
                &Holders::default(),
                &rules(),
                &PodFacts::default(),
                true,
            );
            assert_eq!(entries(&v).len(), 0);
            assert_eq!(v.blocking_count(), 0);
        }
    }

    #[test]
    fn keep_row_drops_what_the_row_settles_unless_all() {
        let proxy = sock(TcpState::Listen, "0.0.0.0:15001", 1337, 7);
        let app = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 8);
        assert!(!keep_row(&proxy, &rules(), false));
        assert!(keep_row(&proxy, &rules(), true));
        assert!(keep_row(&app, &rules(), false));
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
        let v = verdict(vec![s], &hs, &rules(), &PodFacts::default(), false);
        let blocking: Vec<Entry> = v.blocking().collect();
        assert_eq!(blocking.len(), 1);
        assert_eq!(blocking[0].holders.len(), 2);
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
    fn row_rules_take_precedence_in_documented_order() {
        let mut r = rules();
        r.ignore_ports = vec![15001];
        r.listen_only = true;
        let s = sock(TcpState::Established, "0.0.0.0:15001", 1337, 7);
        assert_eq!(row_reason(&s, &r), Some(Reason::ProxyUid));
        let s = sock(TcpState::Established, "0.0.0.0:15001", 1000, 7);
        assert_eq!(row_reason(&s, &r), Some(Reason::IgnoredPort));
        let s = sock(TcpState::Established, "0.0.0.0:80", 1000, 7);
        assert_eq!(row_reason(&s, &r), Some(Reason::NotListening));
        // A proxy process holding a socket a row rule already excuses
        // reports the row's reason, which needed no scan.
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
        let none = PodFacts::default();
        let v = verdict(socks.clone(), &hs, &rules(), &none, false);
        let ports: Vec<u16> = v.blocking().map(|e| e.socket.local.port()).collect();
        assert_eq!(ports, vec![8080, 8081]);
        assert_eq!(v.blocking_count(), 2);
        assert_eq!(v.ignored().count(), 0);
        assert_eq!(
            (v.trailer.uninspected_processes, v.trailer.unreadable_fds),
            (3, 1)
        );
        let v = verdict(socks, &hs, &rules(), &none, true);
        let ignored: Vec<Entry> = v.ignored().collect();
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].reason, Some(Reason::ProxyUid));
        assert_eq!(v.blocking().count(), 2);
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
        let ports = facts(&[8080, 9090]);
        let mut s = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 1);
        assert_eq!(direction(&s, &ports), Direction::Listen);
        s.state = TcpState::Established;
        s.remote = "10.0.0.9:50000".parse().unwrap();
        assert_eq!(direction(&s, &ports), Direction::Inbound);
        // The listener is gone, but 127.0.0.6 still marks Istio's inbound path.
        let none = PodFacts::default();
        s.local = "10.1.2.3:7070".parse().unwrap();
        s.remote = "127.0.0.6:41000".parse().unwrap();
        assert_eq!(direction(&s, &none), Direction::Inbound);
        s.local = "[::ffff:10.1.2.3]:7070".parse().unwrap();
        s.remote = "[::ffff:127.0.0.6]:41000".parse().unwrap();
        assert_eq!(direction(&s, &none), Direction::Inbound);
        s.local = "10.1.2.3:45000".parse().unwrap();
        s.remote = "10.9.8.7:443".parse().unwrap();
        assert_eq!(direction(&s, &ports), Direction::Outbound);
        assert!(!to_proxy(&s, Direction::Outbound));
        s.remote = "127.0.0.1:15001".parse().unwrap();
        assert_eq!(direction(&s, &ports), Direction::Outbound);
        assert!(to_proxy(&s, Direction::Outbound));
        assert!(
            !to_proxy(&s, Direction::Inbound),
            "only outbound goes to the proxy"
        );
        s.remote = "[::1]:15006".parse().unwrap();
        assert!(to_proxy(&s, Direction::Outbound));
        s.remote = "10.0.0.1:15001".parse().unwrap();
        assert!(
            !to_proxy(&s, Direction::Outbound),
            "a remote host's 15001 is not our proxy"
        );
    }

    #[test]
    fn decide_fills_direction_and_to_proxy() {
        let mut out = sock(TcpState::SynSent, "10.1.2.3:45000", 1000, 2);
        out.remote = "10.9.8.7:443".parse().unwrap();
        let mut via = sock(TcpState::Established, "127.0.0.1:45001", 1000, 3);
        via.remote = "127.0.0.1:15001".parse().unwrap();
        let socks = vec![sock(TcpState::Listen, "0.0.0.0:8080", 1000, 1), out, via];
        let v = verdict(socks, &Holders::default(), &rules(), &facts(&[8080]), false);
        let got: Vec<(Direction, bool)> =
            v.blocking().map(|e| (e.direction, e.to_proxy())).collect();
        assert_eq!(
            got,
            vec![
                (Direction::Listen, false),
                (Direction::Outbound, false),
                (Direction::Outbound, true)
            ]
        );
    }

    #[test]
    fn pod_facts_take_listeners_of_any_owner_and_the_proxys_connections() {
        let mut f = PodFacts::default();
        f.note(&sock(TcpState::Listen, "0.0.0.0:15001", 1337, 1), &rules());
        f.note(
            &sock(TcpState::Established, "10.0.0.1:8080", 1000, 2),
            &rules(),
        );
        f.note(&sock(TcpState::Listen, "[::]:9090", 1000, 0), &rules());
        assert_eq!(f, facts(&[15001, 9090]));
        let listening: Vec<u16> = (0..=u16::MAX).filter(|&p| f.listens_on(p)).collect();
        assert_eq!(listening, [9090, 15001]);
        // The proxy's connection, and only its mirror, is found.
        let c = conn("127.0.0.6:41000", "10.1.2.3:8080", 1337);
        let app_end = conn("10.1.2.3:8080", "127.0.0.6:41000", 1000);
        assert!(!f.proxy_connected_to(&conn("127.0.0.1:8080", "127.0.0.1:41000", 1000)));
        f.note(&c, &rules());
        assert_ne!(f, facts(&[15001, 9090]));
        let lo = conn("127.0.0.1:41000", "127.0.0.1:8080", 1337);
        f.note(&lo, &rules());
        assert!(f.proxy_connected_to(&conn("127.0.0.1:8080", "127.0.0.1:41000", 1000)));
        assert!(!f.proxy_connected_to(&conn("127.0.0.1:8080", "127.0.0.1:41001", 1000)));
        // 127.0.0.6 is loopback too: its mirror counts as well.
        assert!(f.proxy_connected_to(&app_end));
        f.clear();
        assert_eq!(f, PodFacts::default());
        assert!(!f.node_network());
        f.note(&sock(TcpState::Listen, "0.0.0.0:10250", 0, 3), &rules());
        assert!(f.node_network(), "the kubelet's port is listening");
    }

    #[test]
    fn ignored_uid_excuses_after_proxy_uid() {
        let mut r = rules();
        r.ignore_uids = vec![65532, 1337];
        let s = sock(TcpState::Listen, "0.0.0.0:5432", 65532, 7);
        assert_eq!(one(s, &Holders::default(), &r), Some(Reason::IgnoredUid));
        assert_eq!(Reason::IgnoredUid.as_str(), "ignored-uid");
        let s = sock(TcpState::Listen, "0.0.0.0:15001", 1337, 7);
        assert_eq!(row_reason(&s, &r), Some(Reason::ProxyUid));
        let s = sock(TcpState::Listen, "0.0.0.0:8080", 1000, 7);
        assert_eq!(one(s, &Holders::default(), &r), None);
    }

    #[test]
    fn ipv6_passthrough_source_is_inbound() {
        let none = PodFacts::default();
        let s = conn("[fd00::5]:7070", "[::6]:41000", 1000);
        assert_eq!(direction(&s, &none), Direction::Inbound);
        for other in ["[::7]:41000", "[::1]:41000", "[fd00::6]:41000"] {
            let s = conn("[fd00::5]:7070", other, 1000);
            assert_eq!(direction(&s, &none), Direction::Outbound, "{other}");
        }
    }

    #[test]
    fn accepted_connection_stays_inbound_after_its_listener_closed() {
        // The proxy connected from loopback to the app's 8080 and the app
        // has closed its listener: only the proxy's end, in the same table,
        // says which way the connection goes.
        let app = conn("127.0.0.1:8080", "127.0.0.1:51000", 1000);
        let proxy_end = conn("127.0.0.1:51000", "127.0.0.1:8080", 1337);
        let mut f = PodFacts::default();
        assert_eq!(direction(&app, &f), Direction::Outbound);
        f.note(&proxy_end, &rules());
        f.note(&app, &rules());
        assert_eq!(direction(&app, &f), Direction::Inbound);
        // CLOSE_WAIT: the proxy closed first, the app has not yet.
        let mut closing = app.clone();
        closing.state = TcpState::CloseWait;
        assert_eq!(direction(&closing, &f), Direction::Inbound);
        // The same from the pod's own address.
        let app = conn("10.1.2.3:8080", "10.1.2.3:51001", 1000);
        f.note(&conn("10.1.2.3:51001", "10.1.2.3:8080", 1337), &rules());
        assert_eq!(direction(&app, &f), Direction::Inbound);
    }

    #[test]
    fn the_proxys_accepted_end_does_not_make_an_outbound_call_inbound() {
        let mut f = PodFacts::default();
        // The app calls the proxy's 15001 explicitly: the proxy's end
        // accepted it on its listener.
        f.note(
            &sock(TcpState::Listen, "127.0.0.1:15001", 1337, 1),
            &rules(),
        );
        let app = conn("127.0.0.1:45000", "127.0.0.1:15001", 1000);
        f.note(&conn("127.0.0.1:15001", "127.0.0.1:45000", 1337), &rules());
        assert_eq!(direction(&app, &f), Direction::Outbound);
        // TPROXY: the proxy's accepted end carries the remote service's
        // address, which is not the pod's.
        let app = conn("10.1.2.3:45001", "10.9.8.7:443", 1000);
        f.note(&conn("10.9.8.7:443", "10.1.2.3:45001", 1337), &rules());
        assert_eq!(direction(&app, &f), Direction::Outbound);
        // A connection the app holds both ends of is not the proxy's.
        let app = conn("127.0.0.1:8081", "127.0.0.1:52000", 1000);
        f.note(&conn("127.0.0.1:52000", "127.0.0.1:8081", 1000), &rules());
        assert_eq!(direction(&app, &f), Direction::Outbound);
    }

    /// A pod on a cgroup v2 node: the hook's container is cgroup 50, the
    /// app's 60, a collector's 70.
    fn by_cgroup(mut r: Rules) -> Rules {
        r.attribute(&Containers::Cgroup(50));
        r
    }

    fn in_cgroup(mut s: Socket, cgroup: u64) -> Socket {
        s.cgroup = cgroup;
        s
    }

    #[test]
    fn by_cgroup_the_hooks_container_is_the_proxy_whatever_its_uid() {
        let r = by_cgroup(rules());
        // Linkerd's uid, an OpenShift random uid, root: no flag needed.
        for uid in [2102, 1_000_650_000, 0] {
            let s = in_cgroup(sock(TcpState::Listen, "0.0.0.0:4143", uid, 7), 50);
            assert_eq!(
                one(s, &Holders::default(), &r),
                Some(Reason::ProxyContainer)
            );
        }
        // Istio's default uid in another container is that container's.
        let s = in_cgroup(sock(TcpState::Listen, "0.0.0.0:15001", 1337, 7), 60);
        assert_eq!(one(s, &Holders::default(), &r), None);
        // An app and a collector of one uid are told apart, and both block.
        let app = in_cgroup(sock(TcpState::Listen, "0.0.0.0:8080", 1000, 7), 60);
        let collector = in_cgroup(sock(TcpState::Listen, "0.0.0.0:4317", 1000, 8), 70);
        assert_eq!(r.own_container(&app), Some(false));
        assert_eq!(one(app, &Holders::default(), &r), None);
        assert_eq!(one(collector, &Holders::default(), &r), None);
        // A row without a cgroup id falls back to the flags, defaults included.
        let s = sock(TcpState::Listen, "0.0.0.0:15001", 1337, 7);
        assert_eq!(one(s, &Holders::default(), &r), Some(Reason::ProxyUid));
        // The fallback: no own cgroup, the ids are not looked at.
        let mut fallback = rules();
        fallback.attribute(&Containers::Flags("v1".into()));
        let s = in_cgroup(sock(TcpState::Listen, "0.0.0.0:4143", 2102, 7), 50);
        assert_eq!(fallback.own_container(&s), None);
        assert_eq!(one(s, &Holders::default(), &fallback), None);
    }

    #[test]
    fn by_cgroup_given_flags_add_defaults_do_not() {
        let mut r = by_cgroup(rules());
        let other = in_cgroup(sock(TcpState::Listen, "0.0.0.0:15010", 1337, 7), 60);
        let envoy = holders(&[(7, holder(5, "envoy", "envoy"))]);
        // Defaults: neither the uid nor the process name excuses, and the
        // process rule is not even asked (no fd scan).
        assert!(!r.names_apply(&other));
        assert_eq!(one(other.clone(), &envoy, &r), None);
        // Given: both add to the cgroup rule.
        r.proxy_uids_given = true;
        assert_eq!(one(other.clone(), &envoy, &r), Some(Reason::ProxyUid));
        r.proxy_uids_given = false;
        r.proxy_names_given = true;
        assert!(r.names_apply(&other));
        assert_eq!(one(other, &envoy, &r), Some(Reason::ProxyProcess));
        // --ignore-uid works by cgroup as without.
        r.ignore_uids = vec![1000];
        let s = in_cgroup(sock(TcpState::Listen, "0.0.0.0:24224", 1000, 7), 70);
        assert_eq!(one(s, &Holders::default(), &r), Some(Reason::IgnoredUid));
    }

    #[test]
    fn by_cgroup_the_proxys_connections_are_its_containers() {
        // The proxy (uid 2102, no flag) connected to the app from loopback
        // and the app's listener is gone: its end, in the hook's cgroup,
        // still says the app's end is inbound.
        let r = by_cgroup(rules());
        let app = in_cgroup(conn("127.0.0.1:8080", "127.0.0.1:51000", 1000), 60);
        let proxy_end = in_cgroup(conn("127.0.0.1:51000", "127.0.0.1:8080", 2102), 50);
        let mut f = PodFacts::default();
        f.note(&proxy_end, &r);
        assert_eq!(direction(&app, &f), Direction::Inbound);
        let d = decide(&app, &[], &r, &f);
        assert_eq!((d.reason, d.container), (None, Some(false)));
        let e = Entry::new(&app, &[], d);
        assert_eq!(e.cgroup(), 60);
        let d = decide(&app, &[], &rules(), &f);
        assert_eq!(
            Entry::new(&app, &[], d).cgroup(),
            0,
            "no cgroup in the fallback"
        );
    }

    #[test]
    fn is_other_container_for_quiesce() {
        let mut r = by_cgroup(rules());
        let own = in_cgroup(sock(TcpState::Listen, "0.0.0.0:8080", 1337, 7), 50);
        let collector = in_cgroup(sock(TcpState::Listen, "0.0.0.0:4317", 1000, 7), 70);
        assert!(
            !r.is_other_container(&own),
            "the default uid does not count by cgroup"
        );
        assert!(r.is_other_container(&collector));
        r.ignore_uids = vec![1337];
        assert!(r.is_other_container(&own), "--ignore-uid does");
        let fallback = rules();
        assert!(fallback.is_other_container(&own));
        assert!(!fallback.is_other_container(&collector));
    }
}
