//! `quiesce`'s judgement: which rows are the app's inbound traffic, and
//! when traffic last reached it. Pure: rows and instants in, one [`Look`]
//! per poll out; the command keeps the clock and the log.
//!
//! Inbound traffic is what reaches a port the app listens on: data received
//! on a connection to it, a connection arriving (a handshake, an accepted
//! connection, one waiting in the accept queue), a connection that ended
//! since the last look (its TIME_WAIT). The proxy's own sockets never count:
//! in a sidecar pod the proxy's connection to the app is an outbound one
//! from an ephemeral port, and its listeners are its uid's.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::decide::{Containers, MESH_PORTS, Rules};
use crate::keys::{Mix, connection_key};
use crate::procread::{Socket, TcpState};

/// How one row showed traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// `tcp_info` says data was last received this long before the look.
    Data(Duration),
    /// A connection that was not there at the last look.
    New,
    /// A connection whose state or queues changed since the last look (the
    /// tables' only sign of data on a kept-alive connection).
    Changed,
    /// A listener's accept queue changed since the last look; it holds this
    /// many connections now.
    Backlog(u32),
    /// The kernel destroyed a connection to the app's port since the last
    /// look (its destroy event), dated by its last data: one that came and
    /// went between looks.
    Closed,
    /// The kernel's destroy events overflowed since the last look: some
    /// connections may have come and gone unseen, so this is traffic.
    Lost,
}

/// The freshest sign of traffic one look found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// When the traffic happened (as late as the look can tell).
    pub at: Instant,
    /// The app's end of the connection (the listener's address for
    /// [`Sign::Backlog`]).
    pub local: SocketAddr,
    /// The peer (unspecified for [`Sign::Backlog`]).
    pub remote: SocketAddr,
    /// How it showed.
    pub sign: Sign,
}

/// Arrivals one look dated: `count` of them, the last at `at`, the others
/// after `after` (data segments a kept-alive connection received between
/// two looks: only the last is dated), for [`crate::rhythm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The others came after this (the connection's last dated data, or
    /// the last look); `None`: all at `at`.
    pub after: Option<Instant>,
    /// The last one.
    pub at: Instant,
    /// How many, at least 1.
    pub count: u32,
}

/// One poll's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Look {
    /// The freshest traffic seen, if any.
    pub latest: Option<Traffic>,
    /// Every arrival the look can date, since the last look.
    pub arrivals: Vec<Arrival>,
    /// At the first look: the data segments the app's open connections
    /// received over their lives (the kept-alive part of the pod's history).
    pub lifetime_segs: u64,
    /// Open inbound connections to the app's ports (not TIME_WAIT).
    pub connections: usize,
    /// Connections waiting in the app listeners' accept queues.
    pub queued: u32,
}

/// What `quiesce` remembers from one look to the next.
#[derive(Debug, Default)]
pub struct Watch {
    /// Whose sockets are whose: the rule set `wait` and `check` decide by.
    rules: Rules,
    /// Only these local ports (`--port`); every app listener's when empty.
    ports: Vec<u16>,
    /// Ports the app has been seen listening on, ascending: a port stays
    /// the app's after its listener closes, for the connections it accepted.
    listening: Vec<u16>,
    /// The last finished look's connections and listeners: key → state and
    /// queues.
    seen: Rows,
    /// This look's, so far.
    next: Rows,
    /// The last finished look's connections with `tcp_info`: key → their
    /// last data's date and data segments received.
    dated: Dates,
    /// This look's, so far.
    dated_next: Dates,
    /// When the last finished look was taken.
    looked_at: Option<Instant>,
    /// Whether rows carry `tcp_info` (netlink): their dates, not their
    /// changes, count the arrivals.
    dates: bool,
    /// Whether a look has finished: the first only sets the baseline for
    /// what is new.
    looked: bool,
}

/// Keys are already [`Mix`]ed: hashing them again would only cost time.
type Rows = HashMap<u64, u64, BuildHasherDefault<Unmixed>>;
type Dates = HashMap<u64, (Instant, u32), BuildHasherDefault<Unmixed>>;

/// How far two readings of one connection's last data may disagree with no
/// data between them: `tcpi_last_data_recv` counts in jiffies (4ms at 250Hz).
const JITTER: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
struct Unmixed(u64);

impl Hasher for Unmixed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Watch {
    /// A watch with no look yet.
    pub fn new(rules: Rules, ports: Vec<u16>) -> Self {
        Watch {
            rules,
            ports,
            ..Watch::default()
        }
    }

    /// Says whether the rows carry `tcp_info` (netlink) or not (the
    /// tables), for every look after.
    pub fn dated(&mut self, yes: bool) {
        self.dates = yes;
    }

    /// Takes in how containers are told apart, for every look after.
    pub fn attribute(&mut self, containers: &Containers) {
        self.rules.attribute(containers);
    }

    /// The ports the app has been seen listening on, ascending.
    pub fn listening(&self) -> &[u16] {
        &self.listening
    }

    /// Starts a look; rows go to [`Watch::row`], and
    /// [`Watch::finish`] ends it. A look never finished (cut short at the
    /// deadline) leaves the last finished one as the baseline.
    pub fn begin(&mut self) -> Look {
        self.next.clear();
        self.dated_next.clear();
        Look::default()
    }

    /// Takes in one row of the look taken at `at`.
    pub fn row(&mut self, look: &mut Look, at: Instant, s: &Socket) {
        let rules = &self.rules;
        let port = s.local.port();
        let named = self.ports.contains(&port);
        // Istio's capture ports are a rule for the fallback only: where the
        // cgroup tells, ztunnel's in-pod listeners on them (ambient mode)
        // are another container's anyway, and an app's own is the app's.
        let mesh_port = MESH_PORTS.contains(&port) && rules.own_container(s).is_none();
        if rules.ignore_ports.contains(&port)
            || (!self.ports.is_empty() && !named)
            || (mesh_port && !named)
        {
            return;
        }
        if s.state == TcpState::Listen {
            if rules.is_other_container(s) {
                return;
            }
            if let Err(i) = self.listening.binary_search(&port) {
                self.listening.insert(i, port);
            }
            look.queued = look.queued.saturating_add(s.rx_queue);
            let mut key = Mix::default();
            key.addr(s.local);
            let key = key.finish();
            let value = u64::from(s.rx_queue);
            let before = self.seen.get(&key).copied();
            self.next.insert(key, value);
            if before.is_some_and(|b| b != value) {
                look.offer(Traffic {
                    at,
                    local: s.local,
                    remote: s.remote,
                    sign: Sign::Backlog(s.rx_queue),
                });
                // Where rows carry tcp_info, the queued connections are
                // rows of their own, counted there.
                if !self.dates {
                    look.arrive(None, at, 1);
                }
            }
            return;
        }
        if !self.is_apps_port(port) {
            return;
        }
        // TIME_WAIT rows carry no owner (uid 0) nor cgroup: the port alone
        // says whose.
        if s.state != TcpState::TimeWait
            && (rules.own_container(s) == Some(false) || rules.proxy_uid(s))
        {
            return;
        }
        if !matches!(s.state, TcpState::TimeWait | TcpState::SynRecv) {
            look.connections += 1;
        }
        let key = connection_key(s.local, s.remote);
        let value = (u64::from(s.state.to_u8()) << 56)
            ^ (u64::from(s.rx_queue) << 24)
            ^ u64::from(s.tx_queue);
        let before = self.seen.get(&key).copied();
        self.next.insert(key, value);
        if let Some(info) = s.info
            && let Some(date) = at.checked_sub(Duration::from_millis(info.last_data_recv_ms.into()))
        {
            self.date(look, key, date, info.data_segs_in);
        }
        let sign = match s.info {
            Some(info) => Some(Sign::Data(Duration::from_millis(
                info.last_data_recv_ms.into(),
            ))),
            None if !self.looked => None,
            None if before.is_none() => Some(Sign::New),
            None if before != Some(value) => Some(Sign::Changed),
            None => None,
        };
        let Some(sign) = sign else { return };
        // Where rows carry tcp_info, their dates count arrivals (above), and
        // a TIME_WAIT or a handshake is a connection counted by its own
        // row or its destroy event.
        if !self.dates && !matches!(sign, Sign::Data(_)) {
            look.arrive(None, at, 1);
        }
        let when = match sign {
            // Data older than the clock's start cannot be newer than
            // anything; `None` drops it.
            Sign::Data(ago) => match at.checked_sub(ago) {
                Some(t) => t,
                None => return,
            },
            _ => at,
        };
        look.offer(Traffic {
            at: when,
            local: s.local,
            remote: s.remote,
            sign,
        });
    }

    /// The arrivals a connection's `tcp_info` shows since the last look:
    /// none at the first (what came before is the history's), all of a new
    /// connection's, and a known one's new data segments, spread after its
    /// last dated data.
    fn date(&mut self, look: &mut Look, key: u64, date: Instant, segs: u32) {
        self.dated_next.insert(key, (date, segs));
        let Some(last_look) = self.looked_at else {
            look.lifetime_segs += u64::from(segs);
            return;
        };
        look.arrive_since(self.dated.get(&key).copied(), last_look, date, segs);
    }

    /// Takes in a socket the kernel destroyed since the last look (see
    /// [`crate::procread::destroys`]): traffic at `at` when it was a
    /// connection on one of the app's ports. The event carries no owner nor
    /// cgroup, so the port says whose: one the app listens on (as this
    /// watch has seen it, by cgroup where cgroups tell), or a `--port`.
    pub fn closed(&self, look: &mut Look, at: Instant, s: &Socket) {
        // A listener closing is no connection (its peer port is 0).
        if !self.is_apps_port(s.local.port()) || s.remote.port() == 0 {
            return;
        }
        // The event carries the connection's `tcp_info` as it died: its
        // last data is dated back from now (the event came at or before
        // now, so the date is never early). An idle kept-alive connection
        // that a server or balancer closes dates to its last request, long
        // past: no new traffic.
        let when = match s.info {
            Some(info) => {
                match at.checked_sub(Duration::from_millis(info.last_data_recv_ms.into())) {
                    Some(t) => t,
                    None => return,
                }
            }
            None => at,
        };
        // Its arrivals since this look's row of it, or the last look's, or
        // (one that came and went between looks) all of them.
        let key = connection_key(s.local, s.remote);
        let known = self.dated_next.get(&key).or_else(|| self.dated.get(&key));
        let segs = s.info.map_or(0, |i| i.data_segs_in);
        look.arrive_since(known.copied(), self.looked_at.unwrap_or(at), when, segs);
        look.offer(Traffic {
            at: when,
            local: s.local,
            remote: s.remote,
            sign: Sign::Closed,
        });
    }

    /// Whether a connection on local `port` is the app's traffic: a
    /// `--port`, or else a port the app has been seen listening on; never
    /// an `--ignore-port`.
    fn is_apps_port(&self, port: u16) -> bool {
        !self.rules.ignore_ports.contains(&port)
            && if self.ports.is_empty() {
                self.listening.binary_search(&port).is_ok()
            } else {
                self.ports.contains(&port)
            }
    }

    /// Takes in that destroy events were lost since the last look: traffic
    /// at `at`, since what was lost may have been the app's.
    pub fn lost(&self, look: &mut Look, at: Instant) {
        look.arrive(None, at, 1);
        let any = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        look.offer(Traffic {
            at,
            local: any,
            remote: any,
            sign: Sign::Lost,
        });
    }

    /// Ends the look: its rows become the baseline for the next.
    pub fn finish(&mut self, look: Look, at: Instant) -> Look {
        std::mem::swap(&mut self.seen, &mut self.next);
        std::mem::swap(&mut self.dated, &mut self.dated_next);
        self.next.clear();
        self.dated_next.clear();
        self.looked = true;
        self.looked_at = Some(at);
        look
    }
}

impl Look {
    fn arrive(&mut self, after: Option<Instant>, at: Instant, count: u32) {
        self.arrivals.push(Arrival {
            after,
            at,
            count: count.max(1),
        });
    }

    /// A connection's arrivals up to its data dated `date` with `segs`
    /// data segments received: against what was `known` of it (its date
    /// and count), or, new since the look at `last_look`, every one.
    fn arrive_since(
        &mut self,
        known: Option<(Instant, u32)>,
        last_look: Instant,
        date: Instant,
        segs: u32,
    ) {
        match known {
            None => self.arrive(Some(last_look.min(date)), date, segs),
            Some((was, had)) => {
                let more = segs.wrapping_sub(had);
                // A count that went back is no count (a kernel without
                // data_segs_in has 0 for both): then the date tells.
                if more > 0 && more < 1 << 31 {
                    self.arrive(Some(was.min(date)), date.max(was), more);
                } else if more == 0 && segs == 0 && date > was + JITTER {
                    self.arrive(None, date, 1);
                }
            }
        }
    }

    /// Keeps `t` if it is the freshest so far.
    fn offer(&mut self, t: Traffic) {
        if self.latest.is_none_or(|l| t.at > l.at) {
            self.latest = Some(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::socket;
    use crate::procread::TcpInfo;
    use TcpState::*;

    fn rules() -> Rules {
        Rules {
            proxy_uids: vec![1337],
            ..Rules::default()
        }
    }

    fn data(mut s: Socket, ms: u32) -> Socket {
        s.info = Some(TcpInfo {
            last_data_recv_ms: ms,
            data_segs_in: 1,
        });
        s
    }

    fn look(w: &mut Watch, at: Instant, rows: &[Socket]) -> Look {
        let mut l = w.begin();
        for r in rows {
            w.row(&mut l, at, r);
        }
        w.finish(l, at)
    }

    fn app_listener() -> Socket {
        socket("0.0.0.0:8080", "0.0.0.0:0", Listen, 1000, 10)
    }

    #[test]
    fn tcp_info_dates_data_on_app_connections_only() {
        let t0 = Instant::now();
        let at = t0 + Duration::from_secs(10);
        let mut w = Watch::new(rules(), vec![]);
        let rows = [
            app_listener(),
            socket("0.0.0.0:15006", "0.0.0.0:0", Listen, 1337, 11),
            // Envoy's inbound connection from a client, and its connection
            // on to the app: neither is the app's.
            data(
                socket("10.0.0.5:15006", "10.0.0.9:5000", Established, 1337, 12),
                1,
            ),
            data(
                socket("127.0.0.6:40000", "10.0.0.5:8080", Established, 1337, 13),
                1,
            ),
            // The app's end of that connection: data 300 ms ago.
            data(
                socket("10.0.0.5:8080", "127.0.0.6:40000", Established, 1000, 14),
                300,
            ),
            data(
                socket("10.0.0.5:8080", "127.0.0.6:40001", Established, 1000, 15),
                900,
            ),
            // The app's own outbound call: an ephemeral local port.
            data(
                socket("10.0.0.5:45000", "10.0.0.7:80", Established, 1000, 16),
                0,
            ),
        ];
        let l = look(&mut w, at, &rows);
        assert_eq!(w.listening(), [8080]);
        assert_eq!(l.connections, 2);
        let t = l.latest.unwrap();
        assert_eq!(t.at, at - Duration::from_millis(300));
        assert_eq!(t.remote, "127.0.0.6:40000".parse().unwrap());
        assert_eq!(t.sign, Sign::Data(Duration::from_millis(300)));
    }

    #[test]
    fn without_tcp_info_new_and_changed_rows_are_traffic_after_the_first_look() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = Watch::new(rules(), vec![]);
        let conn = socket("10.0.0.5:8080", "10.0.0.9:5000", Established, 1000, 14);
        // The first look is the baseline: nothing in it is news.
        let l = look(&mut w, t0, &[app_listener(), conn.clone()]);
        assert_eq!((l.latest, l.connections), (None, 1));
        // Unchanged: no traffic.
        assert_eq!(
            look(&mut w, t0 + s(1), &[app_listener(), conn.clone()]).latest,
            None
        );
        // Bytes waiting to be read: changed.
        let mut busy = conn.clone();
        busy.rx_queue = 120;
        let l = look(&mut w, t0 + s(2), &[app_listener(), busy.clone()]);
        assert_eq!(
            l.latest.map(|t| (t.at, t.sign)),
            Some((t0 + s(2), Sign::Changed))
        );
        // A stuck queue is no new traffic.
        assert_eq!(
            look(&mut w, t0 + s(3), &[app_listener(), busy.clone()]).latest,
            None
        );
        // A connection that ended since (its TIME_WAIT, uid 0) is new.
        let tw = socket("10.0.0.5:8080", "10.0.0.9:5001", TimeWait, 0, 0);
        let l = look(&mut w, t0 + s(4), &[app_listener(), busy, tw]);
        assert_eq!(l.latest.map(|t| t.sign), Some(Sign::New));
        assert_eq!(l.connections, 1, "TIME_WAIT is not an open connection");
    }

    #[test]
    fn a_growing_accept_queue_is_traffic_and_its_length_is_counted() {
        let t0 = Instant::now();
        let mut w = Watch::new(rules(), vec![]);
        look(&mut w, t0, &[app_listener()]);
        let mut full = app_listener();
        full.rx_queue = 3;
        let at = t0 + Duration::from_secs(1);
        let l = look(&mut w, at, &[full.clone()]);
        assert_eq!(l.queued, 3);
        assert_eq!(
            l.latest.map(|t| (t.at, t.sign)),
            Some((at, Sign::Backlog(3)))
        );
        // Still 3, nobody accepting and nobody arriving: no news.
        assert_eq!(
            look(&mut w, at + Duration::from_secs(1), &[full]).latest,
            None
        );
    }

    #[test]
    fn ports_and_uids_narrow_what_counts() {
        let t0 = Instant::now();
        let conn = |port: u16, ms| {
            data(
                socket(
                    &format!("10.0.0.5:{port}"),
                    "10.0.0.9:5000",
                    Established,
                    1000,
                    1,
                ),
                ms,
            )
        };
        let rows = [
            app_listener(),
            socket("0.0.0.0:9090", "0.0.0.0:0", Listen, 1000, 2),
            // A log shipper's metrics port.
            socket("0.0.0.0:2020", "0.0.0.0:0", Listen, 65532, 3),
            conn(8080, 500),
            conn(9090, 10),
            conn(2020, 5),
        ];
        let at = t0 + Duration::from_secs(5);
        let with = |r: Rules, ports: Vec<u16>| {
            let mut w = Watch::new(r, ports);
            let l = look(&mut w, at, &rows);
            (w.listening().to_vec(), l.latest.map(|t| t.local.port()))
        };
        assert_eq!(with(rules(), vec![]), (vec![2020, 8080, 9090], Some(2020)));
        let ignoring = Rules {
            ignore_uids: vec![65532],
            ..rules()
        };
        assert_eq!(
            with(ignoring.clone(), vec![]),
            (vec![8080, 9090], Some(9090))
        );
        let scrape = Rules {
            ignore_ports: vec![9090],
            ..ignoring
        };
        assert_eq!(with(scrape, vec![]), (vec![8080], Some(8080)));
        assert_eq!(with(rules(), vec![9090]), (vec![9090], Some(9090)));
    }

    #[test]
    fn ztunnels_listeners_in_the_pod_are_not_the_apps() {
        // Ambient mode: ztunnel's in-pod listeners, of another uid than
        // 1337, and the app's own outbound call captured at 15001.
        let at = Instant::now() + Duration::from_secs(1);
        let rows = [
            app_listener(),
            socket("0.0.0.0:15001", "0.0.0.0:0", Listen, 0, 20),
            socket("[::]:15008", "[::]:0", Listen, 0, 21),
            data(
                socket("10.0.0.5:15001", "10.0.0.5:45000", Established, 0, 22),
                0,
            ),
        ];
        let mut w = Watch::new(rules(), vec![]);
        let l = look(&mut w, at, &rows);
        assert_eq!((w.listening(), l.latest), (&[8080][..], None));
        // Named with --port, they count.
        let mut w = Watch::new(rules(), vec![15001]);
        assert!(look(&mut w, at, &rows).latest.is_some());
    }

    #[test]
    fn a_port_stays_the_apps_after_its_listener_closes() {
        let t0 = Instant::now();
        let mut w = Watch::new(rules(), vec![]);
        look(&mut w, t0, &[app_listener()]);
        let conn = data(
            socket("10.0.0.5:8080", "10.0.0.9:5000", Established, 1000, 1),
            0,
        );
        let at = t0 + Duration::from_secs(1);
        let l = look(&mut w, at, &[conn]);
        assert_eq!(l.latest.map(|t| t.at), Some(at));
    }

    #[test]
    fn a_cut_look_leaves_the_last_finished_one_as_baseline() {
        let t0 = Instant::now();
        let mut w = Watch::new(rules(), vec![]);
        let conn = socket("10.0.0.5:8080", "10.0.0.9:5000", Established, 1000, 14);
        look(&mut w, t0, &[app_listener(), conn.clone()]);
        // A look cut short after the listener: never finished.
        let mut cut = w.begin();
        w.row(&mut cut, t0, &app_listener());
        let l = look(&mut w, t0, &[app_listener(), conn]);
        assert_eq!(l.latest, None, "the connection is not new");
    }

    use proptest::prelude::*;

    fn any_row() -> impl Strategy<Value = Socket> {
        (
            prop::sample::select(vec![8080u16, 9090, 15001, 15006, 40000]),
            prop::sample::select(vec![8080u16, 5000, 5001, 5002]),
            1u8..=11,
            prop::sample::select(vec![0u32, 1000, 1337, 65532]),
            any::<u32>(),
            any::<u32>(),
            prop::option::of(any::<u32>()),
        )
            .prop_map(|(lport, rport, st, uid, rx, tx, ms)| {
                let state = TcpState::from_u8(st).unwrap();
                let remote = if state == Listen {
                    "0.0.0.0:0".to_owned()
                } else {
                    format!("10.0.0.9:{rport}")
                };
                let mut s = socket(&format!("10.0.0.5:{lport}"), &remote, state, uid, 1);
                (s.rx_queue, s.tx_queue) = (rx, tx);
                s.info = ms.map(|m| TcpInfo {
                    last_data_recv_ms: m,
                    data_segs_in: 0,
                });
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the rows: no panic, traffic is never later than the
        /// look, never on an ignored or proxy-owned port's listener, never
        /// on a port outside `--port`, and never the proxy's connection.
        #[test]
        fn what_counts_stays_within_the_rules(
            looks in prop::collection::vec(prop::collection::vec(any_row(), 0..12), 1..6),
            only in prop::option::of(prop::sample::select(vec![8080u16, 9090])),
        ) {
            let rules = Rules {
                proxy_uids: vec![1337],
                ignore_uids: vec![65532],
                ignore_ports: vec![9090],
                ..Rules::default()
            };
            let ports: Vec<u16> = only.into_iter().collect();
            let mut w = Watch::new(rules.clone(), ports.clone());
            let t0 = Instant::now() + Duration::from_secs(100_000);
            for (n, rows) in looks.iter().enumerate() {
                let at = t0 + Duration::from_secs(n as u64);
                let l = look(&mut w, at, rows);
                for p in w.listening() {
                    prop_assert!(!rules.ignore_ports.contains(p));
                    prop_assert!(ports.is_empty() || ports.contains(p));
                }
                if let Some(t) = l.latest {
                    prop_assert!(t.at <= at);
                    let port = t.local.port();
                    prop_assert!(!rules.ignore_ports.contains(&port));
                    prop_assert!(ports.contains(&port) || (ports.is_empty() && !MESH_PORTS.contains(&port)));
                    // Some row of that connection counted: not the proxy's.
                    prop_assert!(rows.iter().any(|r| r.local == t.local
                        && r.remote == t.remote
                        && (matches!(r.state, TcpState::TimeWait | Listen)
                            || !rules.proxy_uids.contains(&r.uid))));
                }
            }
        }
    }

    #[test]
    fn by_cgroup_only_this_containers_listeners_are_the_apps() {
        // The app (cgroup 60) and a collector of the same uid (70) that the
        // app streams to without pause; ztunnel's in-pod listener on 15008
        // (ambient mode, cgroup 80); the app's own listener on 15006.
        let cg = |mut s: Socket, id: u64| {
            s.cgroup = id;
            s
        };
        let t0 = Instant::now();
        let mut r = rules();
        r.attribute(&Containers::Cgroup(60));
        let mut w = Watch::new(r, vec![]);
        let listeners = [
            cg(app_listener(), 60),
            cg(socket("0.0.0.0:15006", "0.0.0.0:0", Listen, 1000, 11), 60),
            cg(socket("0.0.0.0:4317", "0.0.0.0:0", Listen, 1000, 12), 70),
            cg(socket("0.0.0.0:15008", "0.0.0.0:0", Listen, 0, 13), 80),
        ];
        let streamed = |ms| {
            [
                // The collector's accepted end, and ztunnel's.
                data(
                    cg(
                        socket("127.0.0.1:4317", "127.0.0.1:45000", Established, 1000, 14),
                        70,
                    ),
                    ms,
                ),
                data(
                    cg(
                        socket("10.0.0.5:15008", "10.0.0.9:5000", Established, 0, 15),
                        80,
                    ),
                    ms,
                ),
            ]
        };
        let rows: Vec<Socket> = listeners.iter().cloned().chain(streamed(0)).collect();
        let l = look(&mut w, t0 + Duration::from_secs(5), &rows);
        assert_eq!(w.listening(), [8080, 15006]);
        assert_eq!((l.latest, l.connections), (None, 0));
        // Data to the app's own 15006 counts: the port list is the
        // fallback's rule only.
        let mut rows: Vec<Socket> = listeners.iter().cloned().chain(streamed(0)).collect();
        rows.push(data(
            cg(
                socket("10.0.0.5:15006", "10.0.0.9:6000", Established, 1000, 16),
                60,
            ),
            200,
        ));
        let at = t0 + Duration::from_secs(6);
        let l = look(&mut w, at, &rows);
        assert_eq!(l.connections, 1);
        assert_eq!(
            l.latest.map(|t| (t.at, t.local.port())),
            Some((at - Duration::from_millis(200), 15006))
        );
        // Without cgroups, the same uid makes the collector the app's.
        let mut w = Watch::new(rules(), vec![]);
        let plain: Vec<Socket> = rows.iter().cloned().map(|s| cg(s, 0)).collect();
        look(&mut w, t0 + Duration::from_secs(5), &plain);
        assert_eq!(w.listening(), [4317, 8080]);
    }

    #[test]
    fn a_connection_destroyed_between_looks_on_the_apps_port_is_traffic() {
        let t0 = Instant::now();
        let mut w = Watch::new(rules(), vec![]);
        look(&mut w, t0, &[app_listener()]);
        let at = t0 + Duration::from_secs(1);
        let mut l = w.begin();
        // The app's end of a connection that came and went; its client's
        // end (an ephemeral port); the proxy's listener on 15006 closing;
        // a connection to a port nobody here listens on.
        for (local, remote) in [
            ("127.0.0.1:40000", "10.0.0.5:8080"),
            ("0.0.0.0:8080", "0.0.0.0:0"),
            ("10.0.0.5:9999", "10.0.0.9:5000"),
        ] {
            w.closed(&mut l, at, &socket(local, remote, Close, 0, 0));
        }
        assert_eq!(l.latest, None);
        let app_end = socket("10.0.0.5:8080", "127.0.0.6:40000", Close, 0, 0);
        w.closed(&mut l, at, &app_end);
        let l = w.finish(l, at);
        assert_eq!(
            l.latest.map(|t| (t.at, t.sign, t.local)),
            Some((at, Sign::Closed, app_end.local))
        );
        // --ignore-port leaves it out; --port names it without a listener.
        let mut r = rules();
        r.ignore_ports = vec![8080];
        let mut w = Watch::new(r, vec![]);
        look(&mut w, t0, &[app_listener()]);
        let mut l = w.begin();
        w.closed(&mut l, at, &app_end);
        assert_eq!(l.latest, None);
        let w = Watch::new(rules(), vec![8080]);
        let mut l = Look::default();
        w.closed(&mut l, at, &app_end);
        assert!(l.latest.is_some());
        // An idle kept-alive connection closed now dates to its last data.
        let mut l = Look::default();
        let idle = data(app_end.clone(), 30_000);
        w.closed(&mut l, at, &idle);
        assert_eq!(
            l.latest.map(|t| t.at),
            at.checked_sub(Duration::from_secs(30))
        );
        // Lost events are traffic.
        let mut l = Look::default();
        w.lost(&mut l, at);
        assert_eq!(l.latest.map(|t| t.sign), Some(Sign::Lost));
    }
}
