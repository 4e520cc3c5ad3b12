//! One look at the pod for `wait` and `check`: rows from a [`Source`],
//! holders from the fd scan, each row decided by [`decide`], every decided
//! socket pushed into a [`Sink`], and the sink finished with one
//! [`Trailer`].
//!
//! A row's way through: the source reads it from its table and hands it
//! over; its facts go into [`PodFacts`] (listeners, the proxy's
//! connections), whatever it turns out to be; a row no process holds
//! (inode 0) stops there; a row the table's own rules settle (a proxy or
//! ignored uid or port, `--listen-only`) stops there too, unless the sink
//! wants the excused ones (`check --all`); the first row that
//! goes on and whose holders could excuse it (a proxy name applies: see
//! [`Rules::names_apply`]) starts the fd scan, once for the whole pass; the row's holders
//! are looked up and [`decide::decide_so_far`] gives its reason and
//! direction, or says only its table's end can tell the direction, and then
//! it waits for that end; the [`Entry`] goes to the sink, which counts it,
//! writes it or keeps it.

use std::io;
use std::path::PathBuf;

use anyhow::Result;

use crate::decide::{self, Containers, Entry, PodFacts, Rules};
use crate::procread::{self, HolderList, Holders, Socket, Table};
use crate::sink::{Sink, Trailer};
use crate::source::Source;

/// One pass's reusable parts: the rules and the pod facts, cleared for each
/// pass. The source is the caller's, so that a hook keeps one source across
/// its looks and can ask it what it fell back from.
#[derive(Debug)]
pub struct Pass {
    proc_root: PathBuf,
    rules: Rules,
    facts: PodFacts,
}

impl Pass {
    /// Holders from the processes under `proc_root`, decided by `rules`.
    pub fn new(proc_root: PathBuf, rules: Rules) -> Self {
        Pass {
            proc_root,
            rules,
            facts: PodFacts::default(),
        }
    }

    /// Takes in how containers are told apart, for every pass after.
    pub fn attribute(&mut self, containers: &Containers) {
        self.rules.attribute(containers);
    }

    /// Whether the last pass found a listener on `port` (any container's).
    pub fn listens_on(&self, port: u16) -> bool {
        self.facts.listens_on(port)
    }

    /// One pass over `source`'s rows into `sink`. Gives up with [`procread::Stopped`] once
    /// `stop()` says so (the hook's deadline). Errors when a table cannot be
    /// read or parsed, the process list cannot be opened, or the sink
    /// fails; vanished or foreign processes are not errors.
    ///
    /// The fd scan runs once, just before the first row that the table's
    /// own rules do not settle and whose holders could excuse it (see
    /// [`Rules::names_apply`]), so every row after it is decided with all
    /// its holders, the proxy's processes included. A pod where the table
    /// settles everything (a gateway, the proxy alone at the end of a wait)
    /// never reads a busy Envoy's tens of thousands of fds; nor does one
    /// where the kernel's cgroup ids tell the containers apart, unless
    /// `--proxy-name` was given.
    pub fn run<K: Sink>(
        &mut self,
        source: &mut impl Source,
        sink: K,
        stop: &dyn Fn() -> bool,
    ) -> Result<K::Output> {
        self.facts.clear();
        let root = &self.proc_root;
        let mut d = Decider::new(&self.rules, &mut self.facts, sink);
        let mut scan: Option<Holders> = None;
        let unscanned = Holders::default();
        let mut failed = None;
        for table in [Table::Tcp, Table::Tcp6] {
            source.read(table, stop, &mut |s| {
                if !d.takes(&s) || failed.is_some() {
                    return;
                }
                if !d.rules.names_apply(&s) {
                    return d.decide(s, &unscanned);
                }
                let holders = match &mut scan {
                    Some(h) => h,
                    None => match procread::scan_holders(root, stop) {
                        Ok(h) => scan.insert(h),
                        Err(e) => {
                            failed = Some(e);
                            return;
                        }
                    },
                };
                d.decide(s, holders);
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            d.table_end();
        }
        Ok(d.finish(scan.as_ref(), source.name())?)
    }
}

/// Decides rows already in memory, one slice a table, with these holders,
/// into `sink`, as [`Pass::run`] decides rows read from a source (tests,
/// benches and the fuzzer use it). `facts` start from what is given, and
/// take in every row.
pub fn decide_rows<K: Sink>(
    tables: &[&[Socket]],
    holders: &Holders,
    rules: &Rules,
    mut facts: PodFacts,
    sink: K,
) -> io::Result<K::Output> {
    let mut d = Decider::new(rules, &mut facts, sink);
    for table in tables {
        for s in *table {
            if d.takes(s) {
                d.decide(s.clone(), holders);
            }
        }
        d.table_end();
    }
    d.finish(Some(holders), "proc")
}

/// The part of a pass that decides: rows in, entries out.
struct Decider<'a, K> {
    rules: &'a Rules,
    facts: &'a mut PodFacts,
    sink: K,
    keep_ignored: bool,
    /// The next row's place in table order.
    seq: usize,
    blocking: usize,
    /// Rows whose direction their table's end tells.
    later: Vec<(usize, Socket, HolderList)>,
    /// The sink's first error: nothing more goes to it.
    failed: Option<io::Error>,
}

impl<'a, K: Sink> Decider<'a, K> {
    fn new(rules: &'a Rules, facts: &'a mut PodFacts, sink: K) -> Self {
        Decider {
            rules,
            facts,
            keep_ignored: sink.wants_ignored(),
            sink,
            seq: 0,
            blocking: 0,
            later: Vec::new(),
            failed: None,
        }
    }

    /// Takes in a row's facts; whether it goes on to be decided (the
    /// table's own rules leave it, or the sink wants it anyway).
    fn takes(&mut self, s: &Socket) -> bool {
        self.facts.note(s, self.rules);
        self.seq += 1;
        decide::keep_row(s, self.rules, self.keep_ignored)
    }

    /// Decides the row [`Decider::takes`] just took, or keeps it for its
    /// table's end.
    fn decide(&mut self, s: Socket, holders: &Holders) {
        let held: HolderList = holders.of(s.inode).cloned().collect();
        let seq = self.seq - 1;
        match decide::decide_so_far(&s, &held, self.rules, self.facts) {
            Some(d) => self.emit(seq, Entry::new(&s, &held, d)),
            None if !self.sink.needs_direction(self.later.len()) => {
                let d = decide::decide(&s, &held, self.rules, self.facts);
                self.emit(seq, Entry::new(&s, &held, d));
            }
            None => {
                self.later.push((seq, s, held));
                #[cfg(test)]
                MOST_HELD.with(|m| m.set(m.get().max(self.later.len())));
            }
        }
    }

    /// The table is read: its facts are whole, the rows kept for them go.
    fn table_end(&mut self) {
        for (seq, s, held) in std::mem::take(&mut self.later) {
            let d = decide::decide(&s, &held, self.rules, self.facts);
            self.emit(seq, Entry::new(&s, &held, d));
        }
    }

    fn emit(&mut self, seq: usize, e: Entry<'_>) {
        let blocks = e.reason.is_none();
        self.blocking += usize::from(blocks);
        if (blocks || self.keep_ignored) && self.failed.is_none() {
            self.failed = self.sink.entry(seq, &e).err();
        }
    }

    /// The sink's output, with the trailer: `scan` is the fd scan, if one
    /// ran; `source` the rows' source by name.
    fn finish(self, scan: Option<&Holders>, source: &'static str) -> io::Result<K::Output> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let trailer = Trailer {
            blocking: self.blocking,
            uninspected_processes: scan.map_or(0, |h| h.uninspected_processes),
            unreadable_fds: scan.map_or(0, |h| h.unreadable_fds),
            host_network: self.facts.node_network(),
            source,
        };
        Ok(self.sink.finish(&trailer))
    }
}

#[cfg(test)]
thread_local! {
    /// The most rows a pass on this thread held back for their table's end.
    static MOST_HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Direction, Reason};
    use crate::fixture::{self, Process};
    use crate::procread::Holder;
    use crate::procread::TcpState;
    use crate::render::JsonSink;
    use crate::sink::{Collect, Tally};
    use crate::source::ProcTables;
    use std::path::Path;

    const LISTEN: TcpState = TcpState::Listen;
    const EST: TcpState = TcpState::Established;

    /// A `/proc` tree: both tables (rows in the kernel's layout) and
    /// processes with their socket fds.
    fn tree(
        rows: &[(&str, &str, TcpState, u32, u64)],
        procs: &[(i32, &str, &[u64])],
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Socket> = rows
            .iter()
            .map(|(l, r, st, uid, inode)| fixture::socket(l, r, st.clone(), *uid, *inode))
            .collect();
        fixture::write_tables(dir.path(), &rows).unwrap();
        for (pid, comm, inodes) in procs {
            Process::new(*pid, comm)
                .sockets(inodes)
                .write(dir.path())
                .unwrap();
        }
        dir
    }

    fn rules() -> Rules {
        crate::fixture::istio_rules()
    }

    /// A pass over a fixture tree's tables.
    struct Tables(Pass, ProcTables);

    impl Tables {
        fn run<K: Sink>(&mut self, sink: K, stop: &dyn Fn() -> bool) -> Result<K::Output> {
            self.0.run(&mut self.1, sink, stop)
        }
    }

    fn pass(root: &Path, rules: Rules) -> Tables {
        Tables(
            Pass::new(root.to_path_buf(), rules),
            ProcTables::new(root.to_path_buf()),
        )
    }

    /// What an entry shows: the row, its holders, direction and reason.
    type Shown = (Socket, Vec<Holder>, Direction, bool, Option<Reason>);

    fn shown(e: &Entry) -> Shown {
        (
            e.socket.clone(),
            e.holders.to_vec(),
            e.direction,
            e.to_proxy(),
            e.reason,
        )
    }

    /// Records what a pass pushes, in push order.
    #[derive(Default)]
    struct Record(Vec<Shown>, bool);

    impl Sink for Record {
        type Output = (Vec<Shown>, Trailer);
        fn wants_ignored(&self) -> bool {
            self.1
        }
        fn entry(&mut self, _seq: usize, e: &Entry<'_>) -> io::Result<()> {
            self.0.push(shown(e));
            Ok(())
        }
        fn finish(self, t: &Trailer) -> Self::Output {
            (self.0, *t)
        }
    }

    /// Every sink of one pass agrees: the table's rows, `--all`'s blocking
    /// rows, what the JSON stream writes, and `wait`'s tally (the count,
    /// the first rows, the owners), with the same trailer.
    fn agree(root: &Path, rules: Rules) {
        let mut p = pass(root, rules);
        let never = || false;
        let v = p.run(Collect::new(false), &never).unwrap();
        let all = p.run(Collect::new(true), &never).unwrap();
        let table: Vec<Shown> = v.blocking().map(|e| shown(&e)).collect();
        let with_all: Vec<Shown> = all.blocking().map(|e| shown(&e)).collect();
        assert_eq!(table, with_all, "--all only adds rows");
        assert_eq!(v.trailer.blocking, all.trailer.blocking);
        let (mut streamed, t) = p.run(Record::default(), &never).unwrap();
        streamed.sort_by_key(|s| table.iter().position(|t| t == s));
        assert_eq!(streamed, table, "the stream pushes what the table prints");
        assert_eq!(t, v.trailer);
        let mut json = Vec::new();
        let n = p
            .run(
                JsonSink::new(&mut json, &Containers::Flags("test".into())).unwrap(),
                &never,
            )
            .unwrap()
            .unwrap();
        assert_eq!(n, v.blocking_count());
        assert_eq!(
            String::from_utf8(json)
                .unwrap()
                .matches("\"state\":")
                .count(),
            n
        );
        for keep in [0, 1, 3, 100] {
            let s = p.run(Tally::new(keep), &never).unwrap();
            assert_eq!(s.blocking_count(), v.blocking_count());
            let want: Vec<_> = v.blocking().take(keep).collect();
            let got: Vec<_> = s.first().collect();
            assert_eq!(got, want, "keep {keep}");
            assert_eq!(s.owners(), v.owners());
            assert_eq!(s.trailer, v.trailer);
        }
    }

    #[test]
    fn waits_tally_holds_back_no_more_rows_than_it_keeps() {
        // 60 loopback connections of the app, after it closed its
        // listeners: each may yet turn out to be one the proxy made, which
        // only the table's end tells. `check` holds them all for that;
        // `wait`'s tally only as many as it keeps in full.
        let rows: Vec<(String, String, u64)> = (0..60u16)
            .map(|i| {
                (
                    format!("127.0.0.1:{}", 40_000 + i),
                    format!("127.0.0.1:{}", 50_000 + i),
                    100 + u64::from(i),
                )
            })
            .collect();
        let rows: Vec<(&str, &str, TcpState, u32, u64)> = rows
            .iter()
            .map(|(l, r, i)| (l.as_str(), r.as_str(), EST, 1000, *i))
            .collect();
        let pod = tree(&rows, &[]);
        let held = |run: &mut dyn FnMut() -> usize| {
            MOST_HELD.with(|m| m.set(0));
            let n = run();
            (n, MOST_HELD.with(std::cell::Cell::get))
        };
        let mut p = pass(pod.path(), rules());
        let (n, most) = held(&mut || p.run(Tally::new(3), &|| false).unwrap().blocking_count());
        assert_eq!((n, most), (60, 3));
        let kept = p.run(Tally::new(3), &|| false).unwrap();
        let locals: Vec<String> = kept.first().map(|e| e.socket.local.to_string()).collect();
        assert_eq!(
            locals,
            ["127.0.0.1:40000", "127.0.0.1:40001", "127.0.0.1:40002"]
        );
        let (n, most) = held(&mut || {
            p.run(Collect::new(false), &|| false)
                .unwrap()
                .blocking_count()
        });
        assert_eq!((n, most), (60, 60));
    }

    #[test]
    fn the_summary_decides_as_the_verdict_does() {
        let pod = tree(
            &[
                ("0.0.0.0:15001", "0.0.0.0:0", LISTEN, 1337, 101),
                ("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 201),
                ("[::]:9090", "[::]:0", LISTEN, 1000, 202),
                ("10.1.2.3:45000", "10.9.8.7:443", EST, 1000, 203),
                ("127.0.0.1:8080", "127.0.0.1:51000", EST, 1000, 204),
                ("127.0.0.1:51000", "127.0.0.1:8080", EST, 1337, 102),
                ("127.0.0.1:40000", "127.0.0.1:15001", EST, 1000, 205),
                ("10.1.2.3:8081", "127.0.0.6:41000", EST, 1000, 0),
                // Held by envoy under uid 0: excused by the process rule.
                ("0.0.0.0:15090", "0.0.0.0:0", LISTEN, 0, 301),
                ("0.0.0.0:5432", "0.0.0.0:0", LISTEN, 65532, 401),
            ],
            &[(15, "envoy", &[301]), (40, "server", &[201, 203])],
        );
        agree(pod.path(), rules());
        let mut r = rules();
        r.ignore_uids = vec![65532];
        r.ignore_ports = vec![9090];
        agree(pod.path(), r);
        let mut r = rules();
        r.listen_only = true;
        agree(pod.path(), r);
        let empty = tree(&[], &[]);
        agree(empty.path(), rules());
    }

    #[test]
    fn the_fd_scan_runs_only_when_the_table_leaves_a_row_to_decide() {
        use std::os::unix::fs::chown;
        // envoy (uid 1337) holds its listener and a uid-1000 socket handed
        // to it; a plain file among its fds counts as unreadable when read.
        let pod = tree(
            &[
                ("0.0.0.0:15001", "0.0.0.0:0", LISTEN, 1337, 101),
                ("127.0.0.1:7000", "0.0.0.0:0", LISTEN, 1000, 777),
            ],
            &[(15, "envoy", &[101, 777])],
        );
        std::fs::write(pod.path().join("15/fd/99"), "not a link").unwrap();
        if let Err(e) = chown(pod.path().join("15"), Some(1337), None) {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root: {e}");
            crate::fixture::skipped(&format!("chown needs root ({e})"));
            return;
        }
        // The handed-over socket is the proxy's: nothing blocks, in both shapes.
        agree(pod.path(), rules());
        let mut p = pass(pod.path(), rules());
        let s = p.run(Tally::new(10), &|| false).unwrap();
        assert_eq!(s.blocking_count(), 0);
        // The row of uid 1000 needed the scan, envoy's fds included.
        assert_eq!(s.trailer.unreadable_fds, 1, "envoy was scanned for 777");
        // A pod of the proxy alone (a gateway): its fds are never read.
        let gateway = tree(
            &[("0.0.0.0:15001", "0.0.0.0:0", LISTEN, 1337, 101)],
            &[(15, "envoy", &[101])],
        );
        std::fs::write(gateway.path().join("15/fd/99"), "not a link").unwrap();
        chown(gateway.path().join("15"), Some(1337), None).unwrap();
        let mut p = pass(gateway.path(), rules());
        let s = p.run(Tally::new(10), &|| false).unwrap();
        assert_eq!((s.blocking_count(), s.trailer.unreadable_fds), (0, 0));
        // --all wants the excused rows: the scan runs, envoy is named.
        let v = p.run(Collect::new(true), &|| false).unwrap();
        assert_eq!(v.blocking_count(), 0);
        assert_eq!(v.trailer.unreadable_fds, 1);
        assert_eq!(v.ignored().next().unwrap().holders[0].name(), "envoy");
    }

    #[test]
    fn a_connection_the_proxy_made_is_streamed_after_its_table_when_its_end_comes_later() {
        // The app closed its listener; the proxy's end of the connection it
        // made to the app is read after the app's end.
        let pod = tree(
            &[
                ("0.0.0.0:15006", "0.0.0.0:0", LISTEN, 1337, 101),
                ("127.0.0.1:8080", "127.0.0.1:51000", EST, 1000, 201),
                ("10.1.2.3:45000", "10.9.8.7:443", EST, 1000, 202),
                ("127.0.0.1:51000", "127.0.0.1:8080", EST, 1337, 102),
                ("[::]:9090", "[::]:0", LISTEN, 1000, 203),
            ],
            &[],
        );
        let mut p = pass(pod.path(), rules());
        let never = || false;
        let (pushed, _) = p.run(Record::default(), &never).unwrap();
        let order: Vec<_> = pushed.iter().map(|s| (s.0.inode, s.2)).collect();
        assert_eq!(
            order,
            [
                (202, Direction::Outbound),
                (201, Direction::Inbound),
                (203, Direction::Listen)
            ]
        );
        // The table's own order, with the same directions, in the verdict.
        let v = p.run(Collect::new(false), &never).unwrap();
        let batch: Vec<_> = v
            .blocking()
            .map(|e| (e.socket.inode, e.direction))
            .collect();
        assert_eq!(
            batch,
            [
                (201, Direction::Inbound),
                (202, Direction::Outbound),
                (203, Direction::Listen)
            ]
        );
        // And in wait's first rows.
        let s = p.run(Tally::new(2), &never).unwrap();
        let first: Vec<_> = s.first().map(|e| e.socket.inode).collect();
        assert_eq!(first, [201, 202]);
        // A sink that fails ends the pass with its error.
        struct Broken;
        impl Sink for Broken {
            type Output = ();
            fn entry(&mut self, _: usize, _: &Entry<'_>) -> io::Result<()> {
                Err(io::Error::other("pipe closed"))
            }
            fn finish(self, _: &Trailer) {}
        }
        let err = p.run(Broken, &never).unwrap_err();
        assert_eq!(err.to_string(), "pipe closed");
    }
}
