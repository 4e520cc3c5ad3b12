//! `procread::netlink::parse` on arbitrary bytes as one datagram of a dump.
//!
//! Invariants: never a panic; an error names netlink; a datagram that parses
//! visits only sockets of a known family whose inode fits in 32 bits (the
//! message's field); and a parse stops at `NLMSG_DONE`: bytes after it are
//! never read (the same visits with garbage appended after a DONE).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prestop_wait::procread::netlink::{Parsed, parse};

fuzz_target!(|data: &[u8]| {
    let seq = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap()));
    let mut got = Vec::new();
    match parse(data, seq, &mut |s| got.push(s)) {
        Ok(p) => {
            for s in &got {
                assert!(s.inode <= u64::from(u32::MAX), "{s:?}");
                assert_eq!(s.local.is_ipv4(), s.remote.is_ipv4(), "{s:?}");
            }
            if p == Parsed::Done {
                let mut more = data.to_vec();
                more.extend_from_slice(&[0xff; 7]);
                let mut again = Vec::new();
                assert_eq!(
                    parse(&more, seq, &mut |s| again.push(s)).ok(),
                    Some(Parsed::Done)
                );
                assert_eq!(again, got);
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.starts_with("netlink: "), "{msg}");
        }
    }
});
