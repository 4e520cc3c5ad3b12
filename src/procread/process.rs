//! `<proc>/<pid>/fd`: which visible processes hold which sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustix::fs::{Dir, Mode, OFlags};

/// The names of one process, shared by every socket it holds.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcessNames {
    /// `<pid>/comm`, without the trailing newline (at most 15 bytes: the kernel truncates).
    pub comm: Box<str>,
    /// Basename of `argv[0]` from `<pid>/cmdline`; empty for zombies and kernel threads.
    pub argv0: Box<str>,
}

/// A process seen holding one of the sockets we asked about.
///
/// The names sit behind one shared pointer: a proxy or an app with thousands
/// of connections would otherwise copy them thousands of times, and a holder
/// stays 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid, in the reader's PID namespace.
    pub pid: i32,
    /// Its names, read once per process.
    pub names: Arc<ProcessNames>,
}

impl Holder {
    /// A holder with names of its own (tests and fixtures; the scan shares them).
    pub fn new(pid: i32, comm: &str, argv0: &str) -> Holder {
        Holder {
            pid,
            names: Arc::new(ProcessNames {
                comm: comm.into(),
                argv0: argv0.into(),
            }),
        }
    }

    /// `<pid>/comm`; empty when it could not be read.
    pub fn comm(&self) -> &str {
        &self.names.comm
    }

    /// Basename of `argv[0]`; empty when it could not be read.
    pub fn argv0(&self) -> &str {
        &self.names.argv0
    }

    /// The name to show: `comm`, or `argv[0]` when `comm` could not be read.
    pub fn name(&self) -> &str {
        if self.comm().is_empty() {
            self.argv0()
        } else {
            self.comm()
        }
    }
}

/// The visible holders of one socket, by ascending pid.
///
/// Nearly always none or one, so that case lives inline: 18,000 held sockets
/// would otherwise make 18,000 one-element heap allocations. Reads as a slice.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum HolderList {
    /// No visible process holds it.
    #[default]
    None,
    /// One process does.
    One(Holder),
    /// Several do (forked workers sharing a listener, a `SCM_RIGHTS` pass).
    Many(Box<[Holder]>),
}

impl std::ops::Deref for HolderList {
    type Target = [Holder];
    fn deref(&self) -> &[Holder] {
        match self {
            HolderList::None => &[],
            HolderList::One(h) => std::slice::from_ref(h),
            HolderList::Many(hs) => hs,
        }
    }
}

impl std::ops::DerefMut for HolderList {
    fn deref_mut(&mut self) -> &mut [Holder] {
        match self {
            HolderList::None => &mut [],
            HolderList::One(h) => std::slice::from_mut(h),
            HolderList::Many(hs) => hs,
        }
    }
}

impl FromIterator<Holder> for HolderList {
    fn from_iter<I: IntoIterator<Item = Holder>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        let Some(first) = iter.next() else {
            return HolderList::None;
        };
        match iter.next() {
            None => HolderList::One(first),
            Some(second) => HolderList::Many([first, second].into_iter().chain(iter).collect()),
        }
    }
}

impl From<Vec<Holder>> for HolderList {
    fn from(v: Vec<Holder>) -> Self {
        v.into_iter().collect()
    }
}

/// What a scan of `<proc>/<pid>/fd` found for the inodes asked about.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Holders {
    /// (socket inode, a visible process holding it), sorted by inode then pid,
    /// one pair per socket and process: a flat list, not a map of lists, so
    /// 18,000 held sockets cost 24 bytes each here.
    found: Vec<(u64, Holder)>,
    /// Processes whose fd directory could not be listed (EACCES: another uid,
    /// no CAP_SYS_PTRACE). Sockets they hold look unowned, and so block.
    pub uninspected_processes: usize,
    /// Single fd links that could not be read while their directory could.
    pub unreadable_fds: usize,
}

impl Holders {
    /// Holders from (inode, holder) pairs in any order; the same process
    /// twice for one socket (a `dup`ed fd) counts once.
    pub fn from_pairs(mut found: Vec<(u64, Holder)>) -> Holders {
        found.sort_unstable_by_key(|(inode, h)| (*inode, h.pid));
        found.dedup_by(|a, b| a.0 == b.0 && a.1.pid == b.1.pid);
        Holders {
            found,
            ..Holders::default()
        }
    }

    /// The visible processes holding `inode`, by ascending pid.
    pub fn of(&self, inode: u64) -> impl Iterator<Item = &Holder> {
        let from = self.found.partition_point(|(i, _)| *i < inode);
        self.found[from..]
            .iter()
            .take_while(move |(i, _)| *i == inode)
            .map(|(_, h)| h)
    }

    /// How many (socket, process) pairs were found.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether no wanted socket was found in any fd table.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

/// Scans every process under `proc_root` for fds that are sockets.
///
/// Processes that exit mid-scan (ENOENT/ESRCH) are skipped silently: during
/// pod shutdown that is the normal case. Processes we may not look into are
/// counted, never an error. Only the root directory itself being unreadable is.
///
/// Every process is scanned, the proxy's too: a socket that only a proxy
/// process holds is the proxy's ([`crate::decide::reason`]), whatever uid
/// made it, and only its fds tell.
///
/// `stop()` is asked before each process and every [`STOP_EVERY`] fds; when
/// it says so, the scan gives up with [`super::Stopped`] (the hook's
/// deadline: a busy Envoy's fds alone can take longer than what is left).
///
/// One `readlinkat` per fd, relative to the open fd directory, is the whole
/// cost per fd: procfs's `Process::fd()` would add an `fstatat` and more per
/// entry, and a full-path `readlink` walks `/proc/<pid>/fd/` again each time.
pub fn scan_holders(proc_root: &Path, stop: &dyn Fn() -> bool) -> Result<Holders> {
    let mut scan = Scan {
        proc_root,
        found: Vec::new(),
        uninspected_processes: 0,
        unreadable_fds: 0,
        link: Vec::with_capacity(64),
    };
    for process in processes(proc_root)? {
        if stop() {
            return Err(super::Stopped.into());
        }
        scan.process(process.pid(), stop)?;
    }
    Ok(Holders {
        uninspected_processes: scan.uninspected_processes,
        unreadable_fds: scan.unreadable_fds,
        ..Holders::from_pairs(scan.found)
    })
}

/// Every visible process under `proc_root`, by procfs's one listing. A
/// failed open of a pid directory means the process is gone or hidden
/// (`hidepid=`); either way it has nothing to attribute, and is left out.
fn processes(proc_root: &Path) -> Result<impl Iterator<Item = procfs::process::Process>> {
    let all = procfs::process::all_processes_with_root(proc_root)
        .with_context(|| format!("cannot list processes in {}", proc_root.display()))?;
    Ok(all.filter_map(Result::ok))
}

/// One fd scan in progress.
struct Scan<'a> {
    proc_root: &'a Path,
    found: Vec<(u64, Holder)>,
    uninspected_processes: usize,
    unreadable_fds: usize,
    /// The readlink buffer, reused.
    link: Vec<u8>,
}

impl Scan<'_> {
    /// Reads the fds of one process: a process that is gone is skipped, one
    /// that may not be looked into is counted.
    fn process(&mut self, pid: i32, stop: &dyn Fn() -> bool) -> Result<()> {
        let fd_dir = self.proc_root.join(pid.to_string()).join("fd");
        let dir_fd = match rustix::fs::openat(
            rustix::fs::CWD,
            &fd_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if is_gone(e) => return Ok(()),
            Err(_) => {
                self.uninspected_processes += 1;
                return Ok(());
            }
        };
        let Ok(mut dir) = Dir::read_from(&dir_fd) else {
            self.uninspected_processes += 1;
            return Ok(());
        };
        let mut names: Option<Arc<ProcessNames>> = None;
        let mut fds = 0usize;
        while let Some(entry) = dir.read() {
            fds += 1;
            if fds.is_multiple_of(STOP_EVERY) && stop() {
                return Err(super::Stopped.into());
            }
            // An error here: the process exited while we listed its fds.
            let Ok(entry) = entry else { break };
            let name = entry.file_name();
            if name.to_bytes().starts_with(b".") {
                continue;
            }
            match rustix::fs::readlinkat(&dir_fd, name, std::mem::take(&mut self.link)) {
                Ok(target) => {
                    if let Some(inode) = socket_inode(target.as_bytes()) {
                        // Names are read once per process, and only for
                        // processes that hold a socket.
                        let names = names
                            .get_or_insert_with(|| process_names(self.proc_root, pid))
                            .clone();
                        self.found.push((inode, Holder { pid, names }));
                    }
                    self.link = target.into_bytes();
                    self.link.clear();
                }
                Err(e) if is_gone(e) => {}
                Err(_) => self.unreadable_fds += 1,
            }
        }
        Ok(())
    }
}

/// How many fds the scan reads between two looks at `stop`: about a
/// millisecond of readlinks.
const STOP_EVERY: usize = 256;

fn is_gone(e: rustix::io::Errno) -> bool {
    // ESRCH shows up when a process is reaped between readdir and readlink.
    e == rustix::io::Errno::NOENT || e == rustix::io::Errno::SRCH
}

/// Extracts the inode from an fd link target `socket:[12345]`.
pub fn socket_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads `comm` and the basename of `argv[0]`; empty strings where unreadable
/// (the process may have exited since its fds were read).
fn process_names(proc_root: &Path, pid: i32) -> Arc<ProcessNames> {
    let dir = proc_root.join(pid.to_string());
    let comm = std::fs::read(dir.join("comm"))
        .map(|b| String::from_utf8_lossy(&b).trim_end_matches('\n').into())
        .unwrap_or_else(|_| "".into());
    let argv0 = std::fs::read(dir.join("cmdline"))
        .map(|b| {
            let first = b.split(|&c| c == 0).next().unwrap_or_default();
            let base = first.rsplit(|&c| c == b'/').next().unwrap_or_default();
            String::from_utf8_lossy(base).into()
        })
        .unwrap_or_else(|_| "".into());
    Arc::new(ProcessNames { comm, argv0 })
}

/// A visible process with its start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its pid and names.
    pub holder: Holder,
    /// Start time in clock ticks since boot (`stat` field 22); `u64::MAX`
    /// when unreadable, so such a process is never taken for the oldest.
    pub start: u64,
}

/// The effective uid of `<proc>/<pid>` (the owner of its directory), if
/// it is there.
pub fn process_uid(proc_root: &Path, pid: i32) -> Option<u32> {
    procfs::process::Process::new_with_root(proc_root.join(pid.to_string()))
        .and_then(|p| p.uid())
        .ok()
}

/// Every visible process whose effective uid is `uid`, oldest first (by
/// start time, `stat` field 22). Processes that vanish mid-listing are
/// skipped.
pub fn processes_of_uid(proc_root: &Path, uid: u32) -> Result<Vec<ProcessInfo>> {
    let mut found: Vec<ProcessInfo> = processes(proc_root)?
        .filter(|p| p.uid().ok() == Some(uid))
        .map(|p| ProcessInfo {
            holder: Holder {
                pid: p.pid(),
                names: process_names(proc_root, p.pid()),
            },
            start: p.stat().map_or(u64::MAX, |s| s.starttime),
        })
        .collect();
    found.sort_by_key(|p| (p.start, p.holder.pid));
    Ok(found)
}

/// Where the proxy container's own log is, as the kubelet collects it: the
/// stderr of the container's main process. That is PID 1 when the hook sees
/// the container's own PID namespace (PID 1 then runs as the hook's uid: the
/// hook runs as the container's user). With `shareProcessNamespace: true`,
/// PID 1 is the pod's pause process, of another uid; the main process is
/// then the oldest process of the hook's uid that `is_proxy` takes
/// (pilot-agent in Istio, which starts Envoy; with no `proxy_names`, as for
/// the app container's `quiesce`, any process `is_proxy` takes, the hook
/// itself left out by the caller). Either way its fd 2 must be
/// open for writing (`fdinfo` flags): reopening a descriptor a process only
/// reads would write into its input, not its log. Returns the path and why,
/// or why none was found.
pub fn proxy_log(
    proc_root: &Path,
    uid: u32,
    is_proxy: impl Fn(&Holder) -> bool,
    proxy_names: &[String],
) -> Result<(PathBuf, String), String> {
    let pid1 = process_uid(proc_root, 1);
    let pid1_said = if pid1 == Some(uid) {
        match stderr_writable(proc_root, 1) {
            Ok(()) => {
                return Ok((
                    proc_root.join("1/fd/2"),
                    format!("--log-file auto: PID 1 runs as uid {uid}, as this hook does"),
                ));
            }
            Err(why) => format!("runs as uid {uid} but its fd 2 {why}"),
        }
    } else {
        pid1.map_or("cannot be seen".to_owned(), |u| format!("runs as uid {u}"))
    };
    let (oldest, none) = if proxy_names.is_empty() {
        (
            "oldest other process".to_owned(),
            "no other process".to_owned(),
        )
    } else {
        (
            "oldest proxy process".to_owned(),
            format!("no process named {}", proxy_names.join(" or ")),
        )
    };
    let processes = processes_of_uid(proc_root, uid).map_err(|e| format!("{e:#}"))?;
    match processes
        .iter()
        .map(|p| &p.holder)
        .filter(|h| h.pid != 1 && is_proxy(h))
        .find(|h| stderr_writable(proc_root, h.pid).is_ok())
    {
        Some(h) => Ok((
            proc_root.join(format!("{}/fd/2", h.pid)),
            format!(
                "--log-file auto: PID 1 {pid1_said}; pid {} ({}) is the {oldest} of uid {uid} with a writable fd 2",
                h.pid,
                h.name()
            ),
        )),
        None => Err(format!(
            "PID 1 {pid1_said} and {none} runs as uid {uid} with a writable fd 2"
        )),
    }
}

/// Whether `<pid>`'s fd 2 is open for writing, from the `flags:` line of
/// `<pid>/fdinfo/2` (octal open flags; the access mode is the low two bits).
fn stderr_writable(proc_root: &Path, pid: i32) -> Result<(), String> {
    let path = proc_root.join(format!("{pid}/fdinfo/2"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot be read ({e})"))?;
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .ok_or_else(|| "has no flags in its fdinfo".to_owned())?;
    match flags & 0o3 {
        0o1 | 0o2 => Ok(()),
        _ => Err("is open read-only".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn socket_inode_accepts_only_socket_links() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"socket:[0]"), Some(0));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[12a]"), None);
        assert_eq!(socket_inode(b"socket:[123"), None);
        assert_eq!(socket_inode(b"pipe:[123]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"anon_inode:[eventpoll]"), None);
        assert_eq!(socket_inode(b"socket:[99999999999999999999999]"), None);
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn scan_finds_holders_and_counts_only_what_it_asked_for() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (pid, comm, cmdline, links) in [
            (
                10,
                "envoy\n",
                "/usr/local/bin/envoy\0-c\0x\0",
                &["socket:[100]", "pipe:[5]"][..],
            ),
            (
                20,
                "app\n",
                "/app/server\0",
                &["socket:[200]", "socket:[300]"][..],
            ),
            (21, "worker\n", "server\0", &["socket:[200]"][..]),
        ] {
            let p = root.join(pid.to_string());
            write(&p.join("comm"), comm);
            write(&p.join("cmdline"), cmdline);
            std::fs::create_dir_all(p.join("fd")).unwrap();
            for (i, l) in links.iter().enumerate() {
                symlink(l, p.join("fd").join(i.to_string())).unwrap();
            }
        }
        // Not a pid directory: ignored by the process iterator.
        std::fs::create_dir_all(root.join("net")).unwrap();
        let h = scan_holders(root, &|| false).unwrap();
        assert_eq!(h.len(), 4);
        assert_eq!(
            h.of(100).collect::<Vec<_>>(),
            vec![&Holder::new(10, "envoy", "envoy")]
        );
        let pids: Vec<i32> = h.of(200).map(|h| h.pid).collect();
        assert_eq!(pids, vec![20, 21]);
        assert_eq!(h.of(200).next().unwrap().argv0(), "server");

        assert_eq!(h.of(300).count(), 1);
        // A pipe is no socket.
        assert_eq!(h.of(5).count(), 0);
        assert_eq!((h.uninspected_processes, h.unreadable_fds), (0, 0));

        // Both sockets of pid 20 share one copy of its names.
        assert!(Arc::ptr_eq(
            &h.of(200).next().unwrap().names,
            &h.of(300).next().unwrap().names
        ));

        // A root that cannot be listed is an error.
        assert!(scan_holders(Path::new("/nonexistent"), &|| false).is_err());
    }

    #[test]
    fn holders_are_by_pid_per_inode_and_a_dup_counts_once() {
        let h = Holders::from_pairs(vec![
            (7, Holder::new(30, "b", "b")),
            (5, Holder::new(1, "a", "a")),
            (7, Holder::new(2, "c", "c")),
            // The same socket under a second fd of pid 30.
            (7, Holder::new(30, "b", "b")),
            (u64::MAX, Holder::new(4, "d", "d")),
        ]);
        assert_eq!(h.of(7).map(|h| h.pid).collect::<Vec<_>>(), vec![2, 30]);
        assert_eq!(h.of(5).map(|h| h.pid).collect::<Vec<_>>(), vec![1]);
        assert_eq!(h.of(u64::MAX).count(), 1);
        for absent in [0, 6, 8] {
            assert_eq!(h.of(absent).count(), 0, "inode {absent}");
        }
        assert_eq!(h.len(), 4);
        assert!(Holders::default().of(7).next().is_none());
    }

    #[test]
    fn holder_list_reads_as_the_slice_it_was_built_from() {
        for n in 0..4 {
            let v: Vec<Holder> = (0..n).map(|p| Holder::new(p, "a", "b")).collect();
            let list = HolderList::from(v.clone());
            assert_eq!(&*list, v.as_slice(), "{n} holders");
            let expected = match n {
                0 => "None",
                1 => "One",
                _ => "Many",
            };
            assert!(format!("{list:?}").starts_with(expected), "{list:?}");
        }
        let mut list: HolderList = [Holder::new(1, "a", "a")].into_iter().collect();
        list[0] = Holder::new(2, "b", "b");
        assert_eq!(list.first().map(|h| h.pid), Some(2));
        assert!(HolderList::default().is_empty());
    }

    #[test]
    fn per_socket_sizes_stay_small() {
        // What a busy table costs per held socket; see docs/performance.md.
        assert_eq!(std::mem::size_of::<Holder>(), 16);
        assert!(std::mem::size_of::<HolderList>() <= 24);
        assert!(std::mem::size_of::<crate::decide::Entry>() <= 112);
    }

    #[test]
    fn the_proxys_processes_are_scanned_and_stop_ends_the_scan() {
        use std::os::unix::fs::{chown, symlink};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (pid, comm) in [(10, "envoy\n"), (20, "app\n")] {
            let p = root.join(pid.to_string());
            write(&p.join("comm"), comm);
            std::fs::create_dir_all(p.join("fd")).unwrap();
            for fd in 0..600 {
                symlink(format!("socket:[{pid}{fd:03}]"), p.join(format!("fd/{fd}"))).unwrap();
            }
        }
        // The owner of /proc/<pid> is the process's effective uid: envoy
        // runs as the proxy's, and is scanned all the same.
        if let Err(e) = chown(root.join("10"), Some(1337), None) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must chown: {e}"
            );
            crate::fixture::skipped(&format!("chown needs root ({e})"));
            return;
        }
        let all = scan_holders(root, &|| false).unwrap();
        assert_eq!((all.of(10_000).count(), all.of(20_599).count()), (1, 1));
        // Asked before each process and every 256 fds.
        let asked = std::cell::Cell::new(0);
        let err = scan_holders(root, &|| {
            asked.set(asked.get() + 1);
            asked.get() > 3
        })
        .unwrap_err();
        assert!(err.is::<super::super::Stopped>(), "{err:#}");
        assert_eq!(asked.get(), 4);
    }

    #[test]
    fn process_without_fd_dir_counts_as_gone_not_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("42");
        write(&p.join("comm"), "ghost\n");
        let h = scan_holders(dir.path(), &|| false).unwrap();
        assert_eq!(h, Holders::default());
    }

    #[test]
    fn processes_of_a_uid_are_listed_oldest_first() {
        use crate::fixture::Process;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let me = std::fs::metadata(root).unwrap().uid();
        // A comm with spaces and parentheses: the start time is still field 22.
        for (pid, comm, start) in [
            (30, "envoy", 500),
            (12, "pilot-agent", 200),
            (9, "a) b) c", 100),
        ] {
            Process::new(pid, comm).start(start).write(root).unwrap();
        }
        let found = processes_of_uid(root, me).unwrap();
        let got: Vec<(i32, &str, u64)> = found
            .iter()
            .map(|p| (p.holder.pid, p.holder.name(), p.start))
            .collect();
        assert_eq!(
            got,
            vec![
                (9, "a) b) c", 100),
                (12, "pilot-agent", 200),
                (30, "envoy", 500)
            ]
        );
        assert_eq!(process_uid(root, 12), Some(me));
        assert_eq!(process_uid(root, 13), None);
        assert!(
            processes_of_uid(root, me.wrapping_add(1))
                .unwrap()
                .is_empty()
        );
        // An unreadable stat is never taken for the oldest.
        std::fs::write(root.join("9/stat"), "9 (x) S 1").unwrap();
        assert_eq!(processes_of_uid(root, me).unwrap()[2].start, u64::MAX);
    }
    /// A fixture `/proc` with processes (pid, comm, start time), all owned
    /// by the test's own uid, each with its fd 2 open read-write.
    fn procs(list: &[(i32, &str, u64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm, start) in list {
            crate::fixture::Process::new(*pid, comm)
                .start(*start)
                .write(dir.path())
                .unwrap();
        }
        dir
    }

    /// [`proxy_log`] as `--log-file=auto` calls it, for envoy and pilot-agent.
    fn find_proxy_log(
        root: &Path,
        uid: u32,
        names: &[String],
    ) -> Result<(PathBuf, String), String> {
        proxy_log(
            root,
            uid,
            |h| crate::decide::is_proxy_process(h, names),
            names,
        )
    }

    /// Writes `<pid>/fdinfo/2` as the kernel does, with these octal flags.
    fn set_fd2_flags(root: &Path, pid: i32, flags: &str) {
        let d = root.join(format!("{pid}/fdinfo"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("2"),
            format!("pos:\t0\nflags:\t{flags}\nmnt_id:\t15\nino:\t1234\n"),
        )
        .unwrap();
    }

    #[test]
    fn auto_takes_only_a_descriptor_open_for_writing() {
        use std::os::unix::fs::MetadataExt;
        let dir = procs(&[(1, "pilot-agent", 10), (15, "envoy", 20)]);
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        // PID 1's fd 2 read-only (O_RDONLY|O_LARGEFILE): writing there would
        // feed its input. The next proxy process of the uid is taken.
        set_fd2_flags(dir.path(), 1, "0100000");
        let (path, why) = find_proxy_log(dir.path(), me, &names()).unwrap();
        assert_eq!(path, dir.path().join("15/fd/2"), "{why}");
        assert!(why.contains("fd 2 is open read-only"), "{why}");
        // Write-only (O_WRONLY|O_APPEND) is fine.
        set_fd2_flags(dir.path(), 1, "02001");
        let (path, _) = find_proxy_log(dir.path(), me, &names()).unwrap();
        assert_eq!(path, dir.path().join("1/fd/2"));
        // None writable: an error that says why.
        set_fd2_flags(dir.path(), 1, "0");
        set_fd2_flags(dir.path(), 15, "0100000");
        let err = find_proxy_log(dir.path(), me, &names()).unwrap_err();
        assert!(err.contains("with a writable fd 2"), "{err}");
        // No fdinfo at all (an odd /proc): not taken either.
        std::fs::remove_file(dir.path().join("1/fdinfo/2")).unwrap();
        let err = find_proxy_log(dir.path(), me, &names()).unwrap_err();
        assert!(err.contains("cannot be read"), "{err}");
    }

    fn names() -> Vec<String> {
        vec!["envoy".into(), "pilot-agent".into()]
    }

    #[test]
    fn auto_is_pid_1_when_it_runs_as_the_hooks_uid() {
        use std::os::unix::fs::MetadataExt;
        let dir = procs(&[(1, "pilot-agent", 10), (15, "envoy", 20)]);
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        let (path, why) = find_proxy_log(dir.path(), me, &names()).unwrap();
        assert_eq!(path, dir.path().join("1/fd/2"));
        assert!(why.contains("PID 1 runs as uid"), "{why}");
        // Some other uid: nothing of it is visible.
        let err = find_proxy_log(dir.path(), me.wrapping_add(1), &names()).unwrap_err();
        assert!(
            err.contains("no process named envoy or pilot-agent runs as uid"),
            "{err}"
        );
    }

    #[test]
    fn auto_is_the_oldest_proxy_process_when_pid_1_is_another_uids() {
        use std::os::unix::fs::{MetadataExt, chown};
        // shareProcessNamespace: PID 1 is the pause process, of uid 65535.
        let dir = procs(&[
            (1, "pause", 1),
            (7, "app", 5),
            (20, "envoy", 300),
            (12, "pilot-agent", 200),
        ]);
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        if let Err(e) = chown(dir.path().join("1"), Some(65535), None) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must chown: {e}"
            );
            crate::fixture::skipped(&format!("chown needs root ({e})"));
            return;
        }
        let (path, why) = find_proxy_log(dir.path(), me, &names()).unwrap();
        assert_eq!(path, dir.path().join("12/fd/2"), "{why}");
        assert!(why.contains("PID 1 runs as uid 65535"), "{why}");
        assert!(why.contains("pid 12 (pilot-agent)"), "{why}");
        // No proxy process: an error that says what was looked for.
        let dir = procs(&[(1, "pause", 1), (7, "app", 5)]);
        chown(dir.path().join("1"), Some(65535), None).unwrap();
        let err = find_proxy_log(dir.path(), me, &names()).unwrap_err();
        assert!(
            err.starts_with("PID 1 runs as uid 65535 and no process named"),
            "{err}"
        );
    }
}
