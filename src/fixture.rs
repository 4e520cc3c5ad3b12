//! Fixture `/proc` trees in the kernel's own formats, for the unit tests,
//! the integration tests, the benches and the fuzzer: one encoder of table
//! rows, one writer of tables, one writer of processes; and how a test says
//! it was skipped. The binary does not use it (link-time optimisation
//! leaves it out).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::decide::Rules;
use crate::procread::{Socket, Table, TcpState};

/// Header lines as Linux 6.x prints them (trailing padding trimmed).
pub const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
/// The `tcp6` header.
pub const TCP6_HEADER: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

/// The rules of an Istio pod as the defaults give them: proxy uid 1337,
/// processes `envoy` and `pilot-agent`.
pub fn istio_rules() -> Rules {
    Rules {
        proxy_uids: vec![1337],
        proxy_names: vec!["envoy".into(), "pilot-agent".into()],
        ..Rules::default()
    }
}

/// Encodes an address as the kernel prints it in `tcp` and `tcp6`: each
/// 32-bit word of the address in memory order, loaded as a native-endian
/// u32 and printed `%08X`, then `:%04X` for the port.
pub fn kernel_addr(a: &SocketAddr) -> String {
    let mut s = String::with_capacity(38);
    match a.ip() {
        IpAddr::V4(v4) => {
            let _ = write!(s, "{:08X}", u32::from_ne_bytes(v4.octets()));
        }
        IpAddr::V6(v6) => {
            for w in v6.octets().chunks_exact(4) {
                let _ = write!(s, "{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
            }
        }
    }
    let _ = write!(s, ":{:04X}", a.port());
    s
}

/// One row as `tcp4_seq_show`/`tcp6_seq_show` prints it, in slot `slot`.
pub fn kernel_row(slot: usize, s: &Socket) -> String {
    format!(
        "{slot:4}: {} {} {:02X} {:08X}:{:08X} 00:00000000 00000000 {:5}        0 {} 1 0000000000000000 100 0 0 10 0",
        kernel_addr(&s.local),
        kernel_addr(&s.remote),
        s.state.to_u8(),
        s.tx_queue,
        s.rx_queue,
        s.uid,
        s.inode
    )
}

/// A socket row from its parts; addresses as `1.2.3.4:80` or `[::1]:80`.
///
/// Panics on an address that does not parse: fixtures are written by hand.
pub fn socket(local: &str, remote: &str, state: TcpState, uid: u32, inode: u64) -> Socket {
    Socket {
        state,
        local: local.parse().expect("fixture address"),
        remote: remote.parse().expect("fixture address"),
        uid,
        inode,
        rx_queue: 0,
        tx_queue: 0,
        info: None,
        cgroup: 0,
    }
}

/// Writes `<root>/net/tcp` or `tcp6` with a header and these rows, whole
/// (through a rename, so a running binary never reads half a file).
pub fn write_table(root: &Path, table: Table, rows: &[Socket]) -> std::io::Result<()> {
    let mut text = String::from(match table {
        Table::Tcp => TCP_HEADER,
        Table::Tcp6 => TCP6_HEADER,
    });
    text.push('\n');
    for (slot, s) in rows.iter().enumerate() {
        text.push_str(&kernel_row(slot, s));
        text.push('\n');
    }
    let path = table.path(root);
    let dir = path.parent().expect("net/");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", table.name()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Writes both tables, each socket into the one of its address family.
pub fn write_tables(root: &Path, rows: &[Socket]) -> std::io::Result<()> {
    let (v6, v4): (Vec<Socket>, Vec<Socket>) =
        rows.iter().cloned().partition(|s| s.local.is_ipv6());
    write_table(root, Table::Tcp, &v4)?;
    write_table(root, Table::Tcp6, &v6)
}

/// A process as `<proc>/<pid>/` shows it: `comm`, `cmdline`, `stat` (with
/// its start time), fds 0 to 2 (not sockets, as in any real process) open
/// for writing as `fdinfo/2` says, then one fd per socket inode.
#[derive(Debug, Clone)]
pub struct Process<'a> {
    pid: i32,
    comm: &'a str,
    argv: Vec<&'a str>,
    sockets: Vec<u64>,
    start: u64,
}

impl<'a> Process<'a> {
    /// Process `pid` named `comm`, with `argv` `[comm]`, no socket, started
    /// at tick `pid`.
    pub fn new(pid: i32, comm: &'a str) -> Self {
        Process {
            pid,
            comm,
            argv: vec![comm],
            sockets: Vec::new(),
            start: pid as u64,
        }
    }

    /// Its command line.
    pub fn argv(mut self, argv: &[&'a str]) -> Self {
        self.argv = argv.to_vec();
        self
    }

    /// The socket inodes it holds, as fds 3, 4, ...
    pub fn sockets(mut self, inodes: &[u64]) -> Self {
        self.sockets = inodes.to_vec();
        self
    }

    /// Its start time in clock ticks since boot (`stat` field 22).
    pub fn start(mut self, ticks: u64) -> Self {
        self.start = ticks;
        self
    }

    /// Writes `<root>/<pid>/`.
    pub fn write(&self, root: &Path) -> std::io::Result<()> {
        let dir = root.join(self.pid.to_string());
        std::fs::create_dir_all(dir.join("fd"))?;
        std::fs::create_dir_all(dir.join("fdinfo"))?;
        std::fs::write(dir.join("comm"), format!("{}\n", self.comm))?;
        let mut cmdline = Vec::new();
        for a in &self.argv {
            cmdline.extend_from_slice(a.as_bytes());
            cmdline.push(0);
        }
        std::fs::write(dir.join("cmdline"), cmdline)?;
        // All 52 fields, as Linux 6.x prints them; start time is field 22.
        std::fs::write(
            dir.join("stat"),
            format!(
                "{} ({}) S 0 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {} 8192000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
                self.pid, self.comm, self.start
            ),
        )?;
        let targets = ["/dev/null", "pipe:[4026]", "anon_inode:[eventpoll]"]
            .into_iter()
            .map(String::from)
            .chain(self.sockets.iter().map(|i| format!("socket:[{i}]")));
        for (fd, target) in targets.enumerate() {
            symlink(target, dir.join("fd").join(fd.to_string()))?;
        }
        // O_RDWR|O_LARGEFILE, as a container's stdio usually is.
        std::fs::write(
            dir.join("fdinfo/2"),
            "pos:\t0\nflags:\t0100002\nmnt_id:\t15\n",
        )
    }
}

/// Says that the running test was skipped for `reason` where a person
/// running `cargo test` sees it: straight on stderr, past the harness's
/// capture, which shows a passing test's output to nobody. The line also
/// goes to `target/<profile>/skipped/<cargo's pid>`, from which the run's
/// last test binary (`tests/zz_skipped.rs`) counts them. Under `CI=true` a
/// skip is a failure: callers check that first.
pub fn skipped(reason: &str) {
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test");
    let line = format!(
        "skipped: {test}: {reason} (`sudo bash .ci/run` installs every prerequisite and runs it; `CI=true` makes a skip fail)\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    if let Some(file) = skip_log(rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()))
    {
        let _ = std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")));
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
}

/// Where the skips of the `cargo test` whose pid is `cargo` are noted:
/// beside the test binaries, `target/<profile>/skipped/<pid>`.
pub fn skip_log(cargo: i32) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<binary>
    let profile = exe.parent()?.parent()?;
    Some(profile.join("skipped").join(cargo.to_string()))
}

/// A port on `addr`'s address that refuses connections and that no other
/// test can be given while the returned socket is held: a TCP socket bound
/// there (port 0: any) that never listens. Binding a listener and dropping
/// it would free the port for a parallel test's `bind(:0)` before the
/// connection that is meant to be refused.
pub fn refusing_port(addr: SocketAddr) -> std::io::Result<(std::os::fd::OwnedFd, SocketAddr)> {
    use rustix::net::{AddressFamily, SocketType, bind, getsockname, socket};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = socket(family, SocketType::STREAM, None)?;
    bind(&fd, &addr)?;
    let bound = getsockname(&fd)?;
    let bound = SocketAddr::try_from(bound)
        .map_err(|_| std::io::Error::other("getsockname: not an IP address"))?;
    Ok((fd, bound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procread::{parse_line, read_table, scan_holders};

    #[test]
    fn what_it_writes_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [
            socket("0.0.0.0:8080", "0.0.0.0:0", TcpState::Listen, 1000, 7),
            socket(
                "[::ffff:127.0.0.1]:9090",
                "[::1]:40000",
                TcpState::Established,
                0,
                8,
            ),
        ];
        write_tables(dir.path(), &rows).unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for t in [Table::Tcp, Table::Tcp6] {
            read_table(dir.path(), t, &mut buf, |s| got.push(s)).unwrap();
        }
        assert_eq!(got, rows);
        assert_eq!(
            parse_line(&kernel_row(3, &rows[1])).unwrap(),
            Some(rows[1].clone())
        );
        Process::new(12, "envoy")
            .sockets(&[7, 8])
            .write(dir.path())
            .unwrap();
        let h = scan_holders(dir.path(), &|| false).unwrap();
        assert_eq!(
            h.of(8).next().map(|h| (h.pid, h.name())),
            Some((12, "envoy"))
        );
        assert_eq!(h.len(), 2);
    }
}
