//! `procread::read_table` over the raw input bytes written as `<root>/net/tcp`.
//!
//! Invariant: it visits exactly the sockets a line-by-line model visits
//! (lines split after each `\n`, every line through `parse_line`) and fails
//! exactly when the model meets a line longer than `LINE_MAX` (newline
//! included), not UTF-8 or not parsing; on failure the error names `net/tcp`
//! and the 1-based line number.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prestop_wait::procread::{LINE_MAX, Table, parse_line, read_table};

#[path = "common.rs"]
mod common;

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("prestop-wait-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net")).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    if common::skip_known()
        && data
            .split(|&b| b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok())
            .any(common::hits_known_bug)
    {
        return;
    }
    let root = root();
    std::fs::write(root.join("net/tcp"), data).unwrap();

    let mut want = Vec::new();
    let mut want_err_line = None;
    for (i, line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        let ok = std::str::from_utf8(line)
            .ok()
            .filter(|_| line.len() <= LINE_MAX)
            .and_then(|l| parse_line(l).ok());
        match ok {
            Some(Some(s)) => want.push(s),
            Some(None) => {}
            None => {
                want_err_line = Some(i + 1);
                break;
            }
        }
    }

    let mut buf = Vec::new();
    let mut got = Vec::new();
    let res = read_table(root, Table::Tcp, &mut buf, |s| got.push(s));
    assert_eq!(
        got, want,
        "visited sockets differ from the line-by-line model"
    );
    match (res, want_err_line) {
        (Ok(()), None) => {}
        (Err(e), Some(n)) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("net/tcp"),
                "error does not name the file: {msg}"
            );
            // Invalid UTF-8 is reported by the reader ("cannot read ... line N"),
            // parse errors as "... line N: ...".
            assert!(
                msg.contains(&format!(" line {n}")),
                "expected line {n} in {msg}"
            );
        }
        (res, want) => panic!("read_table returned {res:?}, model expected error at line {want:?}"),
    }
});
