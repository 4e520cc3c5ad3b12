//! Where `wait`'s lines go: stderr (unless `--quiet`) and `--log-file`.
//!
//! The hook must never fail over its own logging, nor wait on it: the
//! deadline is the one promise the hook makes. Every target is written
//! without blocking (its own file description opened `O_NONBLOCK`), a whole
//! line at a time; a line a target cannot take at once is dropped there and
//! counted, and the first drop is said once on the other target. Write
//! errors are swallowed; a log file that cannot be opened costs one warning.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::cli::LogFile;
use crate::decide::is_proxy_process;
use crate::procread::{process_uid, processes_of_uid};

/// Writes every log line to stderr (unless quiet) and to the log file.
pub struct Log<'a> {
    stderr: &'a mut dyn Write,
    quiet: bool,
    file: Option<(File, PathBuf)>,
    /// Bytes of the line being written, up to its newline: `writeln!` hands
    /// a line over in pieces, and each target takes whole lines.
    pending: Vec<u8>,
    /// Lines each target could not take at once: (stderr, file).
    dropped: (u64, u64),
}

/// Flags for every log target: never block the hook, never leak into a child.
fn nonblocking() -> i32 {
    (OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32
}

impl<'a> Log<'a> {
    /// Opens `log_file` if given, resolving `auto` against `proc_root` (see
    /// [`find_proxy_log`]). Returns the log and, for `auto`, a line saying
    /// where the lines go and why. A file that cannot be opened is reported on
    /// `stderr` even when `quiet`, since otherwise nothing would be said at all.
    ///
    /// The file is opened `O_NONBLOCK`: a FIFO nobody reads fails to open
    /// (ENXIO) instead of hanging the hook before its first poll.
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
                Ok(f) => file = Some((f, path)),
                Err(e) => {
                    let _ = writeln!(
                        stderr,
                        "prestop-wait: warning: cannot open --log-file {}: {e}{}",
                        path.display(),
                        if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                            " (a FIFO or pipe nobody reads)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        let log = Log {
            stderr,
            quiet,
            file,
            pending: Vec::new(),
            dropped: (0, 0),
        };
        (log, note)
    }

    /// Whether no line goes anywhere (`--quiet` and no log file): then the
    /// caller need not format any.
    pub fn is_silent(&self) -> bool {
        self.quiet && self.file.is_none()
    }

    /// Writes one error line to stderr, `--quiet` or not, and to the file.
    pub fn error(&mut self, line: &str) {
        let quiet = std::mem::replace(&mut self.quiet, false);
        let _ = writeln!(self, "{line}");
        self.quiet = quiet;
    }

    /// Hands one whole line (newline included) to each target.
    fn emit(&mut self, line: &[u8]) {
        if !self.quiet {
            match write_line(self.stderr, line) {
                Ok(()) => {}
                Err(e) => {
                    self.dropped.0 += 1;
                    if self.dropped.0 == 1
                        && let Some((f, _)) = self.file.as_mut()
                    {
                        let _ = write_line(
                            f,
                            format!("prestop-wait: warning: stderr cannot take lines ({e}); dropping those it cannot\n").as_bytes(),
                        );
                    }
                }
            }
        }
        let Some((f, path)) = self.file.as_mut() else {
            return;
        };
        match write_line(f, line) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.dropped.1 += 1;
                if self.dropped.1 == 1 {
                    let _ = writeln!(
                        self.stderr,
                        "prestop-wait: warning: --log-file {} would block (nobody is reading it); dropping the lines it cannot take",
                        path.display()
                    );
                }
            }
            Err(e) => {
                // Disk full, the pipe's reader gone: this target is done.
                let _ = writeln!(
                    self.stderr,
                    "prestop-wait: warning: cannot write --log-file {}: {e}; no more lines there",
                    path.display()
                );
                self.file = None;
            }
        }
    }

    /// Lines dropped because a target would have blocked: (stderr, file).
    pub fn dropped(&self) -> (u64, u64) {
        self.dropped
    }
}

impl Drop for Log<'_> {
    /// The count of dropped lines, once, where it can still be read.
    fn drop(&mut self) {
        let _ = self.flush();
        let (to_stderr, to_file) = self.dropped;
        if to_file > 0
            && let Some((_, path)) = &self.file
        {
            let _ = writeln!(
                self.stderr,
                "prestop-wait: warning: {to_file} log lines dropped: --log-file {} would block",
                path.display()
            );
        }
        if to_stderr > 0
            && let Some((f, _)) = self.file.as_mut()
        {
            let _ = write_line(
                f,
                format!(
                    "prestop-wait: warning: {to_stderr} log lines dropped: stderr would block\n"
                )
                .as_bytes(),
            );
        }
    }
}

/// Writes all of `line` or fails: a target that takes part of it and then
/// would block has the rest dropped, and that counts as a failure.
fn write_line(w: &mut (impl Write + ?Sized), line: &[u8]) -> io::Result<()> {
    let mut rest = line;
    while !rest.is_empty() {
        match w.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Where the proxy container's own log is, as the kubelet collects it: the
/// stderr of the container's main process. That is PID 1 when the hook sees
/// the container's own PID namespace (PID 1 then runs as the hook's uid: the
/// hook runs as the container's user). With `shareProcessNamespace: true`,
/// PID 1 is the pod's pause process, of another uid; the main process is
/// then the oldest process of the hook's uid among the proxy's names
/// (pilot-agent in Istio, which starts Envoy). Either way its fd 2 must be
/// open for writing (`fdinfo` flags): reopening a descriptor a process only
/// reads would write into its input, not its log. Returns the path and why,
/// or why none was found.
pub fn find_proxy_log(
    proc_root: &Path,
    uid: u32,
    proxy_names: &[String],
) -> Result<(PathBuf, String), String> {
    let pid1 = process_uid(proc_root, 1);
    let pid1_said = if pid1 == Some(uid) {
        match stderr_writable(proc_root, 1) {
            Ok(()) => {
                return Ok((
                    proc_root.join("1/fd/2"),
                    format!("--log-file auto: PID 1 runs as uid {uid}, as this hook does"),
                ));
            }
            Err(why) => format!("runs as uid {uid} but its fd 2 {why}"),
        }
    } else {
        pid1.map_or("cannot be seen".to_owned(), |u| format!("runs as uid {u}"))
    };
    let processes = processes_of_uid(proc_root, uid).map_err(|e| format!("{e:#}"))?;
    match processes
        .iter()
        .map(|p| &p.holder)
        .filter(|h| h.pid != 1 && is_proxy_process(h, proxy_names))
        .find(|h| stderr_writable(proc_root, h.pid).is_ok())
    {
        Some(h) => Ok((
            proc_root.join(format!("{}/fd/2", h.pid)),
            format!(
                "--log-file auto: PID 1 {pid1_said}; pid {} ({}) is the oldest proxy process of uid {uid} with a writable fd 2",
                h.pid,
                h.name()
            ),
        )),
        None => Err(format!(
            "PID 1 {pid1_said} and no process named {} runs as uid {uid} with a writable fd 2",
            proxy_names.join(" or ")
        )),
    }
}

/// Whether `<pid>`'s fd 2 is open for writing, from the `flags:` line of
/// `<pid>/fdinfo/2` (octal open flags; the access mode is the low two bits).
fn stderr_writable(proc_root: &Path, pid: i32) -> Result<(), String> {
    let path = proc_root.join(format!("{pid}/fdinfo/2"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot be read ({e})"))?;
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .ok_or_else(|| "has no flags in its fdinfo".to_owned())?;
    match flags & 0o3 {
        0o1 | 0o2 => Ok(()),
        _ => Err("is open read-only".to_owned()),
    }
}

/// Opens for append without blocking, creating a regular file if there is
/// none: `/proc/1/fd/2` is a pipe or a tty that exists already, and a path in
/// a writable volume is created. (The proxy's root filesystem is read-only,
/// so nothing else can be.) Through `/proc/<pid>/fd/N` the open makes a new
/// file description: `O_NONBLOCK` is ours alone, the proxy's stays blocking.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(nonblocking())
        .open(path)
}

/// This process's stderr, written without blocking: fd 2 reopened
/// `O_NONBLOCK` through `/proc/self/fd/2` (a description of our own, so the
/// caller's stays as it was), or, where that cannot be opened (a socket,
/// no /proc), fd 2 itself, written only when `poll` says it takes data now.
pub struct Stderr {
    reopened: Option<File>,
}

impl Stderr {
    /// Opens it; never fails.
    pub fn new() -> Stderr {
        Stderr {
            reopened: open_append(Path::new("/proc/self/fd/2")).ok(),
        }
    }
}

impl Default for Stderr {
    fn default() -> Self {
        Stderr::new()
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(f) = self.reopened.as_mut() {
            return f.write(buf);
        }
        let stderr = io::stderr();
        let fd = stderr.as_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::OUT,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match rustix::event::poll(&mut fds, Some(&zero)) {
            Ok(1) if fds[0].revents().contains(rustix::event::PollFlags::OUT) => {
                stderr.lock().write(buf)
            }
            // Closed (POLLNVAL), broken or full: nothing can be said here.
            Ok(_) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(e.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Log<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            self.emit(&line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let mut line = std::mem::take(&mut self.pending);
            line.push(b'\n');
            self.emit(&line);
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
    /// by the test's own uid, each with its fd 2 open read-write.
    fn procs(list: &[(i32, &str, u64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm, start) in list {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir_all(p.join("fd")).unwrap();
            set_fd2_flags(dir.path(), *pid, "0100002");
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

    /// Writes `<pid>/fdinfo/2` as the kernel does, with these octal flags.
    fn set_fd2_flags(root: &Path, pid: i32, flags: &str) {
        let d = root.join(format!("{pid}/fdinfo"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("2"),
            format!("pos:\t0\nflags:\t{flags}\nmnt_id:\t15\nino:\t1234\n"),
        )
        .unwrap();
    }

    #[test]
    fn auto_takes_only_a_descriptor_open_for_writing() {
        use std::os::unix::fs::MetadataExt;
        let dir = procs(&[(1, "pilot-agent", 10), (15, "envoy", 20)]);
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        // PID 1's fd 2 read-only (O_RDONLY|O_LARGEFILE): writing there would
        // feed its input. The next proxy process of the uid is taken.
        set_fd2_flags(dir.path(), 1, "0100000");
        let (path, why) = find_proxy_log(dir.path(), me, &names()).unwrap();
        assert_eq!(path, dir.path().join("15/fd/2"), "{why}");
        assert!(why.contains("fd 2 is open read-only"), "{why}");
        // Write-only (O_WRONLY|O_APPEND) is fine.
        set_fd2_flags(dir.path(), 1, "02001");
        let (path, _) = find_proxy_log(dir.path(), me, &names()).unwrap();
        assert_eq!(path, dir.path().join("1/fd/2"));
        // None writable: an error that says why.
        set_fd2_flags(dir.path(), 1, "0");
        set_fd2_flags(dir.path(), 15, "0100000");
        let err = find_proxy_log(dir.path(), me, &names()).unwrap_err();
        assert!(err.contains("with a writable fd 2"), "{err}");
        // No fdinfo at all (an odd /proc): not taken either.
        std::fs::remove_file(dir.path().join("1/fdinfo/2")).unwrap();
        let err = find_proxy_log(dir.path(), me, &names()).unwrap_err();
        assert!(err.contains("cannot be read"), "{err}");
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
