//! Property tests: no input to the table and fd-link parsers panics; valid
//! rows round-trip. Runs in the normal `cargo test` (the cargo-fuzz target in
//! fuzz/ explores the same functions for longer).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use prestop_wait::procread::{self, Table, TcpState};
use proptest::prelude::*;

/// Tokens that look like table columns, including the near misses.
fn column() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9A-Fa-f]{0,40}",
        "[0-9A-F]{8}:[0-9A-F]{4}",
        "[0-9A-F]{32}:[0-9A-F]{1,5}",
        "[0-9]{1,25}",
        "-[0-9]{1,5}",
        "[0-9]{1,3}:",
        "[0-9A-F]{1,9}:[0-9A-F]{1,9}",
        ".{0,12}",
    ]
}

fn row_text() -> impl Strategy<Value = String> {
    prop::collection::vec(column(), 0..20).prop_map(|cols| cols.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn parse_line_never_panics_on_arbitrary_text(line in ".{0,300}") {
        let _ = procread::parse_line(&line);
    }

    #[test]
    fn parse_line_never_panics_on_column_soup(line in row_text()) {
        let _ = procread::parse_line(&line);
    }

    #[test]
    fn socket_inode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = procread::socket_inode(&bytes);
        let mut link = b"socket:[".to_vec();
        link.extend_from_slice(&bytes);
        link.push(b']');
        let _ = procread::socket_inode(&link);
    }

    #[test]
    fn valid_rows_round_trip(
        v6 in any::<bool>(),
        a in any::<[u8; 16]>(),
        b in any::<[u8; 16]>(),
        lport in any::<u16>(),
        rport in any::<u16>(),
        state in 1u8..=12,
        uid in any::<u32>(),
        inode in any::<u64>(),
        tx in any::<u32>(),
        rx in any::<u32>(),
    ) {
        let (local, remote) = if v6 {
            (SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), lport), SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), rport))
        } else {
            let (a4, b4) = ([a[0], a[1], a[2], a[3]], [b[0], b[1], b[2], b[3]]);
            (SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a4)), lport), SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b4)), rport))
        };
        let st = TcpState::from_u8(state).unwrap();
        let mut row = prestop_wait::fixture::socket(&local.to_string(), &remote.to_string(), st, uid, inode);
        (row.tx_queue, row.rx_queue) = (tx, rx);
        let line = prestop_wait::fixture::kernel_row(0, &row);
        let s = procread::parse_line(&line).unwrap().unwrap();
        prop_assert_eq!((s.tx_queue, s.rx_queue), (tx, rx));
        prop_assert_eq!(s.local, local);
        prop_assert_eq!(s.remote, remote);
        prop_assert_eq!(s.state.to_u8(), state);
        prop_assert_eq!((s.uid, s.inode), (uid, inode));
    }

    #[test]
    fn truncated_valid_rows_are_clean_errors(cut in 0usize..200, state in 1u8..=12) {
        let st = TcpState::from_u8(state).unwrap();
        let line = common::row(3, "[::ffff:10.0.0.1]:443", "[2001:db8::1]:50000", st, 1000, 77);
        let cut = cut.min(line.len());
        // Only a cut inside or after the inode column can still parse.
        if let Ok(Some(s)) = procread::parse_line(&line[..cut]) {
            prop_assert!(s.inode == 77 || s.inode == 7, "{:?}", s);
        }
    }

    #[test]
    fn netlink_messages_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), seq in 0u32..3) {
        let mut n = 0usize;
        match procread::netlink::parse(&bytes, seq, &mut |_| n += 1) {
            Ok(_) => prop_assert!(n <= bytes.len() / 88),
            Err(e) => {
                let msg = format!("{e:#}");
                prop_assert!(msg.starts_with("netlink: "), "{}", msg);
            }
        }
    }

    #[test]
    fn read_table_never_panics_on_arbitrary_files(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("net/tcp"), &bytes).unwrap();
        let mut buf = Vec::new();
        let mut n = 0usize;
        match procread::read_table(dir.path(), Table::Tcp, &mut buf, |_| n += 1) {
            Ok(()) => prop_assert!(n <= bytes.iter().filter(|&&b| b == b'\n').count() + 1),
            Err(e) => {
                let msg = format!("{e:#}");
                prop_assert!(msg.contains("net/tcp line "), "{}", msg);
                prop_assert!(!msg.contains('\n'), "{}", msg);
            }
        }
    }
}

#[test]
fn ipv6_row_in_the_ipv4_table_is_read_as_ipv6() {
    // The kernel never mixes families, but a fixture or a future kernel might;
    // the row is parsed by its own address length, never a panic.
    let line = common::row(0, "[::1]:80", "[::]:0", common::LISTEN, 0, 5);
    let s = procread::parse_line(&line).unwrap().unwrap();
    assert!(s.local.is_ipv6());
}

/// Every crash input the fuzzers ever found (fuzz/regressions/<target>/) runs
/// here too, so a fixed bug stays fixed without a nightly toolchain.
#[test]
fn fuzz_regressions_stay_fixed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for target in ["parse_line", "read_table", "socket_inode"] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            match target {
                "socket_inode" => {
                    let _ = procread::socket_inode(&bytes);
                }
                "read_table" => {
                    let dir = tempfile::tempdir().unwrap();
                    std::fs::create_dir(dir.path().join("net")).unwrap();
                    std::fs::write(dir.path().join("net/tcp"), &bytes).unwrap();
                    let _ = procread::read_table(dir.path(), Table::Tcp, &mut Vec::new(), |_| {});
                }
                _ => {
                    for line in String::from_utf8_lossy(&bytes).lines() {
                        let _ = procread::parse_line(line);
                    }
                }
            }
            replayed += 1;
        }
    }
    assert!(
        replayed >= 2,
        "fuzz/regressions went missing: {replayed} inputs"
    );
}
