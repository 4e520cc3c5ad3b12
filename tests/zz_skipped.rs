//! The last test binary of a `cargo test` run (cargo runs them in name
//! order): counts the tests the run skipped and says which, on stderr past
//! the harness's capture, so that "N passed" never hides what did not run.
//! Each skip was noted by `prestop_wait::fixture::skipped` under this
//! run's cargo pid. Under `CI=true` there are none: a skip fails its test.

use std::io::Write;

#[test]
fn the_run_says_what_it_skipped() {
    let cargo = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    let Some(log) = prestop_wait::fixture::skip_log(cargo) else {
        return;
    };
    let noted = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let skipped: Vec<&str> = noted.lines().collect();
    let mut err = std::io::stderr();
    let _ = match skipped.len() {
        0 => writeln!(err, "skipped: none; every test of this run ran"),
        n => writeln!(
            err,
            "skipped: {n} test{} of this run did not run:\n  {}",
            if n == 1 { "" } else { "s" },
            skipped.join("\n  ")
        ),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert!(skipped.is_empty(), "skips under CI=true: {noted}");
    }
}
