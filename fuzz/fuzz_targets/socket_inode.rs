//! `procread::socket_inode` against an independent reference.
//!
//! Invariants: `Some` only for `socket:[` ... `]` with 1..=20 ASCII digits
//! between that fit in a u64, and then the value is those digits; the
//! canonical form `socket:[n]` gives `n` back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prestop_wait::procread::socket_inode;

fn reference(b: &[u8]) -> Option<u64> {
    const P: &[u8] = b"socket:[";
    if b.len() < P.len() + 2 || &b[..P.len()] != P || b[b.len() - 1] != b']' {
        return None;
    }
    let digits = &b[P.len()..b.len() - 1];
    // The kernel prints `socket:[%lu]`: at most 20 digits. Longer runs (only
    // possible with leading zeros) are rejected by design.
    if digits.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    let got = socket_inode(data);
    assert_eq!(
        got,
        reference(data),
        "input {:?}",
        String::from_utf8_lossy(data)
    );
    if let Some(n) = got {
        assert!(data.starts_with(b"socket:[") && data.ends_with(b"]"));
        assert_eq!(socket_inode(format!("socket:[{n}]").as_bytes()), Some(n));
    }
});
