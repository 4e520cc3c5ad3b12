//! One look at the pod: read both tables, scan fds where needed, decide.
//!
//! Two shapes of the same decision. [`Poller::poll`] gives `check` a
//! [`Verdict`] with every row it prints. [`Poller::poll_summary`] gives
//! `wait`, which polls every 250 ms for as long as the app takes, a
//! [`Summary`] whose memory does not grow with the table: rows are decided
//! as they stream through one read buffer, and only the first few are kept.

use std::path::PathBuf;

use anyhow::Result;

use crate::decide::{self, Direction, Entry, PodFacts, Rules, Summary, Tally, Verdict};
use crate::procread::{self, HolderList, Holders, Socket, Table};

/// What [`Poller::poll_each`] found beside the rows it handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    /// How many sockets block.
    pub blocking: usize,
    /// Processes whose fds could not be listed.
    pub uninspected_processes: usize,
    /// Fd links that could not be read.
    pub unreadable_fds: usize,
    /// The tables are the node's.
    pub host_network: bool,
}

impl StreamEnd {
    fn new(blocking: usize, holders: &Holders, facts: &PodFacts) -> Self {
        StreamEnd {
            blocking,
            uninspected_processes: holders.uninspected_processes,
            unreadable_fds: holders.unreadable_fds,
            host_network: facts.node_network(),
        }
    }
}

/// What [`Poller::stream_blocking`] hands on.
enum Streamed<'a> {
    /// A socket that blocks, with its visible holders.
    Blocking(&'a Socket, &'a HolderList),
    /// The end of a table: its facts are complete.
    TableEnd,
}

/// Reads and decides, reusing its read buffer and pod facts across polls.
#[derive(Debug)]
pub struct Poller {
    proc_root: PathBuf,
    rules: Rules,
    keep_ignored: bool,
    buf: Vec<u8>,
    facts: PodFacts,
}

impl Poller {
    /// A poller over `proc_root`; `keep_ignored` keeps excused sockets for `--all`.
    pub fn new(proc_root: PathBuf, rules: Rules, keep_ignored: bool) -> Self {
        Poller {
            proc_root,
            rules,
            keep_ignored,
            buf: Vec::new(),
            facts: PodFacts::default(),
        }
    }

    /// One poll, every row `check` prints kept. Errors only when a table
    /// cannot be read or parsed, or the process list itself cannot be
    /// opened; vanished or foreign processes are not errors.
    pub fn poll(&mut self) -> Result<Verdict> {
        let mut rows: Vec<Socket> = Vec::new();
        self.facts.clear();
        let (rules, keep_ignored, facts) = (&self.rules, self.keep_ignored, &mut self.facts);
        for table in [Table::Tcp, Table::Tcp6] {
            procread::read_table(&self.proc_root, table, &mut self.buf, |s| {
                facts.note(&s, rules);
                if decide::keep_row(&s, rules, keep_ignored) {
                    rows.push(s);
                }
            })?;
        }
        // The table's size is unknown until read; give back the doubling slack.
        rows.shrink_to_fit();
        let mut wanted: Vec<u64> = rows.iter().map(|s| s.inode).collect();
        wanted.sort_unstable();
        wanted.dedup();
        // The fd scan walks every process: it returns at once when no socket needs it.
        let holders = procread::scan_holders(&self.proc_root, Some(&wanted), &|| false)?;
        drop(wanted);
        Ok(decide::decide(
            rows,
            &holders,
            &self.rules,
            &self.facts,
            self.keep_ignored,
        ))
    }

    /// One poll of `wait`: the same rules, in memory that does not grow with
    /// the table (see [`Poller::stream_blocking`]). Gives up with
    /// [`procread::Stopped`] once `stop()` says so (the deadline).
    pub fn poll_summary(&mut self, keep: usize, stop: &dyn Fn() -> bool) -> Result<Summary> {
        let mut tally = Tally::new(keep);
        let holders = self.stream_blocking(stop, |row, _| {
            if let Streamed::Blocking(s, held) = row {
                tally.add(s, held);
            }
        })?;
        Ok(tally.finish(&self.facts, &holders))
    }

    /// One poll of `check --json`: each blocking socket handed to `emit` as
    /// it is read, so that nothing grows with the table. In table order,
    /// but for a connection whose direction only the end of its table tells
    /// ([`decide::direction_so_far`]): those follow their table. Returns
    /// what the document ends with.
    pub fn poll_each(
        &mut self,
        mut emit: impl FnMut(&Entry<'_>) -> std::io::Result<()>,
    ) -> Result<StreamEnd> {
        let mut blocking = 0;
        let mut failed: Option<std::io::Error> = None;
        let mut later: Vec<(Socket, HolderList)> = Vec::new();
        let mut send = |s: &Socket, held: &HolderList, direction: Direction| {
            if failed.is_none() {
                let e = Entry {
                    socket: s,
                    holders: held,
                    direction,
                    to_proxy: decide::to_proxy(s, direction),
                    reason: None,
                };
                failed = emit(&e).err();
            }
        };
        let holders = self.stream_blocking(&|| false, |row, facts| match row {
            Streamed::Blocking(s, held) => {
                blocking += 1;
                match decide::direction_so_far(s, facts) {
                    Some(d) => send(s, held, d),
                    None => later.push((s.clone(), held.clone())),
                }
            }
            Streamed::TableEnd => {
                for (s, held) in later.drain(..) {
                    send(&s, &held, decide::direction(&s, facts));
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        Ok(StreamEnd::new(blocking, &holders, &self.facts))
    }

    /// The streaming poll behind [`Poller::poll_summary`] and
    /// [`Poller::poll_each`]: `on` gets every blocking row with the pod facts
    /// so far, and the end of each table. Returns the fd scan.
    ///
    /// The fd scan runs once, just before the first row that the table's
    /// own rules do not settle, so every row after it is decided with all
    /// its holders, the proxy's processes included. A pod where the table
    /// settles everything (a gateway, the proxy alone at the end of a wait)
    /// never reads a busy Envoy's tens of thousands of fds.
    fn stream_blocking(
        &mut self,
        stop: &dyn Fn() -> bool,
        mut on: impl FnMut(Streamed<'_>, &PodFacts),
    ) -> Result<Holders> {
        let (root, rules) = (&self.proc_root, &self.rules);
        let mut scanned: Option<Holders> = None;
        let mut failed = None;
        self.facts.clear();
        let facts = &mut self.facts;
        for table in [Table::Tcp, Table::Tcp6] {
            procread::read_table_until(root, table, &mut self.buf, stop, |s| {
                facts.note(&s, rules);
                if !decide::is_held(&s) || decide::row_reason(&s, rules).is_some() {
                    return;
                }
                let holders = match &mut scanned {
                    Some(h) => h,
                    None if failed.is_some() => return,
                    None => match procread::scan_holders(root, None, stop) {
                        Ok(h) => scanned.insert(h),
                        Err(e) => {
                            failed = Some(e);
                            return;
                        }
                    },
                };
                let held: HolderList = holders.of(s.inode).cloned().collect();
                if decide::reason(&s, &held, rules).is_none() {
                    on(Streamed::Blocking(&s, &held), facts);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            on(Streamed::TableEnd, facts);
        }
        Ok(scanned.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A `/proc` tree: both tables (rows in the kernel's layout) and
    /// processes with their socket fds.
    fn tree(
        rows: &[(&str, &str, u8, u32, u64)],
        procs: &[(u32, &str, &[u64])],
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let enc = |a: &str| {
            let a: std::net::SocketAddr = a.parse().unwrap();
            let ip = match a.ip() {
                std::net::IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
                std::net::IpAddr::V6(v6) => v6
                    .octets()
                    .chunks_exact(4)
                    .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
                    .collect(),
            };
            format!("{ip}:{:04X}", a.port())
        };
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        for (name, v6) in [("tcp", false), ("tcp6", true)] {
            let mut text = String::from(
                "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
            );
            for (i, (l, r, st, uid, inode)) in rows
                .iter()
                .filter(|r| r.0.starts_with('[') == v6)
                .enumerate()
            {
                text.push_str(&format!(
                    "{i:4}: {} {} {st:02X} 00000000:00000000 00:00000000 00000000 {uid:5} 0 {inode} 1 0 100 0 0 10 0\n",
                    enc(l),
                    enc(r)
                ));
            }
            std::fs::write(dir.path().join("net").join(name), text).unwrap();
        }
        for (pid, comm, inodes) in procs {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir_all(p.join("fd")).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(p.join("cmdline"), format!("{comm}\0")).unwrap();
            for (fd, inode) in inodes.iter().enumerate() {
                symlink(
                    format!("socket:[{inode}]"),
                    p.join("fd").join(fd.to_string()),
                )
                .unwrap();
            }
        }
        dir
    }

    fn rules() -> Rules {
        Rules {
            proxy_uids: vec![1337],
            proxy_names: vec!["envoy".into(), "pilot-agent".into()],
            ..Rules::default()
        }
    }

    /// Both shapes of a poll must agree: the count, the first rows with
    /// their directions and holders, the owners, the scan's counts.
    fn agree(root: &Path, rules: Rules) {
        let mut p = Poller::new(root.to_path_buf(), rules, false);
        let v = p.poll().unwrap();
        let mut streamed = Vec::new();
        let end = p
            .poll_each(|e| {
                streamed.push((
                    e.socket.clone(),
                    e.holders.to_vec(),
                    e.direction,
                    e.to_proxy,
                ));
                Ok(())
            })
            .unwrap();
        let batch: Vec<_> = v
            .blocking()
            .map(|e| {
                (
                    e.socket.clone(),
                    e.holders.to_vec(),
                    e.direction,
                    e.to_proxy,
                )
            })
            .collect();
        assert_eq!(
            streamed, batch,
            "check --json streams what the table prints"
        );
        assert_eq!(
            (
                end.blocking,
                end.uninspected_processes,
                end.unreadable_fds,
                end.host_network
            ),
            (
                v.blocking_count(),
                v.uninspected_processes,
                v.unreadable_fds,
                v.host_network
            )
        );
        for keep in [0, 1, 3, 100] {
            let s = p.poll_summary(keep, &|| false).unwrap();
            assert_eq!(s.blocking_count(), v.blocking_count());
            let want: Vec<_> = v.blocking().take(keep).collect();
            let got: Vec<_> = s.first().collect();
            assert_eq!(got, want, "keep {keep}");
            assert_eq!(s.owners(), v.owners());
            assert_eq!(
                (s.uninspected_processes, s.unreadable_fds, s.host_network),
                (v.uninspected_processes, v.unreadable_fds, v.host_network)
            );
        }
    }

    #[test]
    fn the_summary_decides_as_the_verdict_does() {
        const LISTEN: u8 = 0x0A;
        const EST: u8 = 0x01;
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
        const LISTEN: u8 = 0x0A;
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
            eprintln!("skipped: chown needs root ({e})");
            return;
        }
        // The handed-over socket is the proxy's: nothing blocks, in both shapes.
        agree(pod.path(), rules());
        let mut p = Poller::new(pod.path().to_path_buf(), rules(), false);
        let s = p.poll_summary(10, &|| false).unwrap();
        assert_eq!(s.blocking_count(), 0);
        // The row of uid 1000 needed the scan, envoy's fds included.
        assert_eq!(s.unreadable_fds, 1, "envoy was scanned for 777");
        // A pod of the proxy alone (a gateway): its fds are never read.
        let gateway = tree(
            &[("0.0.0.0:15001", "0.0.0.0:0", LISTEN, 1337, 101)],
            &[(15, "envoy", &[101])],
        );
        std::fs::write(gateway.path().join("15/fd/99"), "not a link").unwrap();
        chown(gateway.path().join("15"), Some(1337), None).unwrap();
        let mut p = Poller::new(gateway.path().to_path_buf(), rules(), false);
        let s = p.poll_summary(10, &|| false).unwrap();
        assert_eq!((s.blocking_count(), s.unreadable_fds), (0, 0));
        // check reads every process: the same verdict, envoy named.
        let v = p.poll().unwrap();
        assert_eq!(v.blocking_count(), 0);
    }

    #[test]
    fn a_connection_the_proxy_made_is_streamed_after_its_table_when_its_end_comes_later() {
        const LISTEN: u8 = 0x0A;
        const EST: u8 = 0x01;
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
        let mut p = Poller::new(pod.path().to_path_buf(), rules(), false);
        let mut order = Vec::new();
        p.poll_each(|e| {
            order.push((e.socket.inode, e.direction));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            order,
            [
                (202, Direction::Outbound),
                (201, Direction::Inbound),
                (203, Direction::Listen)
            ]
        );
        // The table's own order, with the same directions, in the verdict.
        let v = p.poll().unwrap();
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
        // A writer that fails ends the poll with its error.
        let err = p
            .poll_each(|_| Err(std::io::Error::other("pipe closed")))
            .unwrap_err();
        assert_eq!(err.to_string(), "pipe closed");
    }
}
