//! Compact keys and sets for sockets, shared by the judgements that read
//! busy tables (deciding, `wait`'s tally, `quiesce`'s watch): a fast mix of
//! addresses into 8 bytes, and a set of ports in a fixed 8 KiB. A leaf.

use std::net::{IpAddr, SocketAddr};

/// A bit per TCP port: 8 KiB, whatever the table holds.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet(Box<[u64; 65536 / 64]>);

impl PortSet {
    /// The empty set.
    pub fn new() -> Self {
        PortSet(Box::new([0; 65536 / 64]))
    }

    /// Adds `port`.
    pub fn insert(&mut self, port: u16) {
        let p = usize::from(port);
        self.0[p / 64] |= 1 << (p % 64);
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        let p = usize::from(port);
        self.0[p / 64] & (1 << (p % 64)) != 0
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        self.0.fill(0);
    }

    /// The ports in the set, ascending.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|&p| self.contains(p))
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet::new()
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.ports()).finish()
    }
}

/// A connection's (local, remote) pair as 8 bytes.
pub fn connection_key(local: SocketAddr, remote: SocketAddr) -> u64 {
    let mut h = Mix::default();
    h.addr(local);
    h.addr(remote);
    h.finish()
}

/// A fast 64-bit mix of a few integers, for the Bloom filter's keys and
/// the fingerprint of a poll: every row of a busy table goes through it, and
/// std's SipHash (built to resist chosen keys, which neither needs: a
/// collision can at most mislabel a direction or hide one log line, never
/// change what blocks) was a visible share of a netlink poll.
#[derive(Debug, Clone, Copy)]
pub struct Mix(u64);

impl Default for Mix {
    fn default() -> Self {
        Mix(0x243F_6A88_85A3_08D3)
    }
}

impl Mix {
    /// Takes in one value.
    pub fn add(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }

    /// Takes in an address and its port.
    pub fn addr(&mut self, a: SocketAddr) {
        match a.ip() {
            // Bit 32 tells an IPv4 address from an IPv6 address's half.
            IpAddr::V4(v4) => self.add(u64::from(u32::from(v4)) | 1 << 32),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.add((bits >> 64) as u64);
                self.add(bits as u64);
            }
        }
        self.add(u64::from(a.port()));
    }

    /// The mixed value, its bits spread (a final avalanche).
    pub fn finish(self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        x ^ (x >> 33)
    }
}
