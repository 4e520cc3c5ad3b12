//! Gathering: reads `<proc>/net/tcp{,6}` and `<proc>/<pid>/fd` into plain structs.
//!
//! Nothing here decides what blocks; [`crate::decide`] does. Every path is
//! relative to a procfs root given by the caller, so tests point it at a
//! fixture tree.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
pub use procfs::net::TcpState;
use rustix::fs::{Dir, Mode, OFlags};

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`, reduced to what deciding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    /// Kernel TCP state (column `st`).
    pub state: TcpState,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port (`0.0.0.0:0` / `[::]:0` for listeners).
    pub remote: SocketAddr,
    /// Owner uid, as the kernel maps it into the reader's user namespace.
    pub uid: u32,
    /// Socket inode; 0 when no file descriptor refers to it any more.
    pub inode: u64,
}

/// The kernel's own name for a TCP state, as `ss`/`netstat` print them.
pub fn state_name(state: &TcpState) -> &'static str {
    match state {
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

/// Which of the two tables a path is, so an error can name the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `net/tcp`: IPv4 sockets.
    Tcp,
    /// `net/tcp6`: IPv6 sockets, including dual-stack listeners and IPv4-mapped peers.
    Tcp6,
}

impl Table {
    /// Path of this table under a procfs root.
    pub fn path(self, proc_root: &Path) -> PathBuf {
        match self {
            Table::Tcp => proc_root.join("net/tcp"),
            Table::Tcp6 => proc_root.join("net/tcp6"),
        }
    }
}

/// Bytes asked for per `read`; also the least free space kept before each one.
const READ_CHUNK: usize = 64 * 1024;

/// The smallest buffer a kernel seq_file fills per `read` (one page).
const SEQ_FILE_MIN_BUF: usize = 4096;

/// Longer than any row of `tcp` (150 bytes) or `tcp6` (about 180) can be.
const TABLE_ROW_MAX: usize = 512;

/// Reads one table and hands every row to `visit`, one at a time.
///
/// Rows are streamed through `buf` (reused across calls) so a table of tens of
/// thousands of sockets is never held whole. A missing `tcp6` is an empty
/// table: kernels built without IPv6, or booted with `ipv6.disable=1`, have no
/// such file.
///
/// On procfs the read that would return 0 is skipped when a short read has
/// already shown the end; see [`seq_file_ended`].
pub fn read_table(
    proc_root: &Path,
    table: Table,
    buf: &mut Vec<u8>,
    mut visit: impl FnMut(Socket),
) -> Result<()> {
    let path = table.path(proc_root);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && table == Table::Tcp6 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let seq_file =
        rustix::fs::fstatfs(&file).is_ok_and(|s| s.f_type == rustix::fs::PROC_SUPER_MAGIC);
    let mut line_no = 0usize;
    // buf[start..end] holds bytes read but not yet parsed: at most one partial row.
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if buf.len() < end + READ_CHUNK {
            buf.resize(end + READ_CHUNK, 0);
        }
        let n = loop {
            match file.read(&mut buf[end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot read {} line {}", path.display(), line_no + 1)
                    });
                }
            }
        };
        let ended = n == 0 || (seq_file && seq_file_ended(n));
        end += n;
        while start < end {
            let rest = &buf[start..end];
            let len = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                // The last row may lack its newline; anywhere else, read on.
                None if ended => rest.len(),
                None => break,
            };
            line_no += 1;
            let line = std::str::from_utf8(&rest[..len])
                .map_err(|_| anyhow!("cannot read {} line {line_no}: not UTF-8", path.display()))?;
            match parse_line(line) {
                Ok(Some(socket)) => visit(socket),
                Ok(None) => {}
                Err(e) => bail!("{} line {line_no}: {e}", path.display()),
            }
            start += len;
        }
        if ended {
            return Ok(());
        }
    }
}

/// Whether a `read` of `n > 0` bytes from a procfs table was its last.
///
/// A kernel seq_file `read` copies whole rows from one buffer of at least a
/// page, and stops early only when the table has no next row (`seq_read_iter`:
/// the fill loop ends on "no next record", a full buffer, or a full user
/// buffer, and ours always has room for more than a page). So a read that left
/// room for another row in the smallest such buffer ended the table. Skipping
/// the read that would return 0 matters: for `tcp` and `tcp6` that read starts
/// the walk over the node-wide TCP hash again from bucket 0
/// (`tcp_seek_last_pos` finds nothing to resume, `tcp_seq_start` restarts),
/// measured here at about 2 ms per table, as much as the read with the rows.
pub fn seq_file_ended(n: usize) -> bool {
    n > 0 && n + TABLE_ROW_MAX <= SEQ_FILE_MIN_BUF
}

/// Parses one line of `/proc/net/tcp{,6}`.
///
/// Returns `Ok(None)` for the header line and blank lines. The error is a short
/// description of the offending field; the caller adds file and line.
pub fn parse_line(line: &str) -> Result<Option<Socket>> {
    let mut fields = line.split_ascii_whitespace();
    let Some(sl) = fields.next() else {
        return Ok(None);
    };
    if sl == "sl" {
        return Ok(None);
    }
    if !sl.ends_with(':') {
        bail!("expected a slot number like `12:`, found {sl:?}");
    }
    let mut next = |name: &str| {
        fields
            .next()
            .ok_or_else(|| anyhow!("too few columns: no {name}"))
    };
    let local = next("local_address")?;
    let remote = next("rem_address")?;
    let state = next("st")?;
    let _queues = next("tx_queue:rx_queue")?;
    let _timer = next("tr:tm->when")?;
    let _retransmits = next("retrnsmt")?;
    let uid = next("uid")?;
    let _timeout = next("timeout")?;
    let inode = next("inode")?;

    let local = parse_addr(local).context("bad local_address")?;
    let remote = parse_addr(remote).context("bad rem_address")?;
    if local.is_ipv4() != remote.is_ipv4() {
        bail!("local and remote addresses are of different families");
    }
    let code = parse_hex(state, 2).context("bad st")? as u8;
    let state = TcpState::from_u8(code).ok_or_else(|| anyhow!("unknown TCP state 0x{code:02X}"))?;
    let uid = parse_dec(uid)
        .and_then(|v| u32::try_from(v).map_err(|_| anyhow!("{v} is out of range")))
        .context("bad uid")?;
    let inode = parse_dec(inode).context("bad inode")?;
    Ok(Some(Socket {
        state,
        local,
        remote,
        uid,
        inode,
    }))
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6).
///
/// The kernel prints each 32-bit word of the address with `%08X` after loading
/// it as a native-endian integer, so the word's bytes in memory order are its
/// native-endian bytes: `0100007F` is 127.0.0.1 on little-endian machines.
fn parse_addr(s: &str) -> Result<SocketAddr> {
    let (ip, port) = s
        .split_once(':')
        .ok_or_else(|| anyhow!("{s:?} has no `:port`"))?;
    let port = parse_hex(port, 4)? as u16;
    // Checked before slicing: `ip` may hold multi-byte UTF-8 (a corrupt or
    // hostile file), and slicing it by byte offsets would panic mid-character.
    if !ip.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{s:?}: address is not hexadecimal");
    }
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(parse_hex(ip, 8)?.to_ne_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let word = parse_hex(&ip[i * 8..i * 8 + 8], 8)?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        n => bail!("{s:?}: address has {n} hex digits, expected 8 or 32"),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses 1 to `max_digits` hexadecimal digits, nothing else (no sign, no prefix).
fn parse_hex(s: &str, max_digits: usize) -> Result<u32> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{s:?} is not a hexadecimal number of at most {max_digits} digits");
    }
    // At most 8 checked digits: no overflow, and no `from_str_radix` per field.
    Ok(s.bytes().fold(0, |acc, b| (acc << 4) | hex_digit(b)))
}

/// The value of one ASCII hex digit, already checked to be one.
fn hex_digit(b: u8) -> u32 {
    u32::from(match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    })
}

/// Parses a plain decimal number (no sign), as the kernel prints uid and inode.
fn parse_dec(s: &str) -> Result<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{s:?} is not a decimal number");
    }
    s.bytes()
        .try_fold(0u64, |acc, b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .ok_or_else(|| anyhow!("{s:?}: number too large to fit in target type"))
}

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
/// (sorted, as a binary search over 8 bytes an inode is smaller than a hash set).
///
/// Processes that exit mid-scan (ENOENT/ESRCH) are skipped silently: during
/// pod shutdown that is the normal case. Processes we may not look into are
/// counted, never an error. Only the root directory itself being unreadable is.
///
/// Processes whose effective uid (the owner of `<proc>/<pid>`) is in
/// `skip_uids` are not scanned at all; see [`crate::poll::Poller::poll`] for
/// why that is safe.
///
/// One `readlinkat` per fd, relative to the open fd directory, is the whole
/// cost per fd: procfs's `Process::fd()` would add an `fstatat` and more per
/// entry, and a full-path `readlink` walks `/proc/<pid>/fd/` again each time.
pub fn scan_holders(proc_root: &Path, wanted: &[u64], skip_uids: &[u32]) -> Result<Holders> {
    let mut found = Vec::new();
    let (mut uninspected_processes, mut unreadable_fds) = (0, 0);
    if wanted.is_empty() {
        return Ok(Holders::default());
    }
    let processes = procfs::process::all_processes_with_root(proc_root)
        .with_context(|| format!("cannot list processes in {}", proc_root.display()))?;
    let mut link = Vec::with_capacity(64);
    for process in processes {
        // A failed openat on a pid directory means the process is gone or hidden
        // (hidepid=); either way it has nothing we can attribute.
        let Ok(process) = process else { continue };
        // One fstat of the pid directory we already hold open, instead of a
        // readlink per fd: a busy Envoy holds tens of thousands.
        if !skip_uids.is_empty() && process.uid().is_ok_and(|uid| skip_uids.contains(&uid)) {
            continue;
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
        while let Some(entry) = dir.read() {
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
                        && wanted.binary_search(&inode).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddrV4, SocketAddrV6};

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
    }

    fn v6(s: &str, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(s.parse().unwrap(), port, 0, 0))
    }

    fn parse_all(text: &str) -> Vec<Socket> {
        text.lines()
            .filter_map(|l| parse_line(l).unwrap())
            .collect()
    }

    /// Captured on Linux 6.18 x86_64 in a fresh network namespace
    /// (`unshare --net`, uid 1000, python3): a listener on 0.0.0.0:8080, a
    /// connection to it from 127.0.0.1:50930 (both ends), a client
    /// 127.0.0.1:54538 of the dual-stack listener below, and a TIME_WAIT left
    /// by a connection the server side closed first. Trailing blanks are the
    /// kernel's own padding.
    const TCP_V4: &str = r"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5732 1 0000000003d409a1 100 0 0 10 0                      
   1: 0100007F:C6F2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 5733 2 0000000078ad2f91 20 0 0 10 -1                      
   2: 0100007F:1F90 0100007F:C6F2 01 00000000:00000000 00:00000000 00000000  1000        0 5734 1 00000000d66375d0 20 0 0 10 -1                      
   3: 0100007F:D50A 0100007F:2382 01 00000000:00000000 00:00000000 00000000  1000        0 5738 2 0000000004d003e7 20 0 0 10 -1                      
   4: 0100007F:1F90 0100007F:C6F4 06 00000000:00000000 03:0000175B 00000000     0        0 0 3 0000000003411c61                                      
";

    /// Same capture, tcp6: a dual-stack `[::]:9090` listener, a `[::1]:9091`
    /// listener, the IPv4 client above as accepted on the dual-stack socket
    /// (IPv4-mapped), and a `[::1]` connection, both ends.
    const TCP_V6: &str = r"  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5737 1 00000000228dc95f 100 0 0 10 0
   1: 00000000000000000000000001000000:2383 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5740 1 000000007d9a0852 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:2382 0000000000000000FFFF00000100007F:D50A 01 00000000:00000000 00:00000000 00000000  1000        0 5739 1 0000000092857ca1 20 0 0 10 -1
   3: 00000000000000000000000001000000:2383 00000000000000000000000001000000:BBCE 01 00000000:00000000 00:00000000 00000000  1000        0 5742 1 00000000be67a5bf 20 0 0 10 -1
   4: 00000000000000000000000001000000:BBCE 00000000000000000000000001000000:2383 01 00000000:00000000 00:00000000 00000000  1000        0 5741 2 0000000028fe2aa6 20 0 0 10 -1
";

    #[test]
    fn parses_ipv4_rows_in_host_byte_order() {
        let s = parse_all(TCP_V4);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].local, v4([0, 0, 0, 0], 8080));
        assert_eq!(s[0].remote, v4([0, 0, 0, 0], 0));
        assert_eq!(s[0].state, TcpState::Listen);
        assert_eq!((s[0].uid, s[0].inode), (1000, 5732));
        assert_eq!(s[1].local, v4([127, 0, 0, 1], 50930));
        assert_eq!(s[1].remote, v4([127, 0, 0, 1], 8080));
        assert_eq!(s[1].state, TcpState::Established);
        assert_eq!(s[3].remote, v4([127, 0, 0, 1], 9090));
        assert_eq!(s[4].state, TcpState::TimeWait);
        assert_eq!((s[4].uid, s[4].inode), (0, 0));
    }

    #[test]
    fn parses_ipv6_rows_including_mapped_and_loopback() {
        let s = parse_all(TCP_V6);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].local, v6("::", 9090));
        assert_eq!(s[1].local, v6("::1", 9091));
        assert_eq!(s[2].local, v6("::ffff:127.0.0.1", 9090));
        assert_eq!(s[2].remote, v6("::ffff:127.0.0.1", 54538));
        assert_eq!(s[4].local, v6("::1", 0xBBCE));
        assert_eq!(s[4].remote, v6("::1", 9091));
        assert_eq!(s[4].inode, 5741);
    }

    #[test]
    fn agrees_with_procfs_parser_on_captured_tables() {
        use procfs::FromBufReadSI;
        let si = procfs::ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        for text in [TCP_V4, TCP_V6] {
            let theirs = procfs::net::TcpNetEntries::from_buf_read(text.as_bytes(), &si)
                .unwrap()
                .0;
            let ours = parse_all(text);
            assert_eq!(theirs.len(), ours.len());
            for (t, o) in theirs.iter().zip(&ours) {
                assert_eq!(
                    (t.local_address, t.remote_address, &t.state, t.uid, t.inode),
                    (o.local, o.remote, &o.state, o.uid, o.inode)
                );
            }
        }
    }

    #[test]
    fn every_state_code_maps_to_its_kernel_name() {
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
            let line = format!(
                "   0: 0100007F:0050 00000000:0000 {:02X} 00000000:00000000 00:00000000 00000000  1000        0 7 1",
                i + 1
            );
            let s = parse_line(&line).unwrap().unwrap();
            assert_eq!(state_name(&s.state), *name);
        }
        for bad in ["00", "0D", "FF"] {
            let line = format!(
                "   0: 0100007F:0050 00000000:0000 {bad} 00000000:00000000 00:00000000 00000000  1000        0 7 1"
            );
            let err = parse_line(&line).unwrap_err().to_string();
            assert!(err.contains("unknown TCP state"), "{err}");
        }
    }

    #[test]
    fn header_blank_and_trailing_fields() {
        assert_eq!(parse_line("").unwrap(), None);
        assert_eq!(parse_line("   \n").unwrap(), None);
        assert_eq!(
            parse_line("  sl  local_address rem_address   st tx_queue").unwrap(),
            None
        );
        // Exactly ten columns (older kernels stop after inode in some builds).
        let s = parse_line("0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 5 0 9")
            .unwrap()
            .unwrap();
        assert_eq!((s.uid, s.inode), (5, 9));
    }

    #[test]
    fn rejects_malformed_rows_with_the_field_named() {
        let cases = [
            ("0: 0100007F:0050", "no rem_address"),
            (
                "0: 0100007F0050 00000000:0000 0A 0:0 0:0 0 5 0 9",
                "bad local_address",
            ),
            (
                "0: 0100007G:0050 00000000:0000 0A 0:0 0:0 0 5 0 9",
                "bad local_address",
            ),
            (
                "0: 0100007F:0050 0000000:0000 0A 0:0 0:0 0 5 0 9",
                "bad rem_address",
            ),
            (
                "0: 0100007F:10050 00000000:0000 0A 0:0 0:0 0 5 0 9",
                "bad local_address",
            ),
            (
                "0: 0100007F:+050 00000000:0000 0A 0:0 0:0 0 5 0 9",
                "bad local_address",
            ),
            (
                "0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 -5 0 9",
                "bad uid",
            ),
            (
                "0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 4294967296 0 9",
                "bad uid",
            ),
            (
                "0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 5 0 99999999999999999999999",
                "bad inode",
            ),
            (
                "0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 5 0 x",
                "bad inode",
            ),
            (
                "0: 0100007F:0050 00000000:0000 10A 0:0 0:0 0 5 0 9 1",
                "bad st",
            ),
            (
                "0: 0100007F:0050 00000000:0000 ZZ 0:0 0:0 0 5 0 9",
                "bad st",
            ),
            ("garbage", "slot number"),
            (
                "0: 0100007F:0050 00000000000000000000000000000000:0000 0A 0:0 0:0 0 5 0 9",
                "different families",
            ),
        ];
        for (line, want) in cases {
            let err = match parse_line(line) {
                Err(e) => format!("{e:#}"),
                Ok(v) => panic!("{line:?} parsed as {v:?}"),
            };
            assert!(err.contains(want), "{line:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn non_ascii_in_a_32_digit_address_is_an_error_not_a_panic() {
        // Found by the parse_line fuzz target (fuzz/regressions/parse_line/):
        // byte 8 of the address falls inside 'é', where slicing panicked.
        let line = "0: 0000000\u{e9}00000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0:0 0:0 0 5 0 9";
        let err = format!("{:#}", parse_line(line).unwrap_err());
        assert!(err.contains("bad local_address"), "{err}");
        let lossy = ": 0100\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}007F:0 0 9 0 \u{1} 0 0 \u{1} \u{1}";
        assert!(parse_line(lossy).is_err());
        for i in 0..32 {
            let mut addr: Vec<char> = "0".repeat(31).chars().collect();
            addr.insert(i, '\u{e9}');
            let addr: String = addr.into_iter().collect();
            let line = format!("0: {addr}:0050 {addr}:0000 0A 0:0 0:0 0 5 0 9");
            assert!(parse_line(&line).is_err(), "{line}");
        }
    }

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
    fn read_table_names_file_and_line_and_tolerates_missing_tcp6() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("net/tcp"), TCP_V4);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        read_table(dir.path(), Table::Tcp, &mut buf, |s| seen.push(s)).unwrap();
        assert_eq!(seen.len(), 5);
        read_table(dir.path(), Table::Tcp6, &mut buf, |s| seen.push(s)).unwrap();
        assert_eq!(seen.len(), 5, "missing tcp6 is empty");

        write(
            &dir.path().join("net/tcp6"),
            &format!("{TCP_V6}   3: nonsense\n"),
        );
        let err = read_table(dir.path(), Table::Tcp6, &mut buf, |_| {}).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("net/tcp6 line 7:"), "{msg}");

        let empty = tempfile::tempdir().unwrap();
        let err = read_table(empty.path(), Table::Tcp, &mut buf, |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read"), "{err:#}");
    }

    #[test]
    fn numbers_at_their_limits_and_hex_in_either_case() {
        let row = |addr: &str, uid: &str, inode: &str| {
            parse_line(&format!(
                "0: {addr}:1F90 00000000:0000 0A 0:0 0:0 0 {uid} 0 {inode}"
            ))
        };
        let s = row("0100007f", "4294967295", "18446744073709551615")
            .unwrap()
            .unwrap();
        assert_eq!(s.local, v4([127, 0, 0, 1], 8080));
        assert_eq!((s.uid, s.inode), (u32::MAX, u64::MAX));
        assert_eq!(parse_hex("aBcDeF09", 8).unwrap(), 0xABCD_EF09);
        let err = format!(
            "{:#}",
            row("0100007F", "0", "18446744073709551616").unwrap_err()
        );
        assert!(
            err.contains("bad inode") && err.contains("too large"),
            "{err}"
        );
    }

    #[test]
    fn seq_file_ends_only_where_another_row_would_have_fit() {
        assert!(!seq_file_ended(0), "0 is the ordinary end, not this rule");
        assert!(seq_file_ended(150), "header alone: a pod with no sockets");
        assert!(seq_file_ended(SEQ_FILE_MIN_BUF - TABLE_ROW_MAX));
        assert!(!seq_file_ended(SEQ_FILE_MIN_BUF - TABLE_ROW_MAX + 1));
        // 27 rows of 150 bytes: a full page of tcp, more may follow.
        assert!(!seq_file_ended(27 * 150));
        assert!(!seq_file_ended(READ_CHUNK));
        // The longest tcp6 row (uid and inode at their widest, a 64-bit
        // pointer) with the header fits the margin many times over.
        let widest = format!(
            "{:4}: {:032X}:{:04X} {:032X}:{:04X} {:02X} {:08X}:{:08X} {:02X}:{:08X} {:08X} {:5} {:8} {} {} {:016x} {} {} {} {} {}\n",
            u32::MAX,
            u128::MAX,
            65535,
            u128::MAX,
            65535,
            0xFF,
            u32::MAX,
            u32::MAX,
            0xFF,
            u64::MAX,
            u32::MAX,
            u32::MAX,
            i32::MIN,
            u64::MAX,
            i32::MIN,
            u64::MAX,
            u64::MAX,
            u64::MAX,
            u32::MAX,
            u32::MAX,
            i32::MIN
        );
        assert!(widest.len() < TABLE_ROW_MAX, "{} bytes", widest.len());
    }

    #[test]
    fn read_table_carries_rows_across_reads_and_takes_a_last_row_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        // Over 300 KiB: rows straddle every 64 KiB read boundary.
        let mut text = String::from(TCP_V4.lines().next().unwrap());
        text.push('\n');
        let rows = 2500u64;
        for i in 0..rows {
            text.push_str(&format!(
                "{i:4}: 0100007F:{:04X} 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 {} 1 0000000000000000 20 4 30 10 -1\n",
                1024 + i,
                1_000_000 + i
            ));
        }
        text.pop();
        write(&dir.path().join("net/tcp"), &text);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        read_table(dir.path(), Table::Tcp, &mut buf, |s| seen.push(s.inode)).unwrap();
        assert_eq!(seen, (1_000_000..1_000_000 + rows).collect::<Vec<_>>());
        assert!(buf.len() <= 2 * READ_CHUNK, "buffer grew to {}", buf.len());

        // Not UTF-8: named by file and line, not a panic.
        let mut bad = text.into_bytes();
        bad.extend_from_slice(b"\n  99: \xff\n");
        std::fs::write(dir.path().join("net/tcp"), &bad).unwrap();
        let err = read_table(dir.path(), Table::Tcp, &mut buf, |_| {}).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("net/tcp line {}", rows + 2)), "{msg}");
        assert!(msg.contains("not UTF-8"), "{msg}");
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
        let h = scan_holders(root, &wanted, &[]).unwrap();
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
        let h = scan_holders(root, &[200, 300], &[]).unwrap();
        assert!(Arc::ptr_eq(
            &h.of(200).next().unwrap().names,
            &h.of(300).next().unwrap().names
        ));

        // Nothing asked: nothing scanned, even with a broken root.
        let none = scan_holders(Path::new("/nonexistent"), &[], &[]).unwrap();
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
        // What a busy table costs per held socket; see the README's numbers.
        assert_eq!(std::mem::size_of::<Holder>(), 16);
        assert!(std::mem::size_of::<HolderList>() <= 24);
        assert!(std::mem::size_of::<crate::decide::Entry>() <= 112);
    }

    #[test]
    fn processes_running_as_a_skipped_uid_are_not_scanned() {
        use std::os::unix::fs::{chown, symlink};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (pid, comm) in [(10, "envoy\n"), (20, "app\n")] {
            let p = root.join(pid.to_string());
            write(&p.join("comm"), comm);
            std::fs::create_dir_all(p.join("fd")).unwrap();
            symlink(format!("socket:[{pid}0]"), p.join("fd/3")).unwrap();
        }
        // The owner of /proc/<pid> is the process's effective uid.
        if let Err(e) = chown(root.join("10"), Some(1337), None) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must chown: {e}"
            );
            eprintln!("skipped: chown needs root ({e})");
            return;
        }
        let wanted = [100, 200];
        let all = scan_holders(root, &wanted, &[]).unwrap();
        assert_eq!((all.of(100).count(), all.of(200).count()), (1, 1));
        let some = scan_holders(root, &wanted, &[1337]).unwrap();
        assert_eq!((some.of(100).count(), some.of(200).count()), (0, 1));
        assert_eq!(some.uninspected_processes, 0, "skipped is not uninspected");
        let other = scan_holders(root, &wanted, &[4242]).unwrap();
        assert_eq!(other, all);
    }

    #[test]
    fn process_without_fd_dir_counts_as_gone_not_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("42");
        write(&p.join("comm"), "ghost\n");
        let h = scan_holders(dir.path(), &[1], &[]).unwrap();
        assert_eq!(h, Holders::default());
    }
}
