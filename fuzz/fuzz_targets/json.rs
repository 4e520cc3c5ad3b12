//! `render::json_string` and `render::write_json` on arbitrary process names.
//!
//! Invariants: `json_string` appends (never clobbers) one JSON string literal
//! that a strict validator accepts, with no raw control characters or DEL,
//! that decodes back to the input, and that serde_json agrees with; the
//! whole `write_json` document, for a verdict `decide` made from fuzzed
//! rows, is one line of valid JSON whose every field is the decided entry's
//! (`process` is the holder's name: comm, else argv0), and `write_text` does
//! not panic on the same verdict.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use prestop_wait::decide::{Entry, PodFacts, Rules};
use prestop_wait::pass;
use prestop_wait::procread::{Holder, Holders, Socket, TcpState};
use prestop_wait::render::{json_string, write_json, write_text};
use prestop_wait::sink::Collect;

#[path = "common.rs"]
mod common;

fn check_literal(name: &str) {
    let mut out = b"prefix:".to_vec();
    json_string(&mut out, name);
    let out = String::from_utf8(out).expect("json_string wrote invalid UTF-8");
    let lit = out
        .strip_prefix("prefix:")
        .expect("json_string clobbered the buffer");
    assert!(
        !lit.chars().any(|c| (c as u32) < 0x20 || c == '\u{7f}'),
        "raw control character in {lit:?}"
    );
    match common::decode_json_string(lit) {
        Ok(back) => assert_eq!(back, name, "{lit:?} decodes to something else"),
        Err(e) => panic!("invalid JSON string {lit:?} for {name:?}: {e}"),
    }
    let serde: String = serde_json::from_str(lit).expect("serde_json rejects the literal");
    assert_eq!(serde, name);
}

fn addr(u: &mut Unstructured<'_>, v6: bool) -> Result<SocketAddr> {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(u.arbitrary::<[u8; 4]>()?))
    };
    Ok(SocketAddr::new(ip, u.arbitrary()?))
}

/// One fuzzed row, with up to two visible holders of fuzzed names.
fn row(u: &mut Unstructured<'_>, inode: u64, pairs: &mut Vec<(u64, Holder)>) -> Result<Socket> {
    let v6 = u.arbitrary()?;
    let socket = Socket {
        state: TcpState::from_u8(u.int_in_range(1..=12)?).unwrap(),
        local: addr(u, v6)?,
        remote: addr(u, v6)?,
        uid: *u.choose(&[0, 1000, 1337])?,
        inode,
        rx_queue: 0,
        tx_queue: 0,
        info: None,
        cgroup: *u.choose(&[0, 50, 60])?,
    };
    for _ in 0..u.int_in_range(0..=2)? {
        let name = if u.arbitrary()? {
            "envoy".to_owned()
        } else {
            u.arbitrary::<String>()?
        };
        pairs.push((
            inode,
            Holder::new(u.arbitrary()?, &name, &u.arbitrary::<String>()?),
        ));
    }
    Ok(socket)
}

/// Every field of one JSON entry against the decided entry it came from.
fn check_entry_json(v: &serde_json::Value, e: &Entry) {
    match e.holders.first() {
        Some(h) => {
            let name = if h.comm().is_empty() {
                h.argv0()
            } else {
                h.comm()
            };
            assert_eq!(v["process"].as_str(), Some(name), "{v}");
            assert_eq!(v["pid"].as_i64(), Some(i64::from(h.pid)), "{v}");
        }
        None => {
            assert!(v["process"].is_null() && v["pid"].is_null(), "{v}");
        }
    }
    assert_eq!(v["uid"].as_u64(), Some(u64::from(e.socket.uid)));
    assert_eq!(v["inode"].as_u64(), Some(e.socket.inode));
    assert_eq!(v["direction"].as_str(), Some(e.direction.as_str()), "{v}");
    assert_eq!(v["to_proxy"].as_bool(), Some(e.to_proxy()), "{v}");
    assert_eq!(v["reason"].as_str(), e.reason.map(|r| r.as_str()), "{v}");
    assert_eq!(v["this_container"].as_bool(), e.container, "{v}");
    let cgroup = e.container.map(|_| e.socket.cgroup);
    assert_eq!(v["cgroup"].as_u64(), cgroup, "{v}");
}

/// A verdict decided from fuzzed rows, written as JSON and read back.
fn verdict_round(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let all: bool = u.arbitrary()?;
    let rules = Rules {
        proxy_uids: vec![1337],
        proxy_names: vec!["envoy".into()],
        ignore_uids: vec![*u.choose(&[0, 1000])?],
        ignore_ports: vec![u.arbitrary()?],
        listen_only: u.arbitrary()?,
        proxy_uids_given: u.arbitrary()?,
        proxy_names_given: u.arbitrary()?,
        own_cgroup: *u.choose(&[None, Some(50)])?,
    };
    let mut rows = Vec::new();
    let mut pairs = Vec::new();
    let mut facts = PodFacts::default();
    for inode in 1..=u.int_in_range(0..=4)? {
        let s = row(&mut u, inode, &mut pairs)?;
        facts.note(&s, &rules);
        rows.push(s);
    }
    let mut holders = Holders::from_pairs(pairs);
    holders.uninspected_processes = u.arbitrary()?;
    holders.unreadable_fds = u.arbitrary()?;
    let v = pass::decide_rows(&[&rows], &holders, &rules, facts, Collect::new(true)).unwrap();

    let mut out = Vec::new();
    write_json(
        &mut out,
        &v,
        all,
        &prestop_wait::decide::Containers::Flags(String::from_utf8_lossy(data).into_owned()),
    )
    .unwrap();
    let text = String::from_utf8(out).expect("write_json wrote invalid UTF-8");
    let body = text.strip_suffix('\n').expect("no trailing newline");
    assert!(
        !body.contains('\n'),
        "raw newline inside the JSON line: {body:?}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("invalid JSON {body:?}: {e}"));
    let blocking = doc["blocking"].as_array().expect("blocking array");
    assert_eq!(blocking.len(), v.blocking_count());
    for (j, e) in blocking.iter().zip(v.blocking()) {
        check_entry_json(j, &e);
    }
    if all {
        let ignored = doc["ignored"].as_array().expect("ignored array");
        assert_eq!(ignored.len(), v.ignored().count());
        for (j, e) in ignored.iter().zip(v.ignored()) {
            check_entry_json(j, &e);
        }
    } else {
        assert!(doc.get("ignored").is_none());
    }
    assert_eq!(
        doc["uninspected_processes"].as_u64(),
        Some(v.trailer.uninspected_processes as u64)
    );
    assert_eq!(
        doc["unreadable_fds"].as_u64(),
        Some(v.trailer.unreadable_fds as u64)
    );

    let mut out = Vec::new();
    write_text(&mut out, &v, all).unwrap();
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // Bytes as a lossy name (what `comm` reading does), and as exact UTF-8.
    check_literal(&String::from_utf8_lossy(data));
    if let Ok(s) = std::str::from_utf8(data) {
        check_literal(s);
    }
    let _ = verdict_round(data);
});
