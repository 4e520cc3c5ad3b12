//! `procread::parse_line` over every line of the input.
//!
//! Invariants beyond "no panic":
//! - `Ok(None)` only for blank lines and the `sl ...` header;
//! - a trailing `\n` (as `read_table` passes lines) changes nothing;
//! - `Ok(Some(s))`: re-encoding `s` in the kernel's format and parsing again
//!   gives `s` back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prestop_wait::procread::parse_line;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (slot, line) in text.split('\n').enumerate() {
        if common::skip_known() && common::hits_known_bug(line) {
            continue;
        }
        let got = parse_line(line);
        let with_nl = parse_line(&format!("{line}\n"));
        match (&got, &with_nl) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "trailing newline changed the result of {line:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("trailing newline changed Ok/Err for {line:?}: {got:?} vs {with_nl:?}"),
        }
        match got {
            Ok(None) => {
                let first = line.split_ascii_whitespace().next();
                assert!(
                    first.is_none() || first == Some("sl"),
                    "{line:?} skipped as a header/blank line"
                );
            }
            Ok(Some(s)) => {
                let again = common::kernel_line(slot, &s);
                match parse_line(&again) {
                    Ok(Some(t)) => assert_eq!(s, t, "{line:?} -> {again:?} does not round-trip"),
                    other => panic!(
                        "{line:?} parsed as {s:?}, but its re-encoding {again:?} gives {other:?}"
                    ),
                }
            }
            Err(_) => {}
        }
    }
});
