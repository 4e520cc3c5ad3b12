//! `NETLINK_SOCK_DIAG`: the kernel's own dump of TCP sockets, in binary.
//!
//! What `ss` reads. Reading `/proc/net/tcp` costs what the kernel spends
//! formatting text; the dump skips that. It needs no privilege inside the
//! pod's network namespace: any uid sees every socket's uid and inode
//! (`inet_diag_dump_icsk`, no capability check). A small codec of the two
//! message formats (`inet_diag_req_v2` out, `inet_diag_msg` in), no unsafe
//! code: every field is read from the bytes with bounds checked, and a
//! message that is malformed or cut short is an error naming netlink.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Result, anyhow, bail};
use rustix::fd::OwnedFd;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::net::{Socket, Table, TcpInfo, TcpState};

/// `SOCK_DIAG_BY_FAMILY`, the request and the answer's message type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR` and `NLMSG_DONE`.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST | NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const DUMP_FLAGS: u16 = 0x1 | 0x300;
const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`: [`Diag::own_cgroup`] asks of a UDP socket.
const IPPROTO_UDP: u8 = 17;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// `INET_DIAG_INFO`: the attribute holding `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// `INET_DIAG_CGROUP_ID`: the socket's cgroup v2 id, a `u64`.
const INET_DIAG_CGROUP_ID: u16 = 21;
/// Where `tcpi_last_data_recv` and `tcpi_data_segs_in` (both u32) sit in
/// `struct tcp_info` (include/uapi/linux/tcp.h).
const LAST_DATA_RECV: usize = 52;
const DATA_SEGS_IN: usize = 152;
/// `sizeof(struct nlmsghdr)`, `sizeof(struct inet_diag_req_v2)`,
/// `sizeof(struct inet_diag_msg)`.
const NLMSG_HDR: usize = 16;
const REQ_LEN: usize = 56;
const MSG_LEN: usize = 72;

/// The states a dump asks for: those whose sockets can have an inode, so can
/// block. Not TIME_WAIT (6), nor SYN_RECV (3) and NEW_SYN_RECV (12), which
/// are request sockets no process holds yet; `/proc` lists them with inode 0.
pub const STATES: u32 = {
    let mut mask = 0u32;
    let mut st = 1;
    while st <= 11 {
        if st != 3 && st != 6 {
            mask |= 1 << st;
        }
        st += 1;
    }
    mask
};

/// Every state, for a reader of traffic: request sockets (a handshake under
/// way, reported as SYN_RECV) and TIME_WAIT (a connection that just ended)
/// are traffic too.
pub const ALL_STATES: u32 = 0x1FFE;

/// The request for one family's dump: an `nlmsghdr` and an
/// `inet_diag_req_v2` asking for TCP sockets in `states` (a mask, bit `1 <<
/// state`), with `INET_DIAG_INFO` (each socket's `tcp_info`) when `info`: it
/// costs the kernel a third more, so only a reader that needs traffic asks.
pub fn request(table: Table, seq: u32, info: bool, states: u32) -> [u8; NLMSG_HDR + REQ_LEN] {
    request_for(family(table), IPPROTO_TCP, seq, info, states)
}

/// [`request`] for any family and protocol.
fn request_for(
    family: u8,
    protocol: u8,
    seq: u32,
    info: bool,
    states: u32,
) -> [u8; NLMSG_HDR + REQ_LEN] {
    let mut b = [0u8; NLMSG_HDR + REQ_LEN];
    b[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&DUMP_FLAGS.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel.
    b[16] = family;
    b[17] = protocol;
    if info {
        b[18] = 1 << (INET_DIAG_INFO - 1);
    }
    b[20..24].copy_from_slice(&states.to_ne_bytes());
    // The socket id stays zero: a dump of every socket.
    b
}

fn family(table: Table) -> u8 {
    match table {
        Table::Tcp => AF_INET,
        Table::Tcp6 => AF_INET6,
    }
}

/// What one datagram of a dump held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Sockets; more datagrams follow.
    More,
    /// `NLMSG_DONE`: the dump is over.
    Done,
}

/// Reads the messages of one datagram of the dump for `seq`, handing each
/// socket to `visit`. Errors on a message that is cut short, of another
/// sequence, an `NLMSG_ERROR`, or a socket whose fields make no sense; never
/// panics, whatever the bytes.
pub fn parse(mut buf: &[u8], seq: u32, visit: &mut dyn FnMut(Socket)) -> Result<Parsed> {
    while !buf.is_empty() {
        let len = u32_at(buf, 0)? as usize;
        if len < NLMSG_HDR || len > buf.len() {
            bail!(
                "netlink: a message of {len} bytes where {} are left",
                buf.len()
            );
        }
        let kind = u16_at(buf, 4)?;
        let msg_seq = u32_at(buf, 8)?;
        if msg_seq != seq {
            bail!("netlink: a message of sequence {msg_seq}, not {seq}");
        }
        let body = &buf[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => return Ok(Parsed::Done),
            NLMSG_ERROR => {
                let errno = i32::from_ne_bytes(
                    body.get(0..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| anyhow!("netlink: an error message of {len} bytes"))?,
                );
                let e = std::io::Error::from_raw_os_error(errno.saturating_neg());
                bail!("netlink: the kernel refused the dump: {e}");
            }
            SOCK_DIAG_BY_FAMILY => visit(socket(body)?),
            // Anything else (NLMSG_NOOP, NLMSG_OVERRUN...) carries no socket.
            _ => {}
        }
        // Messages are aligned to 4 bytes; the last may end the buffer.
        let next = (len + 3) & !3;
        buf = buf.get(next..).unwrap_or_default();
    }
    Ok(Parsed::More)
}

/// One `inet_diag_msg` as a [`Socket`].
fn socket(m: &[u8]) -> Result<Socket> {
    if m.len() < MSG_LEN {
        bail!(
            "netlink: a socket message of {} bytes, not {MSG_LEN}",
            m.len()
        );
    }
    let code = m[1];
    let state = TcpState::from_u8(code)
        .ok_or_else(|| anyhow!("netlink: unknown TCP state 0x{code:02X}"))?;
    let sport = u16::from_be_bytes([m[4], m[5]]);
    let dport = u16::from_be_bytes([m[6], m[7]]);
    let (src, dst) = (&m[8..24], &m[24..40]);
    let (local, remote) = match m[0] {
        AF_INET => (
            IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
            IpAddr::V4(Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3])),
        ),
        AF_INET6 => (
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(src)?)),
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(dst)?)),
        ),
        f => bail!("netlink: a socket of address family {f}"),
    };
    let (info, cgroup) = attributes(&m[MSG_LEN..])?;
    Ok(Socket {
        state,
        local: SocketAddr::new(local, sport),
        remote: SocketAddr::new(remote, dport),
        uid: u32_at(m, 64)?,
        inode: u64::from(u32_at(m, 68)?),
        // idiag_rqueue and idiag_wqueue: what the tables print as rx_queue
        // and tx_queue, but for a listener's wqueue, its backlog limit,
        // which the tables print as 0 (and so does this, to agree).
        rx_queue: u32_at(m, 56)?,
        tx_queue: if code == TcpState::Listen.to_u8() {
            0
        } else {
            u32_at(m, 60)?
        },
        info,
        cgroup,
    })
}

/// The `tcp_info` and the cgroup id among a socket message's attributes
/// (`rtattr`s, each aligned to 4 bytes), where they are. A listener's
/// `tcp_info` carries none of the traffic fields that matter; an older
/// kernel's may end before `tcpi_data_segs_in` (then 0). The kernel puts
/// the cgroup id on every full socket unasked (`inet_diag_msg_attrs_fill`,
/// Linux 5.8+); 0 where it does not.
fn attributes(mut attrs: &[u8]) -> Result<(Option<TcpInfo>, u64)> {
    let (mut info, mut cgroup) = (None, 0);
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0)?);
        let kind = u16_at(attrs, 2)?;
        if len < 4 || len > attrs.len() {
            bail!(
                "netlink: an attribute of {len} bytes where {} are left",
                attrs.len()
            );
        }
        let body = &attrs[4..len];
        match kind {
            INET_DIAG_INFO => {
                let last = u32_at(body, LAST_DATA_RECV)?;
                let segs = body
                    .get(DATA_SEGS_IN..DATA_SEGS_IN + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_ne_bytes);
                info = Some(TcpInfo {
                    last_data_recv_ms: last,
                    data_segs_in: segs,
                });
            }
            INET_DIAG_CGROUP_ID => {
                cgroup = body
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_ne_bytes);
            }
            _ => {}
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or_default();
    }
    Ok((info, cgroup))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or_else(|| anyhow!("netlink: a message cut short at byte {at}"))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or_else(|| anyhow!("netlink: a message cut short at byte {at}"))
}

/// A new `NETLINK_SOCK_DIAG` socket: the dumps' and the destroy events'
/// ([`super::destroys`]).
pub(super) fn sock_diag_socket(flags: SocketFlags) -> std::io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        flags,
        Some(netlink::SOCK_DIAG),
    )?)
}

/// A `NETLINK_SOCK_DIAG` socket, and the buffer its dumps are read into.
#[derive(Debug)]
pub struct Diag {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
    /// Ask for each socket's `tcp_info`.
    info: bool,
    /// Which states to dump (a mask of `1 << state`).
    states: u32,
}

/// Bytes asked for per `recv`: the kernel fills a dump datagram up to its
/// own buffer (a page or more), never past what the reader offers.
const RECV_BUF: usize = 32 * 1024;

impl Diag {
    /// Opens the socket. Fails where netlink is denied: a seccomp profile
    /// that refuses `AF_NETLINK` (EPERM, EACCES) or a sandbox without it
    /// (gVisor: EAFNOSUPPORT, EPROTONOSUPPORT).
    pub fn open() -> std::io::Result<Diag> {
        let fd = sock_diag_socket(SocketFlags::CLOEXEC)?;
        Ok(Diag {
            fd,
            buf: vec![0; RECV_BUF],
            seq: 0,
            info: false,
            states: STATES,
        })
    }

    /// Asks for each socket's `tcp_info` from now on ([`Socket::info`]).
    pub fn with_info(mut self) -> Diag {
        self.info = true;
        self
    }

    /// Dumps sockets in `states` (a mask of `1 << state`; [`STATES`]
    /// unless said) from now on.
    pub fn with_states(mut self, states: u32) -> Diag {
        self.states = states;
        self
    }

    /// Asks for a dump the kernel answers cheaply, and reads it: whether
    /// the sandbox lets a dump through at all. Listeners only: with no
    /// other state asked for, `inet_diag_dump_icsk` skips the established
    /// hash, the walk that costs (a node's tens of thousands of
    /// connections).
    pub fn probe(&mut self) -> Result<()> {
        let (states, info) = (self.states, self.info);
        (self.states, self.info) = (1 << TcpState::Listen.to_u8(), false);
        let probed = self.dump(Table::Tcp, &|| false, &mut |_| {});
        (self.states, self.info) = (states, info);
        probed
    }

    /// The cgroup v2 id the kernel gives this process's sockets (Linux
    /// 5.8+; 0 where it does not say), asked of a socket made for the
    /// purpose: a UDP socket bound to any address and port 0, which no
    /// reader of the TCP tables sees, found by its inode in a dump of UDP
    /// sockets. It needs no cgroup filesystem, nor the right one mounted:
    /// a container's `/sys/fs/cgroup` may be cgroup v1, or another
    /// namespace's.
    pub fn own_cgroup(&mut self) -> Result<u64> {
        let udp = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| anyhow!("cannot make a UDP socket: {e}"))?;
        rustix::net::bind(&udp, &std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
            .map_err(|e| anyhow!("cannot bind a UDP socket: {e}"))?;
        let inode = rustix::fs::fstat(&udp)
            .map_err(|e| anyhow!("cannot stat a UDP socket: {e}"))?
            .st_ino;
        self.seq = self.seq.wrapping_add(1);
        // A bound, unconnected UDP socket is TCP_CLOSE (7) to the kernel.
        let req = request_for(AF_INET, IPPROTO_UDP, self.seq, false, 1 << 7);
        let mut found = 0;
        self.exchange(&req, "udp", &|| false, &mut |s| {
            if s.inode == inode {
                found = s.cgroup;
            }
        })?;
        Ok(found)
    }

    /// Dumps one family's TCP sockets into `visit`, in the kernel's order;
    /// gives up with [`super::Stopped`] once `stop()` says so (asked before
    /// each datagram).
    pub fn dump(
        &mut self,
        table: Table,
        stop: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(Socket),
    ) -> Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let req = request(table, self.seq, self.info, self.states);
        self.exchange(&req, table.name(), stop, visit)
    }

    /// Sends one dump request and reads its answer into `visit`.
    fn exchange(
        &mut self,
        req: &[u8],
        name: &str,
        stop: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(Socket),
    ) -> Result<()> {
        rustix::net::sendto(
            &self.fd,
            req,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )
        .map_err(|e| anyhow!("netlink: cannot ask for the {name} dump: {e}"))?;
        loop {
            if stop() {
                // The rest of this dump would come first on the next: start
                // that one on a new socket.
                let fresh =
                    Diag::open().map_err(|e| anyhow!("netlink: cannot reopen the socket: {e}"))?;
                self.fd = fresh.fd;
                return Err(super::Stopped.into());
            }
            let n = loop {
                match rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::empty()) {
                    Ok((_, n)) => break n,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => bail!("netlink: cannot read the {name} dump: {e}"),
                }
            };
            if n == 0 {
                bail!("netlink: the {name} dump ended without NLMSG_DONE");
            }
            if parse(&self.buf[..n], self.seq, visit)? == Parsed::Done {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// One `inet_diag_msg` in an `nlmsghdr`, as the kernel writes it.
    fn message(
        seq: u32,
        family: u8,
        state: u8,
        local: SocketAddr,
        remote: SocketAddr,
        uid: u32,
        inode: u32,
    ) -> Vec<u8> {
        let mut m = vec![0u8; MSG_LEN];
        m[0] = family;
        m[1] = state;
        m[4..6].copy_from_slice(&local.port().to_be_bytes());
        m[6..8].copy_from_slice(&remote.port().to_be_bytes());
        let put = |m: &mut [u8], at: usize, ip: IpAddr| match ip {
            IpAddr::V4(v4) => m[at..at + 4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => m[at..at + 16].copy_from_slice(&v6.octets()),
        };
        put(&mut m, 8, local.ip());
        put(&mut m, 24, remote.ip());
        m[64..68].copy_from_slice(&uid.to_ne_bytes());
        m[68..72].copy_from_slice(&inode.to_ne_bytes());
        header(seq, SOCK_DIAG_BY_FAMILY, &m)
    }

    fn header(seq: u32, kind: u16, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(body);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn all(buf: &[u8], seq: u32) -> Result<(Vec<Socket>, Parsed)> {
        let mut got = Vec::new();
        let p = parse(buf, seq, &mut |s| got.push(s))?;
        Ok((got, p))
    }

    #[test]
    fn the_request_asks_for_a_tcp_dump_of_the_states_that_can_block() {
        let r = request(Table::Tcp6, 7, false, STATES);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x301);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!((r[16], r[17], r[18]), (AF_INET6, IPPROTO_TCP, 0));
        assert_eq!(request(Table::Tcp, 1, false, STATES)[16], AF_INET);
        assert_eq!(
            request(Table::Tcp, 1, true, STATES)[18],
            2,
            "INET_DIAG_INFO"
        );
        assert_eq!(
            request(Table::Tcp, 1, false, ALL_STATES)[20..24],
            0x1FFEu32.to_ne_bytes(),
            "states 1 (ESTABLISHED) to 12 (NEW_SYN_RECV)"
        );
        // LISTEN, ESTABLISHED, CLOSE_WAIT... but no TIME_WAIT, no request sockets.
        for st in [1, 2, 4, 5, 7, 8, 9, 10, 11] {
            assert_ne!(STATES & (1 << st), 0, "state {st}");
        }
        for st in [0, 3, 6, 12] {
            assert_eq!(STATES & (1 << st), 0, "state {st}");
        }
    }

    #[test]
    fn messages_read_as_the_tables_read() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut buf = message(5, AF_INET, 10, a("0.0.0.0:8080"), a("0.0.0.0:0"), 1000, 77);
        buf.extend(message(
            5,
            AF_INET6,
            1,
            a("[::ffff:127.0.0.1]:9090"),
            a("[::ffff:127.0.0.6]:41000"),
            1337,
            78,
        ));
        let (got, p) = all(&buf, 5).unwrap();
        assert_eq!(p, Parsed::More);
        assert_eq!(
            got,
            [
                Socket {
                    state: TcpState::Listen,
                    local: a("0.0.0.0:8080"),
                    remote: a("0.0.0.0:0"),
                    uid: 1000,
                    inode: 77,
                    rx_queue: 0,
                    tx_queue: 0,
                    info: None,
                    cgroup: 0,
                },
                Socket {
                    state: TcpState::Established,
                    local: a("[::ffff:127.0.0.1]:9090"),
                    remote: a("[::ffff:127.0.0.6]:41000"),
                    uid: 1337,
                    inode: 78,
                    rx_queue: 0,
                    tx_queue: 0,
                    info: None,
                    cgroup: 0,
                },
            ]
        );
        buf.extend(header(5, NLMSG_DONE, &0i32.to_ne_bytes()));
        assert_eq!(all(&buf, 5).unwrap().1, Parsed::Done);
    }

    #[test]
    fn bad_messages_are_errors_naming_netlink_never_panics() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let good = message(1, AF_INET, 10, a("0.0.0.0:80"), a("0.0.0.0:0"), 0, 1);
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..3].to_vec(), "cut short at byte 0"),
            (good[..40].to_vec(), "where 40 are left"),
            (
                message(2, AF_INET, 10, a("0.0.0.0:80"), a("0.0.0.0:0"), 0, 1),
                "sequence 2",
            ),
            (
                message(1, AF_INET, 99, a("0.0.0.0:80"), a("0.0.0.0:0"), 0, 1),
                "unknown TCP state 0x63",
            ),
            (
                header(1, SOCK_DIAG_BY_FAMILY, &[0; 10]),
                "a socket message of 10 bytes",
            ),
            (
                header(1, NLMSG_ERROR, &(-1i32).to_ne_bytes()),
                "refused the dump: Operation not permitted",
            ),
            (header(1, NLMSG_ERROR, &[]), "an error message of 16 bytes"),
        ];
        let mut odd = good.clone();
        odd[16] = 7; // AF_UNIX's neighbour: no such family here
        cases.push((odd, "address family 7"));
        let mut tiny = good.clone();
        tiny[0..4].copy_from_slice(&3u32.to_ne_bytes());
        cases.push((tiny, "a message of 3 bytes"));
        for (buf, want) in cases {
            let err = format!("{:#}", all(&buf, 1).unwrap_err());
            assert!(
                err.starts_with("netlink: ") && err.contains(want),
                "{want}: {err}"
            );
        }
        // Every prefix of a good datagram: an error or fewer sockets, never a panic.
        let mut two = good.clone();
        two.extend(good.clone());
        for cut in 0..two.len() {
            let _ = all(&two[..cut], 1);
        }
    }

    /// Sockets this test makes, as the dump and `/proc` show them: the same
    /// rows, IPv4, IPv6 and v4-mapped (in this process's own namespace).
    #[test]
    fn the_dump_and_the_tables_agree_on_live_sockets() {
        use std::net::{TcpListener, TcpStream};
        let mut diag = match Diag::open() {
            Ok(d) => d,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "CI has netlink: {e}");
                crate::fixture::skipped(&format!("no NETLINK_SOCK_DIAG here ({e})"));
                return;
            }
        };
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c4 = TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let (s4, _) = v4.accept().unwrap();
        let mut mine = vec![
            v4.local_addr().unwrap(),
            c4.local_addr().unwrap(),
            s4.local_addr().unwrap(),
        ];
        let v6 = TcpListener::bind("[::]:0");
        let _keep = v6.as_ref().ok().map(|l| {
            let port = l.local_addr().unwrap().port();
            // A v4 client of a dual-stack listener: v4-mapped in tcp6.
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (s, _) = l.accept().unwrap();
            mine.push(l.local_addr().unwrap());
            mine.push(s.local_addr().unwrap());
            (c, s)
        });
        let never = || false;
        for table in [Table::Tcp, Table::Tcp6] {
            let mut dumped = Vec::new();
            diag.dump(table, &never, &mut |s| dumped.push(s)).unwrap();
            let mut read = Vec::new();
            crate::procread::read_table(Path::new("/proc"), table, &mut Vec::new(), |s| {
                read.push(s)
            })
            .unwrap();
            let ours = |rows: &[Socket]| -> Vec<Socket> {
                let mut v: Vec<Socket> = rows
                    .iter()
                    .filter(|s| s.inode != 0 && mine.contains(&s.local))
                    .cloned()
                    .collect();
                v.sort_by_key(|s| (s.inode, s.local));
                v
            };
            // The tables carry no cgroup; the dump carries this process's
            // on every one of its sockets.
            let mut dumped = ours(&dumped);
            assert!(dumped.iter().all(|s| s.cgroup != 0), "{dumped:?}");
            dumped.iter_mut().for_each(|s| s.cgroup = 0);
            assert_eq!(dumped, ours(&read), "{table:?}");
            let want = mine
                .iter()
                .filter(|a| a.is_ipv6() == (table == Table::Tcp6))
                .count();
            assert_eq!(ours(&read).len(), want, "{table:?}: {read:?}");
        }
    }

    #[test]
    fn tcp_info_is_read_from_its_attribute() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut m = message(
            1,
            AF_INET,
            1,
            a("10.0.0.1:8080"),
            a("10.0.0.2:5000"),
            1000,
            9,
        );
        // The message without its header, then two attributes: another
        // (INET_DIAG_SHUTDOWN, 1 byte, padded) and INET_DIAG_INFO.
        let mut body = m.split_off(NLMSG_HDR);
        body.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]);
        let mut info = vec![0u8; 232];
        info[LAST_DATA_RECV..LAST_DATA_RECV + 4].copy_from_slice(&1234u32.to_ne_bytes());
        info[DATA_SEGS_IN..DATA_SEGS_IN + 4].copy_from_slice(&98765u32.to_ne_bytes());
        body.extend_from_slice(&((4 + info.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        body.extend_from_slice(&info);
        let (got, _) = all(&header(1, SOCK_DIAG_BY_FAMILY, &body), 1).unwrap();
        assert_eq!(
            got[0].info,
            Some(TcpInfo {
                last_data_recv_ms: 1234,
                data_segs_in: 98765
            })
        );
        // An older kernel's short tcp_info: no segment count, still the time.
        let short = &body[..body.len() - 232 + 100];
        let mut short = short.to_vec();
        let at = short.len() - 100 - 4;
        short[at..at + 2].copy_from_slice(&104u16.to_ne_bytes());
        let (got, _) = all(&header(1, SOCK_DIAG_BY_FAMILY, &short), 1).unwrap();
        assert_eq!(
            got[0].info.map(|i| (i.last_data_recv_ms, i.data_segs_in)),
            Some((1234, 0))
        );
        // An attribute longer than what is left: an error.
        let mut bad = body.clone();
        bad[MSG_LEN + 8..MSG_LEN + 10].copy_from_slice(&999u16.to_ne_bytes());
        let err = format!(
            "{:#}",
            all(&header(1, SOCK_DIAG_BY_FAMILY, &bad), 1).unwrap_err()
        );
        assert!(err.contains("an attribute of 999 bytes"), "{err}");
    }

    #[test]
    fn the_cgroup_id_is_read_from_its_attribute_padded_or_not() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let m = message(1, AF_INET, 10, a("0.0.0.0:80"), a("0.0.0.0:0"), 0, 9);
        let base = m[NLMSG_HDR..].to_vec();
        let id = 0x1234_5678_9abc_u64;
        let cgroup = |pad: bool| {
            let mut body = base.clone();
            if pad {
                // INET_DIAG_PAD (14), as nla_put_u64_64bit adds where the
                // u64 would not be 8-aligned on a strict architecture.
                body.extend_from_slice(&[4, 0, 14, 0]);
            }
            body.extend_from_slice(&12u16.to_ne_bytes());
            body.extend_from_slice(&INET_DIAG_CGROUP_ID.to_ne_bytes());
            body.extend_from_slice(&id.to_ne_bytes());
            let (got, _) = all(&header(1, SOCK_DIAG_BY_FAMILY, &body), 1).unwrap();
            got[0].cgroup
        };
        assert_eq!((cgroup(false), cgroup(true)), (id, id));
        // None said: 0.
        let (got, _) = all(&header(1, SOCK_DIAG_BY_FAMILY, &base), 1).unwrap();
        assert_eq!(got[0].cgroup, 0);
    }

    /// Where this machine's cgroup v2 hierarchy is mounted, if it is.
    fn cgroup2_mount() -> Option<std::path::PathBuf> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| {
                l.split(" - ")
                    .nth(1)
                    .is_some_and(|f| f.starts_with("cgroup2 "))
            })
            .and_then(|l| l.split(' ').nth(4).map(std::path::PathBuf::from))
    }

    /// Live, as root on a node with a cgroup v2 hierarchy: a socket made by
    /// a process in a cgroup of its own carries that cgroup's id, which on
    /// 64-bit kernels is the cgroup directory's inode number.
    #[test]
    fn a_sockets_cgroup_is_the_cgroup_of_the_process_that_made_it() {
        use std::os::unix::fs::MetadataExt;
        let mount = cgroup2_mount();
        let (Some(mount), Ok(diag)) = (mount, Diag::open()) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI has cgroup2 and netlink"
            );
            crate::fixture::skipped("no cgroup v2 hierarchy or no NETLINK_SOCK_DIAG here");
            return;
        };
        let group = mount.join(format!("prestop-wait-test-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&group) {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root: {e}");
            crate::fixture::skipped(&format!("cannot make a cgroup ({e}): needs root"));
            return;
        }
        let listener = std::process::Command::new("/bin/sh")
            .arg("-c")
            // Joins the group, then listens on an ephemeral port and says
            // which, as runc exec joins a container's cgroup and execs.
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec /usr/bin/python3 -c \"import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(30)\"",
                group.display()
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        struct Cleanup(std::process::Child, std::path::PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
                let _ = std::fs::remove_dir(&self.1);
            }
        }
        let mut cleanup = Cleanup(listener, group.clone());
        let mut port = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(cleanup.0.stdout.take().unwrap()),
            &mut port,
        )
        .unwrap();
        let port: u16 = port.trim().parse().unwrap();
        let mut diag = diag.with_states(ALL_STATES);
        let mut seen = None;
        diag.dump(Table::Tcp, &|| false, &mut |x| {
            // Its listener only: another socket may have the same port
            // on another address, or as a connection's end.
            if x.state == TcpState::Listen && x.local.port() == port {
                seen = Some(x.cgroup);
            }
        })
        .unwrap();
        let want = std::fs::metadata(&group).unwrap().ino();
        assert_eq!(
            seen,
            Some(want),
            "the listener on {port} in {}",
            group.display()
        );
        // And a process in that group asks the kernel its own cgroup: this
        // test binary again, running only `own_cgroup_is_this_processs_cgroup`.
        let me = std::env::current_exe().unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" --exact procread::netlink::tests::own_cgroup_is_this_processs_cgroup --nocapture",
                group.display()
            ))
            .arg(&me)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(cleanup);
    }

    /// Live: the kernel's word on this process's own cgroup is the inode of
    /// the cgroup v2 directory `/proc/self/cgroup` names, where that
    /// hierarchy is mounted here.
    #[test]
    fn own_cgroup_is_this_processs_cgroup() {
        use std::os::unix::fs::MetadataExt;
        let Ok(mut diag) = Diag::open() else {
            assert!(std::env::var_os("CI").is_none(), "CI has netlink");
            crate::fixture::skipped("no NETLINK_SOCK_DIAG here");
            return;
        };
        let id = diag.own_cgroup().unwrap();
        let path = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_owned));
        let mount = cgroup2_mount();
        let (Some(path), Some(mount)) = (path, mount) else {
            assert!(std::env::var_os("CI").is_none(), "CI has cgroup2");
            crate::fixture::skipped("no cgroup v2 hierarchy here");
            return;
        };
        let dir = mount.join(path.trim_start_matches('/'));
        assert_eq!(
            id,
            std::fs::metadata(&dir).unwrap().ino(),
            "{}",
            dir.display()
        );
        // A second ask makes no second socket linger, and says the same.
        assert_eq!(diag.own_cgroup().unwrap(), id);
    }

    /// Live: a connection that received data says how many segments, and
    /// how long ago the last.
    #[test]
    fn tcp_info_counts_what_arrived() {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let Ok(diag) = Diag::open() else {
            assert!(std::env::var_os("CI").is_none(), "CI has netlink");
            return;
        };
        let mut diag = diag.with_info();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        c.set_nodelay(true).unwrap();
        let (mut s, _) = l.accept().unwrap();
        // Three requests, each read before the next is sent: three
        // segments, all arrived by the dump (no sleep to guess by).
        for _ in 0..3 {
            c.write_all(&[7u8; 500]).unwrap();
            s.read_exact(&mut [0u8; 500]).unwrap();
        }
        let mut seen = None;
        diag.dump(Table::Tcp, &|| false, &mut |x| {
            if x.local == s.local_addr().unwrap() && x.remote == s.peer_addr().unwrap() {
                seen = x.info;
            }
        })
        .unwrap();
        let info = seen.expect("the accepted socket, with its tcp_info");
        assert_eq!(info.data_segs_in, 3);
        assert!(info.last_data_recv_ms < 5_000, "{info:?}");
        drop(c);
    }

    #[test]
    fn a_probe_sees_listeners_only_and_leaves_the_request_as_it_was() {
        use std::net::{TcpListener, TcpStream};
        let Ok(diag) = Diag::open() else {
            assert!(std::env::var_os("CI").is_none(), "CI has netlink");
            return;
        };
        let mut diag = diag.with_info().with_states(ALL_STATES);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        diag.probe().unwrap();
        assert_eq!((diag.info, diag.states), (true, ALL_STATES));
        // What a probe asks for: this machine's listeners, no connection.
        let (states, info) = (diag.states, diag.info);
        (diag.states, diag.info) = (1 << TcpState::Listen.to_u8(), false);
        let mut seen = Vec::new();
        diag.dump(Table::Tcp, &|| false, &mut |s| seen.push(s.state))
            .unwrap();
        (diag.states, diag.info) = (states, info);
        assert!(seen.contains(&TcpState::Listen));
        assert!(seen.iter().all(|s| *s == TcpState::Listen), "{seen:?}");
    }
}
