//! `<proc>/<pid>/fd`: which visible processes hold which sockets.

use std::path::Path;
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

/// Scans every process under `proc_root` for fds that are sockets in `wanted`
/// (sorted, as a binary search over 8 bytes an inode is smaller than a hash
/// set), or for every socket fd when `wanted` is `None`.
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
pub fn scan_holders(
    proc_root: &Path,
    wanted: Option<&[u64]>,
    stop: &dyn Fn() -> bool,
) -> Result<Holders> {
    let mut found = Vec::new();
    let (mut uninspected_processes, mut unreadable_fds) = (0, 0);
    if wanted.is_some_and(<[u64]>::is_empty) {
        return Ok(Holders::default());
    }
    let processes = procfs::process::all_processes_with_root(proc_root)
        .with_context(|| format!("cannot list processes in {}", proc_root.display()))?;
    let mut link = Vec::with_capacity(64);
    for process in processes {
        // A failed openat on a pid directory means the process is gone or hidden
        // (hidepid=); either way it has nothing we can attribute.
        let Ok(process) = process else { continue };
        if stop() {
            return Err(super::Stopped.into());
        }
        let pid = process.pid();
        let fd_dir = proc_root.join(pid.to_string()).join("fd");
        let dir_fd = match rustix::fs::openat(
            rustix::fs::CWD,
            &fd_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if is_gone(e) => continue,
            Err(_) => {
                uninspected_processes += 1;
                continue;
            }
        };
        let mut names: Option<Arc<ProcessNames>> = None;
        let Ok(mut dir) = Dir::read_from(&dir_fd) else {
            uninspected_processes += 1;
            continue;
        };
        let mut fds = 0usize;
        while let Some(entry) = dir.read() {
            fds += 1;
            if fds.is_multiple_of(STOP_EVERY) && stop() {
                return Err(super::Stopped.into());
            }
            let Ok(entry) = entry else {
                // The process exited while we listed its fds.
                break;
            };
            let name = entry.file_name();
            if name.to_bytes().starts_with(b".") {
                continue;
            }
            match rustix::fs::readlinkat(&dir_fd, name, std::mem::take(&mut link)) {
                Ok(target) => {
                    if let Some(inode) = socket_inode(target.as_bytes())
                        && wanted.is_none_or(|w| w.binary_search(&inode).is_ok())
                    {
                        // Names are read once per process, and only for
                        // processes that hold a socket we asked about.
                        let names = names
                            .get_or_insert_with(|| process_names(proc_root, pid))
                            .clone();
                        found.push((inode, Holder { pid, names }));
                    }
                    link = target.into_bytes();
                    link.clear();
                }
                Err(e) if is_gone(e) => {}
                Err(_) => unreadable_fds += 1,
            }
        }
    }
    Ok(Holders {
        uninspected_processes,
        unreadable_fds,
        ..Holders::from_pairs(found)
    })
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

/// The effective uid of `<proc>/<pid>`, if it is there.
pub fn process_uid(proc_root: &Path, pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(proc_root.join(pid.to_string()))
        .ok()
        .map(|m| m.uid())
}

/// Every visible process whose effective uid is `uid`, oldest first.
/// Processes that vanish mid-listing are skipped.
pub fn processes_of_uid(proc_root: &Path, uid: u32) -> Result<Vec<ProcessInfo>> {
    let dir = std::fs::read_dir(proc_root)
        .with_context(|| format!("cannot list processes in {}", proc_root.display()))?;
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if process_uid(proc_root, pid) != Some(uid) {
            continue;
        }
        let stat = std::fs::read(proc_root.join(pid.to_string()).join("stat")).unwrap_or_default();
        found.push(ProcessInfo {
            holder: Holder {
                pid,
                names: process_names(proc_root, pid),
            },
            start: start_time(&stat).unwrap_or(u64::MAX),
        });
    }
    found.sort_by_key(|p| (p.start, p.holder.pid));
    Ok(found)
}

/// Field 22 of `<pid>/stat`, counted after the `(comm)` field, which may
/// itself hold spaces and parentheses: hence from the last `)`.
fn start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields 3 (state) onward; starttime is field 22.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
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
        let wanted = [100, 200];
        let h = scan_holders(root, Some(&wanted), &|| false).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.of(100).collect::<Vec<_>>(),
            vec![&Holder::new(10, "envoy", "envoy")]
        );
        let pids: Vec<i32> = h.of(200).map(|h| h.pid).collect();
        assert_eq!(pids, vec![20, 21]);
        assert_eq!(h.of(200).next().unwrap().argv0(), "server");

        assert_eq!(h.of(300).count(), 0);
        assert_eq!((h.uninspected_processes, h.unreadable_fds), (0, 0));

        // Both sockets of pid 20 share one copy of its names.
        let h = scan_holders(root, Some(&[200, 300]), &|| false).unwrap();
        assert!(Arc::ptr_eq(
            &h.of(200).next().unwrap().names,
            &h.of(300).next().unwrap().names
        ));

        // Nothing asked: nothing scanned, even with a broken root.
        let none = scan_holders(Path::new("/nonexistent"), Some(&[]), &|| false).unwrap();
        assert!(none.is_empty());
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
            eprintln!("skipped: chown needs root ({e})");
            return;
        }
        let wanted = [10_000, 20_599];
        let all = scan_holders(root, Some(&wanted), &|| false).unwrap();
        assert_eq!((all.of(10_000).count(), all.of(20_599).count()), (1, 1));
        // Asked before each process and every 256 fds.
        let asked = std::cell::Cell::new(0);
        let err = scan_holders(root, None, &|| {
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
        let h = scan_holders(dir.path(), Some(&[1]), &|| false).unwrap();
        assert_eq!(h, Holders::default());
    }

    #[test]
    fn start_time_is_field_22_even_with_a_hostile_comm() {
        let stat = b"7 (a) b) c) S 1 7 7 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(start_time(stat), Some(123456));
        assert_eq!(start_time(b"7 (x) S 1"), None);
        assert_eq!(start_time(b"no parens"), None);
    }

    #[test]
    fn processes_of_a_uid_are_listed_oldest_first() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let me = std::fs::metadata(root).unwrap().uid();
        for (pid, comm, start) in [
            (30, "envoy", "500"),
            (12, "pilot-agent", "200"),
            (9, "app", "100"),
        ] {
            let p = root.join(pid.to_string());
            write(&p.join("comm"), &format!("{comm}\n"));
            write(&p.join("cmdline"), &format!("/usr/local/bin/{comm}\0"));
            write(
                &p.join("stat"),
                &format!("{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0"),
            );
        }
        let found = processes_of_uid(root, me).unwrap();
        let got: Vec<(i32, &str, u64)> = found
            .iter()
            .map(|p| (p.holder.pid, p.holder.name(), p.start))
            .collect();
        assert_eq!(
            got,
            vec![
                (9, "app", 100),
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
    }
}
