//! The kernel's word on every TCP socket it destroys (what `ss -E` shows):
//! `NETLINK_SOCK_DIAG`'s destroy multicast groups.
//!
//! A connection that a client opens, uses and closes between two looks
//! leaves nothing in a dump taken after it (with the client closing first,
//! even its TIME_WAIT is on the client's side), so a reader that only looks
//! is blind to one-request-per-connection traffic. The kernel broadcasts
//! each full socket's destruction, with its addresses, to whoever joined the
//! group (`sock_diag_broadcast_destroy`, from the socket's destructor; a
//! work queue sends it a moment later). Joining needs no privilege: the
//! family is registered with `NL_CFG_F_NONROOT_RECV`. The messages are
//! `inet_diag_msg`s of sequence 0, read by [`super::netlink::parse`].

use anyhow::{Result, anyhow};
use rustix::fd::OwnedFd;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{RecvFlags, SocketFlags};

use super::net::Socket;
use super::netlink::{parse, sock_diag_socket};

/// `SKNLGRP_INET_TCP_DESTROY` (1) and `SKNLGRP_INET6_TCP_DESTROY` (3), as a
/// bind mask (bit `group - 1`).
const TCP_DESTROY_GROUPS: u32 = (1 << 0) | (1 << 2);

/// How much the kernel may queue for us between two looks: at 64 bytes and
/// more per event (a message with `tcp_info` is about 330), a burst of
/// thousands of closes fits. Capped by `net.core.rmem_max` unprivileged.
const RCVBUF: usize = 4 << 20;

/// A subscription to the destroy events of TCP sockets, both families.
#[derive(Debug)]
pub struct Destroys {
    fd: OwnedFd,
    buf: Vec<u8>,
}

/// What one drain of the queue found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every event the kernel sent since the last drain.
    Whole,
    /// The queue overflowed (`ENOBUFS`): some events were lost.
    Lost,
}

impl Destroys {
    /// Joins the groups. Fails where netlink is denied (a seccomp profile,
    /// gVisor) or the kernel refuses the groups.
    pub fn subscribe() -> Result<Destroys> {
        let fd = sock_diag_socket(SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)
            .map_err(|e| anyhow!("cannot open a NETLINK_SOCK_DIAG socket: {e}"))?;
        // A smaller buffer than asked for only means an earlier overflow,
        // which is said when it happens.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, RCVBUF);
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, TCP_DESTROY_GROUPS))
            .map_err(|e| anyhow!("cannot join the TCP destroy groups: {e}"))?;
        Ok(Destroys {
            fd,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Waits up to `d` for an event whose socket `wanted` takes, draining
    /// every event that comes meanwhile: whether one came (the wait ends
    /// there). An overflow or a failed read ends it too, as if one had:
    /// the caller looks again rather than trust what it missed.
    pub fn wait_for(&mut self, d: std::time::Duration, wanted: &dyn Fn(&Socket) -> bool) -> bool {
        let end = std::time::Instant::now() + d;
        loop {
            let mut found = false;
            match self.drain(&mut |s| found |= wanted(&s)) {
                Ok(Drained::Whole) if !found => {}
                _ => return true,
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let timeout = rustix::event::Timespec {
                tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: left.subsec_nanos().into(),
            };
            let mut fds = [rustix::event::PollFd::new(
                &self.fd,
                rustix::event::PollFlags::IN,
            )];
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
        }
    }

    /// Hands every queued event's socket to `visit`, without waiting.
    /// Errors on a message that makes no sense, or a read that fails
    /// otherwise than with an empty queue or an overflow.
    pub fn drain(&mut self, visit: &mut dyn FnMut(Socket)) -> Result<Drained> {
        let mut drained = Drained::Whole;
        loop {
            match rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::DONTWAIT) {
                Ok((_, 0)) => return Ok(drained),
                Ok((_, n)) => {
                    // Events are sent one a datagram, each "done" by itself.
                    if let Err(e) = parse(&self.buf[..n], 0, visit) {
                        return Err(e.context("a TCP destroy event"));
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(drained),
                Err(rustix::io::Errno::INTR) => {}
                // The socket goes on after an overflow; the events before
                // it are lost.
                Err(rustix::io::Errno::NOBUFS) => drained = Drained::Lost,
                Err(e) => return Err(anyhow!("netlink: cannot read TCP destroy events: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A subscription, or `None` with the skip said (a failure under CI).
    fn subscribed() -> Option<Destroys> {
        match Destroys::subscribe() {
            Ok(d) => Some(d),
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "CI has netlink: {e:#}");
                crate::fixture::skipped(&format!("no destroy events here: {e:#}"));
                None
            }
        }
    }

    /// Live: a wait for an event that does not come lasts its time; one
    /// for a connection that closes meanwhile ends at its close. The
    /// groups carry the whole network namespace's events (the other tests
    /// of this process close connections in parallel), so both waits
    /// want only this test's server.
    #[test]
    fn a_wait_ends_at_the_wanted_close() {
        let Some(mut d) = subscribed() else {
            return;
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let ours = move |s: &Socket| s.local == server || s.remote == server;
        let t = std::time::Instant::now();
        assert!(!d.wait_for(std::time::Duration::from_millis(50), &ours));
        assert!(t.elapsed() >= std::time::Duration::from_millis(50));
        let client = TcpStream::connect(server).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(client);
            drop(accepted);
        });
        // The promise: the wait ends at the close, not at its 30s end (a
        // loaded machine may take seconds to run the closer at all).
        let t = std::time::Instant::now();
        assert!(d.wait_for(std::time::Duration::from_secs(30), &ours));
        let took = t.elapsed();
        closer.join().unwrap();
        assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    }

    /// Live: a connection opened and closed at once is reported, both
    /// ends, with its addresses; a drain with nothing queued returns at
    /// once.
    #[test]
    fn a_closed_connection_is_reported_with_its_addresses() {
        let Some(mut d) = subscribed() else {
            return;
        };
        let mut seen = Vec::new();
        d.drain(&mut |s| seen.push(s)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let client_addr = client.local_addr().unwrap();
        let (accepted, _) = listener.accept().unwrap();
        drop(client);
        drop(accepted);
        // The kernel sends from a work queue: a moment later.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let ours = |seen: &[Socket]| {
            seen.iter()
                .filter(|s| {
                    (s.local == server && s.remote == client_addr)
                        || (s.local == client_addr && s.remote == server)
                })
                .count()
        };
        while ours(&seen) < 2 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
            assert_eq!(d.drain(&mut |s| seen.push(s)).unwrap(), Drained::Whole);
        }
        assert_eq!(ours(&seen), 2, "{seen:?}");
        // Each carries its tcp_info as it died: what dates its last data.
        assert!(
            seen.iter()
                .filter(|s| s.local == server && s.remote == client_addr)
                .all(|s| s.info.is_some()),
            "{seen:?}"
        );
    }
}
