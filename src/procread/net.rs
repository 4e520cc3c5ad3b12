//! `<proc>/net/tcp` and `<proc>/net/tcp6`: the socket tables, read row by row.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
pub use procfs::net::TcpState;

/// One socket, from a row of `/proc/net/tcp{,6}` or a netlink reply,
/// reduced to what deciding and `quiesce`'s watch need.
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
    /// Column `rx_queue`: for a listener, connections waiting in its accept
    /// queue; for a connection, bytes received and not yet read.
    pub rx_queue: u32,
    /// Column `tx_queue`: bytes sent and not yet acknowledged (0 for a
    /// listener).
    pub tx_queue: u32,
    /// What the kernel's `tcp_info` says of its traffic, when the source
    /// was asked for it (netlink with `INET_DIAG_INFO`); the tables never
    /// have it.
    pub info: Option<TcpInfo>,
    /// The cgroup v2 id of the socket (`INET_DIAG_CGROUP_ID`, Linux 5.8+:
    /// the cgroup of the process that made it; an accepted socket gets its
    /// listener's). 0 where the source does not say: the tables, older
    /// kernels, TIME_WAIT and request sockets (no cgroup is numbered 0).
    pub cgroup: u64,
}

/// The fields of a connection's `struct tcp_info` that tell whether traffic
/// still arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Milliseconds since data was last received (`tcpi_last_data_recv`).
    pub last_data_recv_ms: u32,
    /// Segments with data received so far (`tcpi_data_segs_in`; 0 on
    /// kernels before 4.6): how many requests, roughly, a kept-alive
    /// connection carried between two looks.
    pub data_segs_in: u32,
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
    /// Its file name: `tcp` or `tcp6`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Tcp => "tcp",
            Table::Tcp6 => "tcp6",
        }
    }

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
    visit: impl FnMut(Socket),
) -> Result<()> {
    read_table_until(proc_root, table, buf, &|| false, visit)
}

/// A poll cut short by its caller's `stop` (the hook's deadline): not an
/// error of the tables, and nothing read so far may be trusted as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped at the deadline")
    }
}

impl std::error::Error for Stopped {}

/// No row of either table comes near this; a file with a longer line is
/// not a socket table, and holding it whole would only cost memory.
pub const LINE_MAX: usize = 4096;

/// [`read_table`] that gives up with [`Stopped`] as soon as `stop()` says
/// so: it is asked before every `read`, each of which costs the kernel at
/// most a buffer's worth of rows (a few hundred, about a millisecond).
pub fn read_table_until(
    proc_root: &Path,
    table: Table,
    buf: &mut Vec<u8>,
    stop: &dyn Fn() -> bool,
    mut visit: impl FnMut(Socket),
) -> Result<()> {
    let path = table.path(proc_root);
    if stop() {
        return Err(Stopped.into());
    }
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && table == Table::Tcp6 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let seq_file =
        rustix::fs::fstatfs(&file).is_ok_and(|s| s.f_type == rustix::fs::PROC_SUPER_MAGIC);
    let mut line_no = 0usize;
    // buf[start..end] holds bytes read but not yet parsed: at most one
    // partial row, of which buf[start..scanned] is known to hold no newline
    // (so a long line is searched once, not once per read).
    let (mut start, mut scanned, mut end) = (0usize, 0usize, 0usize);
    loop {
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            scanned -= start;
            start = 0;
        }
        if buf.len() < end + READ_CHUNK {
            buf.resize(end + READ_CHUNK, 0);
        }
        if stop() {
            return Err(Stopped.into());
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
            let len = match buf[scanned..end].iter().position(|&b| b == b'\n') {
                Some(i) => scanned + i + 1 - start,
                // The last row may lack its newline; anywhere else, read on.
                None if ended => end - start,
                None => {
                    scanned = end;
                    if end - start > LINE_MAX {
                        bail!(
                            "{} line {}: longer than {LINE_MAX} bytes: not a socket table",
                            path.display(),
                            line_no + 1
                        );
                    }
                    break;
                }
            };
            line_no += 1;
            if len > LINE_MAX {
                bail!(
                    "{} line {line_no}: longer than {LINE_MAX} bytes: not a socket table",
                    path.display()
                );
            }
            let line = std::str::from_utf8(&buf[start..start + len])
                .map_err(|_| anyhow!("cannot read {} line {line_no}: not UTF-8", path.display()))?;
            match parse_line(line) {
                Ok(Some(socket)) => visit(socket),
                Ok(None) => {}
                Err(e) => bail!("{} line {line_no}: {e:#}", path.display()),
            }
            start += len;
            scanned = start;
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

/// How many bytes of a bad token an error shows.
const QUOTE_MAX: usize = 80;

/// A token for an error message: Debug-quoted, cut to [`QUOTE_MAX`] bytes
/// (on a character boundary) with the full length said, so one hostile
/// line cannot fill a log.
fn quote(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return format!("{s:?}");
    }
    let mut cut = QUOTE_MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..cut], s.len())
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
        bail!("expected a slot number like `12:`, found {}", quote(sl));
    }
    let mut next = |name: &str| {
        fields
            .next()
            .ok_or_else(|| anyhow!("too few columns: no {name}"))
    };
    let local = next("local_address")?;
    let remote = next("rem_address")?;
    let state = next("st")?;
    let queues = next("tx_queue:rx_queue")?;
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
    let (tx_queue, rx_queue) = queues
        .split_once(':')
        .ok_or_else(|| anyhow!("{} is not tx_queue:rx_queue", quote(queues)))
        .and_then(|(tx, rx)| Ok((parse_hex(tx, 8)?, parse_hex(rx, 8)?)))
        .context("bad tx_queue:rx_queue")?;
    Ok(Some(Socket {
        state,
        local,
        remote,
        uid,
        inode,
        rx_queue,
        tx_queue,
        info: None,
        cgroup: 0,
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
        .ok_or_else(|| anyhow!("{} has no `:port`", quote(s)))?;
    let port = parse_hex(port, 4)? as u16;
    // Checked before slicing: `ip` may hold multi-byte UTF-8 (a corrupt or
    // hostile file), and slicing it by byte offsets would panic mid-character.
    if !ip.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{}: address is not hexadecimal", quote(s));
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
        n => bail!("{}: address has {n} hex digits, expected 8 or 32", quote(s)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses 1 to `max_digits` hexadecimal digits, nothing else (no sign, no prefix).
fn parse_hex(s: &str, max_digits: usize) -> Result<u32> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{} is not a hexadecimal number of at most {max_digits} digits",
            quote(s)
        );
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
        bail!("{} is not a decimal number", quote(s));
    }
    s.bytes()
        .try_fold(0u64, |acc, b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .ok_or_else(|| anyhow!("{}: number too large to fit in target type", quote(s)))
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
    fn unknown_state_codes_are_errors() {
        for bad in ["00", "0D", "FF"] {
            let line = format!(
                "   0: 0100007F:0050 00000000:0000 {bad} 00000000:00000000 00:00000000 00000000  1000        0 7 1"
            );
            let err = parse_line(&line).unwrap_err().to_string();
            assert!(err.contains("unknown TCP state"), "{err}");
        }
        for code in 1..=12u8 {
            let line = format!(
                "   0: 0100007F:0050 00000000:0000 {code:02X} 00000000:00000000 00:00000000 00000000  1000        0 7 1"
            );
            let s = parse_line(&line).unwrap().unwrap();
            assert_eq!(Some(s.state), TcpState::from_u8(code));
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
}
