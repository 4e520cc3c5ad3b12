//! Where `wait`'s lines go: stderr (unless `--quiet`) and `--log-file`.
//!
//! The hook must never fail over its own logging: every write error is
//! swallowed here, and a log file that cannot be opened costs one warning.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};

use crate::cli::LogFile;
use crate::decide::is_proxy_process;
use crate::procread::{process_uid, processes_of_uid};

/// Writes every log line to stderr (unless quiet) and to the log file.
pub struct Log<'a> {
    stderr: Option<&'a mut dyn Write>,
    file: Option<LineWriter<File>>,
}

impl<'a> Log<'a> {
    /// Opens `log_file` if given, resolving `auto` against `proc_root` (see
    /// [`find_proxy_log`]). Returns the log and, for `auto`, a line saying
    /// where the lines go and why. A file that cannot be opened is reported on
    /// `stderr` even when `quiet`, since otherwise nothing would be said at all.
    pub fn open(
        stderr: &'a mut dyn Write,
        quiet: bool,
        log_file: Option<&LogFile>,
        proc_root: &Path,
        proxy_names: &[String],
    ) -> (Self, Option<String>) {
        let (path, note) = match log_file {
            None => (None, None),
            Some(LogFile::Path(p)) => (Some(p.clone()), None),
            Some(LogFile::Auto) => {
                match find_proxy_log(proc_root, rustix::process::geteuid().as_raw(), proxy_names) {
                    Ok((path, why)) => {
                        let note = format!("prestop-wait: log: also to {} ({why})", path.display());
                        (Some(path), Some(note))
                    }
                    Err(why) => {
                        let _ = writeln!(
                            stderr,
                            "prestop-wait: warning: --log-file auto: {why}; logging to stderr only"
                        );
                        (None, None)
                    }
                }
            }
        };
        let mut file = None;
        if let Some(path) = path {
            match open_append(&path) {
                Ok(f) => file = Some(LineWriter::new(f)),
                Err(e) => {
                    let _ = writeln!(
                        stderr,
                        "prestop-wait: warning: cannot open --log-file {}: {e}",
                        path.display()
                    );
                }
            }
        }
        let log = Log {
            stderr: (!quiet).then_some(stderr),
            file,
        };
        (log, note)
    }
}

/// Where the proxy container's own log is, as the kubelet collects it: the
/// stderr of the container's main process. That is PID 1 when the hook sees
/// the container's own PID namespace (PID 1 then runs as the hook's uid: the
/// hook runs as the container's user). With `shareProcessNamespace: true`,
/// PID 1 is the pod's pause process, of another uid; the main process is
/// then the oldest process of the hook's uid among the proxy's names
/// (pilot-agent in Istio, which starts Envoy). Returns the path and why, or
/// why none was found.
pub fn find_proxy_log(
    proc_root: &Path,
    uid: u32,
    proxy_names: &[String],
) -> Result<(PathBuf, String), String> {
    let pid1 = process_uid(proc_root, 1);
    if pid1 == Some(uid) {
        return Ok((
            proc_root.join("1/fd/2"),
            format!("--log-file auto: PID 1 runs as uid {uid}, as this hook does"),
        ));
    }
    let pid1 = pid1.map_or("cannot be seen".to_owned(), |u| format!("runs as uid {u}"));
    let processes = processes_of_uid(proc_root, uid).map_err(|e| format!("{e:#}"))?;
    match processes
        .iter()
        .map(|p| &p.holder)
        .find(|h| is_proxy_process(h, proxy_names))
    {
        Some(h) => Ok((
            proc_root.join(format!("{}/fd/2", h.pid)),
            format!(
                "--log-file auto: PID 1 {pid1}; pid {} ({}) is the oldest proxy process of uid {uid}",
                h.pid,
                h.name()
            ),
        )),
        None => Err(format!(
            "PID 1 {pid1} and no process named {} runs as uid {uid}",
            proxy_names.join(" or ")
        )),
    }
}

impl Log<'_> {
    /// Whether no line goes anywhere (`--quiet` and no log file): then the
    /// caller need not format any.
    pub fn is_silent(&self) -> bool {
        self.stderr.is_none() && self.file.is_none()
    }
}

/// Opens for append, creating a regular file if there is none: `/proc/1/fd/2`
/// is a pipe or a tty that exists already, and a path in a writable volume is
/// created. (The proxy's root filesystem is read-only, so nothing else can be.)
fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

impl Write for Log<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(e) = self.stderr.as_mut() {
            let _ = e.write_all(buf);
        }
        // A log file that fails mid-way (disk full, the pipe's reader gone)
        // is dropped rather than failing the hook.
        if let Some(f) = self.file.as_mut()
            && f.write_all(buf).is_err()
        {
            self.file = None;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.stderr.as_mut() {
            let _ = e.flush();
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open<'a>(err: &'a mut Vec<u8>, quiet: bool, file: Option<&LogFile>) -> Log<'a> {
        Log::open(err, quiet, file, Path::new("/nonexistent-proc"), &[]).0
    }

    #[test]
    fn lines_go_to_both_and_quiet_silences_only_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.log");
        let mut err = Vec::new();
        let mut log = open(&mut err, true, Some(&LogFile::Path(path.clone())));
        writeln!(log, "one").unwrap();
        drop(log);
        assert!(err.is_empty());
        let mut log = open(&mut err, false, Some(&LogFile::Path(path.clone())));
        writeln!(log, "two").unwrap();
        drop(log);
        assert_eq!(err, b"two\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn an_unopenable_file_is_one_warning_even_when_quiet() {
        let mut err = Vec::new();
        let missing = Path::new("/nonexistent-dir/hook.log");
        let mut log = open(&mut err, true, Some(&LogFile::Path(missing.into())));
        writeln!(log, "line").unwrap();
        drop(log);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with(
                "prestop-wait: warning: cannot open --log-file /nonexistent-dir/hook.log: "
            ),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    /// A fixture `/proc` with processes (pid, comm, start time), all owned
    /// by the test's own uid.
    fn procs(list: &[(i32, &str, u64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm, start) in list {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir_all(p.join("fd")).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(p.join("cmdline"), format!("{comm}\0")).unwrap();
            std::fs::write(
                p.join("stat"),
                format!("{pid} ({comm}) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0"),
            )
            .unwrap();
        }
        dir
    }

    fn names() -> Vec<String> {
        vec!["envoy".into(), "pilot-agent".into()]
    }

    #[test]
    fn auto_is_pid_1_when_it_runs_as_the_hooks_uid() {
        use std::os::unix::fs::MetadataExt;
        let dir = procs(&[(1, "pilot-agent", 10), (15, "envoy", 20)]);
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        let (path, why) = find_proxy_log(dir.path(), me, &names()).unwrap();
        assert_eq!(path, dir.path().join("1/fd/2"));
        assert!(why.contains("PID 1 runs as uid"), "{why}");
        // Some other uid: nothing of it is visible.
        let err = find_proxy_log(dir.path(), me.wrapping_add(1), &names()).unwrap_err();
        assert!(
            err.contains("no process named envoy or pilot-agent runs as uid"),
            "{err}"
        );
    }

    #[test]
    fn auto_is_the_oldest_proxy_process_when_pid_1_is_another_uids() {
        use std::os::unix::fs::{MetadataExt, chown};
        // shareProcessNamespace: PID 1 is the pause process, of uid 65535.
        let dir = procs(&[
            (1, "pause", 1),
            (7, "app", 5),
            (20, "envoy", 300),
            (12, "pilot-agent", 200),
        ]);
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        if let Err(e) = chown(dir.path().join("1"), Some(65535), None) {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must chown: {e}"
            );
            eprintln!("skipped: chown needs root ({e})");
            return;
        }
        let (path, why) = find_proxy_log(dir.path(), me, &names()).unwrap();
        assert_eq!(path, dir.path().join("12/fd/2"), "{why}");
        assert!(why.contains("PID 1 runs as uid 65535"), "{why}");
        assert!(why.contains("pid 12 (pilot-agent)"), "{why}");
        // No proxy process: an error that says what was looked for.
        let dir = procs(&[(1, "pause", 1), (7, "app", 5)]);
        chown(dir.path().join("1"), Some(65535), None).unwrap();
        let err = find_proxy_log(dir.path(), me, &names()).unwrap_err();
        assert!(
            err.starts_with("PID 1 runs as uid 65535 and no process named"),
            "{err}"
        );
    }

    #[test]
    fn auto_that_finds_nothing_warns_once_and_logs_to_stderr() {
        let dir = procs(&[(7, "app", 5)]);
        let mut err = Vec::new();
        let (mut log, note) =
            Log::open(&mut err, false, Some(&LogFile::Auto), dir.path(), &names());
        writeln!(log, "line").unwrap();
        drop(log);
        assert_eq!(note, None);
        let err = String::from_utf8(err).unwrap();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines[0].starts_with("prestop-wait: warning: --log-file auto: PID 1 cannot be seen"),
            "{err}"
        );
        assert!(lines[0].ends_with("; logging to stderr only"), "{err}");
        assert_eq!(lines[1], "line");
    }
}
