//! `install DIR`, the init-container step, through the binary: what it
//! copies, that it can run again, and what happens as another uid.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn installs_an_identical_runnable_copy_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let o = bin().arg("install").arg(dir.path()).output().unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let installed = dir.path().join("prestop-wait");
        assert_eq!(stdout(&o), format!("{}\n", installed.display()));
        assert!(o.stderr.is_empty(), "{}", stderr(&o));
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(BIN).unwrap()
        );
        let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert_eq!(entries(dir.path()), ["prestop-wait"]);
        let v = Command::new(&installed).arg("--version").output().unwrap();
        assert_eq!(
            stdout(&v),
            stdout(&bin().arg("--version").output().unwrap())
        );
    }
}

#[test]
fn a_bad_dir_is_exit_2_with_one_line_naming_it() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let missing = work.path().join("missing");
    for (dir, want) in [
        (
            &missing,
            format!("prestop-wait: install: cannot use {}: ", missing.display()),
        ),
        (
            &file,
            format!(
                "prestop-wait: install: {} is not a directory",
                file.display()
            ),
        ),
    ] {
        let o = bin().arg("install").arg(dir).output().unwrap();
        assert_eq!(code(&o), 2);
        let err = stderr(&o);
        assert!(err.starts_with(&want), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(o.stdout.is_empty());
    }
    assert_eq!(entries(work.path()), ["a-file"]);
}

/// The binary where another uid can run it, and `setpriv` to run it as one.
fn as_uid(work: &Path) -> Result<PathBuf, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("switching uid needs root".into());
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return Err("no setpriv (util-linux)".into());
    }
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = work.join("prestop-wait");
    // Written by another process: a copy this one wrote would be open for
    // writing here while a sibling test forks, and an fd inherited by a
    // child before its exec makes our exec of the copy "Text file busy".
    let cp = Command::new("cp").arg(BIN).arg(&copy).status().unwrap();
    assert!(cp.success(), "cp {BIN} {}", copy.display());
    Ok(copy)
}

/// The init container runs as its image's user (the `bin` image: 65532)
/// with no capabilities: an emptyDir (mode 0777) takes the file, a
/// directory of another uid does not, and nothing is left in it.
#[test]
fn installs_as_another_uid_where_it_may_write_and_nowhere_else() {
    let work = tempfile::tempdir_in("/tmp").unwrap();
    let exe = match as_uid(work.path()) {
        Ok(exe) => exe,
        Err(reason) => {
            runnable(&test_name(), Err(reason));
            return;
        }
    };
    let run = |dir: &Path| {
        Command::new("setpriv")
            .args([
                "--reuid=65532",
                "--regid=65532",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(&exe)
            .arg("install")
            .arg(dir)
            .output()
            .unwrap()
    };
    let empty_dir = work.path().join("emptydir");
    std::fs::create_dir(&empty_dir).unwrap();
    std::fs::set_permissions(&empty_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = run(&empty_dir);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let installed = empty_dir.join("prestop-wait");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(BIN).unwrap()
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&installed).unwrap().uid(), 65532);

    let roots = work.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run(&roots);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "prestop-wait: install: cannot write prestop-wait into {}: Permission denied",
            roots.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(entries(&roots).is_empty());
}

/// Init containers of pods that share a volume, each PID 1 of its own PID
/// namespace, install at the same moment: both succeed, the file is whole,
/// and no temporary file is left. A temporary file left by a killed run
/// (with the name a PID-1 run of 0.2.0 used) fails nobody and is not
/// touched: this run did not create it.
#[test]
fn concurrent_installs_from_separate_pid_namespaces_both_succeed() {
    let probe = if !rustix::process::geteuid().is_root() {
        Err("needs root for unshare --pid".to_owned())
    } else if Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .map_or(true, |s| !s.success())
    {
        Err("unshare --pid --fork does not work here".to_owned())
    } else {
        Ok(())
    };
    if !runnable("concurrent_installs_from_separate_pid_namespaces", probe) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join(".prestop-wait.1.tmp");
    std::fs::write(&stale, "left by a killed run").unwrap();
    for round in 0..5 {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc", "--"])
                    .arg(BIN)
                    .arg("install")
                    .arg(dir.path());
                without_our_env(&mut c);
                c.stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in runs {
            let o = child.wait_with_output().unwrap();
            assert_eq!(code(&o), 0, "round {round}: {}", stderr(&o));
        }
        assert_eq!(
            std::fs::read(dir.path().join("prestop-wait")).unwrap(),
            std::fs::read(BIN).unwrap(),
            "round {round}"
        );
        assert_eq!(
            entries(dir.path()),
            [".prestop-wait.1.tmp", "prestop-wait"],
            "round {round}"
        );
    }
    assert_eq!(std::fs::read(&stale).unwrap(), b"left by a killed run");
}

/// The printed path is one line, whatever the directory's name holds.
#[test]
fn the_printed_path_is_escaped() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("two\nlines");
    std::fs::create_dir(&dir).unwrap();
    let o = bin().arg("install").arg(&dir).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{}/two\\nlines/prestop-wait\n", work.path().display())
    );
    assert!(dir.join("prestop-wait").is_file());
}

/// A container that runs the installed file while init containers of other
/// pods on a shared volume install it again (or a restarted one does): the
/// exec never fails with "Text file busy" (ETXTBSY). The kernel refuses to
/// exec a file any process holds open for writing, so each install must
/// have closed every writable descriptor of its copy before renaming it
/// into place. Bounded: at most `EXECS` execs and `LIMIT` of time.
#[test]
fn exec_of_the_installed_file_never_hits_text_file_busy_during_concurrent_installs() {
    use std::process::Stdio;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    const EXECS: usize = 100;
    const INSTALLERS: usize = 4;
    const LIMIT: Duration = Duration::from_secs(10);
    /// ETXTBSY on Linux.
    const ETXTBSY: i32 = 26;

    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("prestop-wait");
    let o = bin().arg("install").arg(dir.path()).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let version = stdout(&bin().arg("--version").output().unwrap());

    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    let (busy, other, ran, installs, failed_installs) = std::thread::scope(|s| {
        let installers = s.spawn(|| {
            let (mut runs, mut failed) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let children: Vec<_> = (0..INSTALLERS)
                    .map(|_| {
                        bin()
                            .arg("install")
                            .arg(dir.path())
                            .stdout(Stdio::null())
                            .stderr(Stdio::piped())
                            .spawn()
                    })
                    .collect();
                started.store(true, Ordering::Relaxed);
                for child in children {
                    match child.and_then(|c| c.wait_with_output()) {
                        Ok(o) if o.status.success() => runs += 1,
                        Ok(o) => failed.push(stderr(&o)),
                        Err(e) => failed.push(format!("cannot run install: {e}")),
                    }
                }
            }
            (runs, failed)
        });
        while !started.load(Ordering::Relaxed) && !installers.is_finished() {
            std::thread::yield_now();
        }
        let t0 = Instant::now();
        let (mut busy, mut other, mut ran) = (0usize, Vec::new(), 0usize);
        while ran < EXECS && t0.elapsed() < LIMIT {
            match Command::new(&installed).arg("--version").output() {
                Ok(v) if stdout(&v) == version => {}
                Ok(v) => other.push(format!("ran, but printed {:?}", stdout(&v))),
                Err(e)
                    if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                        || e.raw_os_error() == Some(ETXTBSY) =>
                {
                    busy += 1
                }
                Err(e) => other.push(e.to_string()),
            }
            ran += 1;
        }
        // Stopped before any assertion, so that a failure cannot leave the
        // installer thread (which the scope joins) running for ever.
        stop.store(true, Ordering::Relaxed);
        let (installs, failed) = installers.join().unwrap();
        (busy, other, ran, installs, failed)
    });
    eprintln!("{ran} execs, {installs} installs alongside: {busy} ETXTBSY");
    assert!(
        failed_installs.is_empty(),
        "installs failed: {failed_installs:?}"
    );
    assert!(installs > 0, "no install ran alongside the execs");
    assert!(ran > 0);
    assert_eq!(
        busy,
        0,
        "{busy} of {ran} execs of {} failed with ETXTBSY while {installs} installs ran",
        installed.display()
    );
    assert!(other.is_empty(), "other exec failures: {other:?}");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(BIN).unwrap()
    );
    assert_eq!(entries(dir.path()), ["prestop-wait"]);
}
