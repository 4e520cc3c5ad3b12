//! The cost of one poll over generated `/proc` trees, in parts and whole (issue 6).
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-bench cargo bench --bench poll`
//! (about two minutes; filter with e.g. `-- parse`).
//!
//! Every benchmark counts *socket lines* (rows of `net/tcp` + `net/tcp6`), so
//! divan's throughput column reads as lines per second: ns per line is
//! 1e9 / that (`benches/ns_per_line.py` converts a saved run).
//!
//! Trees are generated in a tempdir (on the same filesystem as `/tmp`), so
//! these measure our user-space work plus the filesystem's, not the kernel's
//! procfs cost: `benches/compare.sh` measures that against a live namespace.
//!
//! Groups:
//! - `parse`: both tables, ours (`parse_line`, `read_table`) against procfs's
//!   `TcpNetEntries::from_buf_read`, in memory and from the files.
//! - `scan`: the fd scan, ours (one `readlinkat` per fd, relative to the fd
//!   directory) against a full-path `readlink` per fd and against the
//!   same scan built on procfs's `Process::fd()` (`openat(O_PATH)` +
//!   `readlinkat` + `fstat` + `close` per fd). Also varies the process count.
//! - `decide`: the rule set over the sockets a poll keeps, into `check`'s
//!   table sink (`pass::decide_rows`).
//! - `poll` and `poll_summary`: one whole `Pass::run`, everything together,
//!   into `check`'s table sink and into `wait`'s tally.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use prestop_wait::decide::{self, PodFacts, Rules};
use prestop_wait::fixture::{self, Process};
use prestop_wait::pass::{self, Pass};
use prestop_wait::procread::{self, Holders, Socket, Table, TcpState};
use prestop_wait::sink::{Collect, Tally};
use prestop_wait::source::ProcTables;
use procfs::FromBufReadSI;
use procfs::process::FDTarget;

fn main() {
    divan::main();
    if let Some(base) = BASE.get() {
        let _ = std::fs::remove_dir_all(base);
    }
}

/// A generated tree's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Size {
    sockets: usize,
    procs: usize,
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} lines, {} procs", self.sockets, self.procs)
    }
}

const fn size(sockets: usize, procs: usize) -> Size {
    Size { sockets, procs }
}

/// Pod scale, a busy pod, node scale: sockets and processes grow together.
const SIZES: &[Size] = &[size(100, 10), size(10_000, 100), size(100_000, 1_000)];

/// The fd scan also at a fixed socket count with 10 to 1,000 processes.
const SCAN_SIZES: &[Size] = &[
    size(100, 10),
    size(10_000, 10),
    size(10_000, 100),
    size(10_000, 1_000),
    size(100_000, 1_000),
];

const PROXY_UID: u32 = 1337;
const APP_UID: u32 = 1000;

fn rules() -> Rules {
    Rules {
        proxy_uids: vec![PROXY_UID],
        proxy_names: vec!["envoy".into(), "pilot-agent".into()],
        ..Rules::default()
    }
}

/// A generated procfs tree and what a poll of it computes along the way.
struct Tree {
    root: PathBuf,
    /// `net/tcp` and `net/tcp6` as written.
    text: [String; 2],
    /// Inodes of held sockets no row rule excuses: what the poll scans for.
    wanted: Vec<u64>,
    /// The sockets the poll keeps for `decide`.
    kept: Vec<Socket>,
    /// The scan's result for `wanted`.
    holders: Holders,
    /// What the poll learns from every row (listening ports).
    facts: PodFacts,
    /// How many sockets the verdict says block (app sockets the envoy
    /// process holds are excused by name).
    blocking: usize,
    /// Total fd links in the tree.
    fds: usize,
}

static BASE: OnceLock<PathBuf> = OnceLock::new();
static TREES: OnceLock<Vec<(Size, OnceLock<Tree>)>> = OnceLock::new();

fn tree(size: Size) -> &'static Tree {
    let trees = TREES.get_or_init(|| {
        let mut all: Vec<Size> = SIZES.iter().chain(SCAN_SIZES).copied().collect();
        all.dedup();
        all.sort_by_key(|s| (s.sockets, s.procs));
        all.dedup();
        all.into_iter().map(|s| (s, OnceLock::new())).collect()
    });
    let (_, cell) = trees.iter().find(|(s, _)| *s == size).expect("known size");
    cell.get_or_init(|| build(size))
}

/// Socket `k` of `n`: one in five is IPv6; 10% LISTEN, 10% TIME_WAIT (inode 0),
/// the rest ESTABLISHED; held sockets alternate between proxy and app uid.
/// Held socket `k` is an fd of process `k % procs`; every process also has
/// three non-socket fds. Process 0 is `pilot-agent`, 1 is `envoy`, the rest
/// are the app (`server`).
fn build(size: Size) -> Tree {
    let base = BASE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("prestop-bench-")
            .tempdir()
            .expect("tempdir");
        dir.keep()
    });
    let root = base.join(format!("{}-{}", size.sockets, size.procs));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("net")).expect("net dir");

    let mut rows = Vec::with_capacity(size.sockets);
    let mut fds_of: Vec<Vec<u64>> = vec![Vec::new(); size.procs];
    for k in 0..size.sockets {
        let v6 = k % 5 == 4;
        let (state, remote_port) = match k % 10 {
            0 => (TcpState::Listen, 0),
            9 => (TcpState::TimeWait, 443),
            _ => (TcpState::Established, 443),
        };
        let held = state != TcpState::TimeWait;
        let inode = if held { 100_000 + k as u64 } else { 0 };
        let uid = match (held, k % 2) {
            (false, _) => 0,
            (true, 0) => PROXY_UID,
            (true, _) => APP_UID,
        };
        let port = 1024 + (k % 60_000) as u16;
        let (local, remote) = if v6 {
            (
                SocketAddr::new("fd00::1".parse().unwrap(), port),
                SocketAddr::new("fd00::9".parse().unwrap(), remote_port),
            )
        } else {
            (
                SocketAddr::new([10, 1, (k >> 8) as u8, k as u8].into(), port),
                SocketAddr::new([10, 9, 8, 7].into(), remote_port),
            )
        };
        rows.push(Socket {
            state,
            local,
            remote,
            uid,
            inode,
            rx_queue: 0,
            tx_queue: 0,
            info: None,
            cgroup: 0,
        });
        if held {
            fds_of[k % size.procs].push(inode);
        }
    }
    fixture::write_tables(&root, &rows).expect("tables");
    let tcp = std::fs::read_to_string(root.join("net/tcp")).expect("tcp");
    let tcp6 = std::fs::read_to_string(root.join("net/tcp6")).expect("tcp6");

    let mut fds = 0;
    for (i, inodes) in fds_of.iter().enumerate() {
        let (comm, argv0) = match i {
            0 => ("pilot-agent", "/usr/local/bin/pilot-agent"),
            1 => ("envoy", "/usr/local/bin/envoy"),
            _ => ("server", "/app/server"),
        };
        Process::new(1 + i as i32, comm)
            .argv(&[argv0, "--flag"])
            .sockets(inodes)
            .write(&root)
            .expect("process");
        fds += 3 + inodes.len();
    }

    // What the poll computes before scanning and deciding, done the poll's way.
    let r = rules();
    let mut kept = Vec::new();
    let mut facts = PodFacts::default();
    let mut buf = Vec::new();
    for table in [Table::Tcp, Table::Tcp6] {
        procread::read_table(&root, table, &mut buf, |s| {
            facts.note(&s, &r);
            if decide::keep_row(&s, &r, false) {
                kept.push(s);
            }
        })
        .expect("read fixture");
    }
    let mut wanted: Vec<u64> = kept.iter().map(|s| s.inode).collect();
    wanted.sort_unstable();
    let holders = procread::scan_holders(&root, &|| false).expect("scan fixture");
    assert!(
        wanted.iter().all(|&i| holders.of(i).next().is_some()),
        "every app socket found"
    );
    let blocking = pass::decide_rows(&[&kept], &holders, &r, facts.clone(), Collect::new(false))
        .expect("decides")
        .blocking_count();
    Tree {
        root,
        text: [tcp, tcp6],
        wanted,
        kept,
        holders,
        facts,
        blocking,
        fds,
    }
}

fn lines(size: Size) -> ItemsCount {
    ItemsCount::new(size.sockets)
}

fn system_info() -> procfs::ExplicitSystemInfo {
    procfs::ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    }
}

/// Parsing both tables: ours against procfs's, the same text in memory and on disk.
#[divan::bench_group(sample_count = 30, max_time = 3)]
mod parse {
    use super::*;

    /// `parse_line` over every line held in memory: pure parsing.
    #[divan::bench(args = SIZES)]
    fn ours_in_memory(b: Bencher, size: Size) {
        let t = tree(size);
        b.counter(lines(size)).bench(|| {
            let mut n = 0usize;
            for text in &t.text {
                for line in text.lines() {
                    if let Some(s) = procread::parse_line(line).expect("parses") {
                        n += black_box(s).inode as usize & 1;
                    }
                }
            }
            n
        });
    }

    /// procfs's `TcpNetEntries::from_buf_read` on the same text (it collects a Vec).
    #[divan::bench(args = SIZES)]
    fn procfs_in_memory(b: Bencher, size: Size) {
        let t = tree(size);
        let si = system_info();
        b.counter(lines(size)).bench(|| {
            let mut n = 0usize;
            for text in &t.text {
                let entries = procfs::net::TcpNetEntries::from_buf_read(text.as_bytes(), &si)
                    .expect("parses");
                n += black_box(entries).0.len();
            }
            n
        });
    }

    /// `read_table` on both files: open, stream through the reused buffer, parse.
    #[divan::bench(args = SIZES)]
    fn ours_read_table(b: Bencher, size: Size) {
        let t = tree(size);
        let mut buf = Vec::new();
        b.counter(lines(size)).bench_local(|| {
            let mut n = 0usize;
            for table in [Table::Tcp, Table::Tcp6] {
                procread::read_table(&t.root, table, &mut buf, |s| {
                    n += black_box(s).inode as usize & 1;
                })
                .expect("reads");
            }
            n
        });
    }

    /// procfs's parser reading both files through a 64 KiB `BufReader`.
    #[divan::bench(args = SIZES)]
    fn procfs_read_file(b: Bencher, size: Size) {
        let t = tree(size);
        let si = system_info();
        b.counter(lines(size)).bench(|| {
            let mut n = 0usize;
            for table in [Table::Tcp, Table::Tcp6] {
                let file = File::open(table.path(&t.root)).expect("open");
                let reader = BufReader::with_capacity(64 * 1024, file);
                let entries =
                    procfs::net::TcpNetEntries::from_buf_read(reader, &si).expect("parses");
                n += black_box(entries).0.len();
            }
            n
        });
    }
}

/// The same scan as `scan_holders`, built on procfs's `Process::fd()` iterator.
fn scan_with_procfs_fd(root: &Path, wanted: &[u64]) -> usize {
    let mut found: Vec<(i32, u64)> = Vec::new();
    for process in procfs::process::all_processes_with_root(root).expect("list") {
        let Ok(process) = process else { continue };
        let Ok(fds) = process.fd() else { continue };
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target
                && wanted.binary_search(&inode).is_ok()
            {
                found.push((process.pid(), inode));
            }
        }
    }
    read_names(root, found)
}

/// The fd scan as `scan_holders` first did it: `read_dir` per process and a
/// `readlink` of the full `<root>/<pid>/fd/<n>` path per fd, which makes the
/// kernel walk every component again. Finds the same (pid, inode) pairs; names
/// are read as in `scan_with_procfs_fd`.
fn scan_full_path(root: &Path, wanted: &[u64]) -> usize {
    let mut found: Vec<(i32, u64)> = Vec::new();
    for process in procfs::process::all_processes_with_root(root).expect("list") {
        let Ok(process) = process else { continue };
        let pid = process.pid();
        let fd_dir = root.join(pid.to_string()).join("fd");
        let Ok(entries) = std::fs::read_dir(&fd_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path())
                && let Some(inode) = procread::socket_inode(target.as_os_str().as_encoded_bytes())
                && wanted.binary_search(&inode).is_ok()
            {
                found.push((pid, inode));
            }
        }
    }
    read_names(root, found)
}

/// Reads the names of the processes in `found`, once each, as `scan_holders`
/// does; returns a count so the work cannot be optimised away.
fn read_names(root: &Path, mut found: Vec<(i32, u64)>) -> usize {
    found.sort_unstable();
    found.dedup();
    let mut pids: Vec<i32> = found.iter().map(|(p, _)| *p).collect();
    pids.dedup();
    let mut bytes = 0;
    for pid in pids {
        let dir = root.join(pid.to_string());
        bytes += std::fs::read(dir.join("comm")).map_or(0, |b| b.len());
        bytes += std::fs::read(dir.join("cmdline")).map_or(0, |b| b.len());
    }
    found.len() + bytes
}

/// The fd scan for the app's sockets: ours against procfs's `fd()`.
#[divan::bench_group(sample_count = 20, max_time = 3)]
mod scan {
    use super::*;

    /// `scan_holders`: one `readlinkat` per fd, relative to the open fd directory.
    #[divan::bench(args = SCAN_SIZES)]
    fn ours_readlinkat(b: Bencher, size: Size) {
        let t = tree(size);
        b.counter(lines(size))
            .bench(|| procread::scan_holders(&t.root, &|| false).expect("scans"));
    }

    /// `readlink` of each full path (see `scan_full_path`).
    #[divan::bench(args = SCAN_SIZES)]
    fn full_path_readlink(b: Bencher, size: Size) {
        let t = tree(size);
        b.counter(lines(size))
            .bench_local(|| scan_full_path(&t.root, &t.wanted));
    }

    /// procfs's `Process::fd()`: `openat(O_PATH)`, `readlinkat`, `fstat`, `close` per fd.
    #[divan::bench(args = SCAN_SIZES)]
    fn procfs_fd(b: Bencher, size: Size) {
        let t = tree(size);
        b.counter(lines(size))
            .bench(|| scan_with_procfs_fd(&t.root, &t.wanted));
    }
}

/// Deciding the sockets a poll keeps (half the held ones: the app's), with
/// their holders known, into `check`'s table sink.
#[divan::bench(args = SIZES, sample_count = 30, max_time = 3)]
fn decide(b: Bencher, size: Size) {
    let t = tree(size);
    let r = rules();
    b.counter(lines(size)).bench_local(|| {
        pass::decide_rows(
            &[&t.kept],
            &t.holders,
            &r,
            t.facts.clone(),
            Collect::new(false),
        )
        .expect("decides")
    });
}

fn new_pass(t: &Tree) -> (Pass, ProcTables) {
    (
        Pass::new(t.root.clone(), rules()),
        ProcTables::new(t.root.clone()),
    )
}

/// One whole pass of `check`: both tables, cheap rules, the fd scan, each
/// row decided, the table's rows kept.
#[divan::bench(args = SIZES, sample_count = 20, max_time = 3)]
fn poll(b: Bencher, size: Size) {
    let t = tree(size);
    let (mut pass, mut tables) = new_pass(t);
    b.counter(lines(size)).bench_local(|| {
        let v = pass
            .run(&mut tables, Collect::new(false), &|| false)
            .expect("polls");
        assert_eq!(v.blocking_count(), t.blocking);
        v
    });
}

/// One whole pass of `wait`: each row decided as it is read into the tally,
/// the first ten kept.
#[divan::bench(args = SIZES, sample_count = 20, max_time = 3)]
fn poll_summary(b: Bencher, size: Size) {
    let t = tree(size);
    let (mut pass, mut tables) = new_pass(t);
    b.counter(lines(size)).bench_local(|| {
        let s = pass
            .run(&mut tables, Tally::new(10), &|| false)
            .expect("polls");
        assert_eq!(s.blocking_count(), t.blocking);
        s
    });
}

/// Prints each tree's shape once, so a run's output says what was measured.
#[divan::bench(args = SIZES, sample_count = 1, sample_size = 1)]
fn zz_tree_shape(size: Size) -> String {
    let t = tree(size);
    let s = format!(
        "{size}: {} tcp + {} tcp6 bytes, {} fd links, {} sockets to attribute, {} block",
        t.text[0].len(),
        t.text[1].len(),
        t.fds,
        t.wanted.len(),
        t.blocking
    );
    eprintln!("{s}");
    s
}
