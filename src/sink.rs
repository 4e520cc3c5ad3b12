//! Where decided sockets go: one [`Sink`] per output.
//!
//! The pass ([`crate::pass`]) decides each row once and pushes the
//! [`Entry`] into a sink; at the end it hands the sink one [`Trailer`]. The
//! sinks: [`Collect`] keeps every row for `check`'s table and `--all`
//! ([`Verdict`]), [`Tally`] keeps what `wait` logs in memory that does not
//! grow with the table ([`Summary`]), and `check --json` writes each entry
//! as it comes ([`crate::render::JsonSink`]). ripgrep's `Sink` is the model.

use std::io;

use crate::decide::{Decision, Entry};
use crate::keys::{Mix, PortSet, connection_key};
use crate::procread::{HolderList, Socket, TcpState};

/// What one pass found beside the entries it pushed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// How many sockets block.
    pub blocking: usize,
    /// Processes whose fds could not be listed (EACCES: another uid, no
    /// CAP_SYS_PTRACE). Sockets they hold look unowned, and so block.
    pub uninspected_processes: usize,
    /// Single fd links that could not be read while their directory could.
    pub unreadable_fds: usize,
    /// The tables are the node's, not a pod's (see
    /// [`crate::decide::PodFacts::node_network`]).
    pub host_network: bool,
    /// Where the rows came from: `netlink` or `proc`.
    pub source: &'static str,
}

/// Takes decided sockets from a pass.
///
/// Entries come in table order (tcp, then tcp6), but for a connection whose
/// direction only its table's end tells: it follows its table. `seq` is the
/// row's place in table order, for sinks that keep that order.
pub trait Sink {
    /// What the sink gives once the pass is over.
    type Output;

    /// Whether the sockets that do not block are wanted too (`--all`).
    fn wants_ignored(&self) -> bool {
        false
    }

    /// Whether a row that comes now, with `held` rows already held back for
    /// their table's end, needs the direction only that end can tell. A
    /// sink that keeps only the first few rows (`wait`'s tally) needs it
    /// only for a row it may keep; the rest come at once, with the
    /// direction known so far, so that holding them never grows with the
    /// table.
    fn needs_direction(&self, _held: usize) -> bool {
        true
    }

    /// One decided socket: every blocking one, and the others when
    /// [`Sink::wants_ignored`]. An error ends the pass with it.
    fn entry(&mut self, seq: usize, e: &Entry<'_>) -> io::Result<()>;

    /// The end of the pass.
    fn finish(self, trailer: &Trailer) -> Self::Output;
}

/// One row as the sinks that hold rows keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    seq: usize,
    socket: Socket,
    holders: HolderList,
    decision: Decision,
}

impl Row {
    fn new(seq: usize, e: &Entry<'_>) -> Self {
        Row {
            seq,
            socket: e.socket.clone(),
            holders: e.holders.iter().cloned().collect(),
            decision: Decision {
                reason: e.reason,
                direction: e.direction,
                container: e.container,
            },
        }
    }

    fn entry(&self) -> Entry<'_> {
        Entry::new(&self.socket, &self.holders, self.decision)
    }
}

/// Keeps every row it is given, for `check`'s table and `--all`.
#[derive(Debug, Default)]
pub struct Collect {
    all: bool,
    rows: Vec<Row>,
}

impl Collect {
    /// Keeps the blocking rows, and with `all` the others too.
    pub fn new(all: bool) -> Self {
        Collect {
            all,
            rows: Vec::new(),
        }
    }
}

impl Sink for Collect {
    type Output = Verdict;

    fn wants_ignored(&self) -> bool {
        self.all
    }

    fn entry(&mut self, seq: usize, e: &Entry<'_>) -> io::Result<()> {
        self.rows.push(Row::new(seq, e));
        Ok(())
    }

    fn finish(mut self, trailer: &Trailer) -> Verdict {
        // Back to table order; the table's size is unknown until read, so
        // give back the doubling slack.
        self.rows.sort_by_key(|r| r.seq);
        self.rows.shrink_to_fit();
        Verdict {
            rows: self.rows,
            trailer: *trailer,
        }
    }
}

/// Every row of one pass, in table order, and its trailer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    rows: Vec<Row>,
    /// What the pass found beside the rows.
    pub trailer: Trailer,
}

impl Verdict {
    /// The sockets that hold the proxy back, in table order.
    pub fn blocking(&self) -> impl Iterator<Item = Entry<'_>> {
        self.rows
            .iter()
            .map(Row::entry)
            .filter(|e| e.reason.is_none())
    }

    /// The sockets that do not, in table order; only when [`Collect`] was
    /// asked for them.
    pub fn ignored(&self) -> impl Iterator<Item = Entry<'_>> {
        self.rows
            .iter()
            .map(Row::entry)
            .filter(|e| e.reason.is_some())
    }

    /// How many sockets block.
    pub fn blocking_count(&self) -> usize {
        self.trailer.blocking
    }

    /// The blocking sockets counted by owner uid, by ascending uid.
    pub fn owners(&self) -> Vec<OwnerGroup> {
        let mut owners = Owners::default();
        self.blocking().for_each(|e| owners.add(&e));
        owners.groups()
    }
}

/// The blocking sockets of one owner: a uid, in one container where the
/// cgroup tells containers apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerGroup {
    /// The container's cgroup id; 0 where the cgroup cannot tell.
    pub cgroup: u64,
    /// The owner uid.
    pub uid: u32,
    /// How many sockets of it block.
    pub sockets: usize,
    /// Their local ports, ascending, each once.
    pub ports: Vec<u16>,
}

/// Counts blocking sockets by container and owner uid, a bit per local
/// port: flat in memory however many sockets an owner holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Owners(Vec<((u64, u32), usize, PortSet)>);

impl Owners {
    fn add(&mut self, e: &Entry) {
        let key = (e.cgroup(), e.socket.uid);
        let i = match self.0.iter().position(|(k, ..)| *k == key) {
            Some(i) => i,
            None => {
                self.0.push((key, 0, PortSet::new()));
                self.0.len() - 1
            }
        };
        let (_, n, ports) = &mut self.0[i];
        *n += 1;
        ports.insert(e.socket.local.port());
    }

    /// By ascending cgroup id, then uid.
    fn groups(&self) -> Vec<OwnerGroup> {
        let mut groups: Vec<OwnerGroup> = self
            .0
            .iter()
            .map(|((cgroup, uid), n, ports)| OwnerGroup {
                cgroup: *cgroup,
                uid: *uid,
                sockets: *n,
                ports: ports.ports().collect(),
            })
            .collect();
        groups.sort_by_key(|g| (g.cgroup, g.uid));
        groups
    }
}

/// One blocking row's share of a [`Summary::fingerprint`].
fn row_print(s: &Socket) -> u64 {
    let mut h = Mix::default();
    h.add(u64::from(s.state.to_u8()) << 32 | u64::from(s.uid));
    h.addr(s.local);
    h.addr(s.remote);
    h.add(s.inode);
    h.finish()
}

/// Builds `wait`'s [`Summary`] from blocking rows as they come.
#[derive(Debug, Default)]
pub struct Tally {
    keep: usize,
    sum: u64,
    /// The `keep` rows first in table order, by `seq`.
    first: Vec<Row>,
    owners: Owners,
    /// Every blocking connection's [`connection_key`].
    connections: Vec<u64>,
}

impl Tally {
    /// A tally that keeps the first `keep` blocking rows in full.
    pub fn new(keep: usize) -> Tally {
        Tally {
            keep,
            ..Tally::default()
        }
    }
}

impl Sink for Tally {
    type Output = Summary;

    /// Rows held back come before this one in table order: it may be kept
    /// only if fewer than `keep` are kept or held. Counts, owners and the
    /// fingerprint do not depend on a direction.
    fn needs_direction(&self, held: usize) -> bool {
        self.first.len() + held < self.keep
    }

    fn entry(&mut self, seq: usize, e: &Entry<'_>) -> io::Result<()> {
        self.sum = self.sum.wrapping_add(row_print(e.socket));
        self.owners.add(e);
        if e.socket.state != TcpState::Listen {
            self.connections
                .push(connection_key(e.socket.local, e.socket.remote));
        }
        // A row that follows its table may come before rows kept already.
        let at = self.first.partition_point(|r| r.seq < seq);
        if at < self.keep {
            self.first.insert(at, Row::new(seq, e));
            self.first.truncate(self.keep);
        }
        Ok(())
    }

    fn finish(mut self, trailer: &Trailer) -> Summary {
        self.connections.sort_unstable();
        Summary {
            fingerprint: self.sum ^ (trailer.blocking as u64).rotate_left(32),
            first: self.first,
            owners: self.owners.groups(),
            connections: self.connections,
            trailer: *trailer,
        }
    }
}

/// `wait`'s view of one poll, in memory that does not grow with the table:
/// how many sockets block, a fingerprint of which, the first few decided in
/// full (to name them), and all of them counted by owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    fingerprint: u64,
    first: Vec<Row>,
    owners: Vec<OwnerGroup>,
    /// Every blocking connection (no listener) by its [`connection_key`],
    /// ascending: `wait` tells the app's new connections by them.
    connections: Vec<u64>,
    /// What the pass found beside the rows.
    pub trailer: Trailer,
}

impl Summary {
    /// How many sockets block.
    pub fn blocking_count(&self) -> usize {
        self.trailer.blocking
    }

    /// The same for the same blocking sockets (states included), in any
    /// order; different otherwise, but for a 2^-64 chance.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether a connection with this [`connection_key`] blocks.
    pub fn has_connection(&self, key: u64) -> bool {
        self.connections.binary_search(&key).is_ok()
    }

    /// The blocking connections' keys, ascending.
    pub fn connections(&self) -> &[u64] {
        &self.connections
    }

    /// The first blocking sockets in table order, as many as were kept.
    pub fn first(&self) -> impl Iterator<Item = Entry<'_>> {
        self.first.iter().map(Row::entry)
    }

    /// Every blocking socket, counted by owner uid.
    pub fn owners(&self) -> &[OwnerGroup] {
        &self.owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Decision, Direction};
    use crate::fixture::socket;
    use crate::procread::TcpState;

    fn push(sink: &mut impl Sink<Output = impl Sized>, seq: usize, port: u16) {
        let s = socket(
            &format!("0.0.0.0:{port}"),
            "0.0.0.0:0",
            TcpState::Listen,
            1000,
            u64::from(port),
        );
        let d = Decision {
            container: None,
            reason: None,
            direction: Direction::Listen,
        };
        sink.entry(seq, &Entry::new(&s, &[], d)).unwrap();
    }

    /// Rows whose direction their table's end tells come late, with their
    /// own place: the sinks that keep rows give them back in table order.
    #[test]
    fn rows_that_come_late_keep_their_place() {
        let order = [(2, 102), (5, 105), (0, 100), (4, 104), (1, 101)];
        let trailer = Trailer {
            blocking: order.len(),
            ..Trailer::default()
        };
        let mut tally = Tally::new(3);
        let mut collect = Collect::new(false);
        for (seq, port) in order {
            push(&mut tally, seq, port);
            push(&mut collect, seq, port);
        }
        let s = tally.finish(&trailer);
        let first: Vec<u16> = s.first().map(|e| e.socket.local.port()).collect();
        assert_eq!(first, [100, 101, 102]);
        assert_eq!(s.blocking_count(), 5);
        assert_eq!(s.owners()[0].sockets, 5);
        let v = collect.finish(&trailer);
        let all: Vec<u16> = v.blocking().map(|e| e.socket.local.port()).collect();
        assert_eq!(all, [100, 101, 102, 104, 105]);
        // The fingerprint does not care about the order.
        let mut again = Tally::new(3);
        for (seq, port) in order.iter().rev() {
            push(&mut again, *seq, *port);
        }
        assert_eq!(again.finish(&trailer).fingerprint(), s.fingerprint());
    }
}
