//! Where the hooks' lines go: stderr (unless `--quiet`) and `--log-file`.
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
use std::path::Path;
use std::time::{Duration, Instant};

mod file;
mod target;

use file::{Event, FileLog};
pub use file::{Spec, WRITER_COMMAND, use_writer_process, writer_main};
pub use target::{LogFile, Target, Whose};

use rustix::fs::OFlags;

/// Every line the hook writes starts with this.
pub const PREFIX: &str = "prestop-wait: ";

/// Writes one line, [`PREFIX`] first, in one `write` (a non-blocking
/// target takes a whole line or none of it, never a piece `writeln!` would
/// hand over). Errors are dropped: the hook never fails over its own
/// logging.
pub fn say(w: &mut (impl Write + ?Sized), args: std::fmt::Arguments<'_>) {
    let _ = write_line(w, format!("{PREFIX}{args}\n").as_bytes());
}

/// Writes every log line to stderr (unless quiet) and to the log file.
pub struct Log<'a> {
    stderr: &'a mut dyn Write,
    quiet: bool,
    /// The file's thread, while it may still take lines.
    file: Option<FileLog>,
    /// Bytes of the line being written, up to its newline: `writeln!` hands
    /// a line over in pieces, and each target takes whole lines.
    pending: Vec<u8>,
    /// Lines each target could not take at once: (stderr, file).
    dropped: (u64, u64),
    /// Where `auto` found the log, until the hook asks for it.
    note: Option<String>,
    /// The hook has said its first line: a note that comes later is said
    /// when it comes.
    note_due: bool,
    warned_queue: bool,
    closed: bool,
}

/// Flags for every log target: never block the hook, never leak into a child.
fn nonblocking() -> i32 {
    (OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32
}

impl<'a> Log<'a> {
    /// A log to stderr alone.
    pub fn open(stderr: &'a mut dyn Write, quiet: bool) -> Self {
        Log::new(stderr, quiet, None)
    }

    /// The unit tests' log with a resolved `target`, whose file a writer
    /// thread opens, waited for.
    #[cfg(test)]
    fn with_target(stderr: &'a mut dyn Write, quiet: bool, target: Target) -> Self {
        let until = crate::time::after(Instant::now(), Duration::from_secs(5));
        Log::with_writer(stderr, quiet, FileLog::thread(move || target), until)
    }

    /// Starts the log file's writer (see [`file`]), which resolves `spec`
    /// (`auto` scans `/proc`) and opens it, and waits at most until `until`
    /// for it to say whether it did. What it says later is said when it
    /// comes. Its warnings go to `stderr` even when `quiet`, since otherwise
    /// nothing would be said at all; its note is the hook's to ask for
    /// ([`Log::note`]).
    ///
    /// The file is opened `O_NONBLOCK`: a FIFO nobody reads fails to open
    /// (ENXIO) instead of waiting for a reader.
    pub fn start(stderr: &'a mut dyn Write, quiet: bool, spec: Spec, until: Instant) -> Self {
        Log::with_writer(stderr, quiet, FileLog::start(spec), until)
    }

    fn with_writer(
        stderr: &'a mut dyn Write,
        quiet: bool,
        file: io::Result<FileLog>,
        until: Instant,
    ) -> Self {
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                say(
                    stderr,
                    format_args!(
                        "warning: --log-file: no writer could be started ({e}); logging to stderr only"
                    ),
                );
                None
            }
        };
        let mut log = Log::new(stderr, quiet, file);
        if let Some(f) = log.file.as_mut() {
            let events = f.wait_events(until);
            log.relay(events);
        }
        log
    }

    fn new(stderr: &'a mut dyn Write, quiet: bool, file: Option<FileLog>) -> Self {
        Log {
            stderr,
            quiet,
            file,
            pending: Vec::new(),
            dropped: (0, 0),
            note: None,
            note_due: false,
            warned_queue: false,
            closed: false,
        }
    }

    /// Where `auto` found the container's log, if the file is open by now;
    /// a note that comes later is said when it comes.
    pub fn note(&mut self) -> Option<String> {
        self.note_due = true;
        self.note.take()
    }

    /// Whether no line goes anywhere (`--quiet` and no log file): then the
    /// caller need not format any.
    pub fn is_silent(&self) -> bool {
        self.quiet && self.file.is_none()
    }

    /// Writes one error line to stderr, `--quiet` or not, and to the file.
    pub fn error(&mut self, args: std::fmt::Arguments<'_>) {
        let quiet = std::mem::replace(&mut self.quiet, false);
        say(self, args);
        self.quiet = quiet;
    }

    /// Says on stderr what the file's thread said.
    fn relay(&mut self, events: Vec<Event>) {
        for e in events {
            match e {
                Event::Opened(_, note) => {
                    self.note = note;
                    if self.note_due
                        && let Some(note) = self.note.take()
                    {
                        say(self, format_args!("{note}"));
                    }
                }
                Event::NotOpened(warning) => {
                    self.file = None;
                    say(self.stderr, format_args!("warning: {warning}"));
                }
                Event::WouldBlock(path) => say(
                    self.stderr,
                    format_args!(
                        "warning: --log-file {} would block (nobody is reading it); dropping the lines it cannot take",
                        path.display()
                    ),
                ),
                Event::Failed(path, e) => {
                    self.file = None;
                    say(
                        self.stderr,
                        format_args!(
                            "warning: cannot write --log-file {}: {e}; no more lines there",
                            path.display()
                        ),
                    );
                }
                Event::Done(would_block) => self.dropped.1 += would_block,
            }
        }
    }

    /// Hands one whole line (newline included) to each target.
    fn emit(&mut self, line: &[u8]) {
        if let Some(f) = self.file.as_mut() {
            let events = f.events();
            self.relay(events);
        }
        if !self.quiet
            && let Err(e) = write_line(self.stderr, line)
        {
            self.dropped.0 += 1;
            if self.dropped.0 == 1
                && let Some(f) = self.file.as_mut()
            {
                f.send(
                    format!("{PREFIX}warning: stderr cannot take lines ({e}); dropping those it cannot\n")
                        .as_bytes(),
                );
            }
        }
        let Some(f) = self.file.as_mut() else {
            return;
        };
        if !f.send(line) {
            self.dropped.1 += 1;
            if !self.warned_queue {
                self.warned_queue = true;
                let path = f.path.clone().unwrap_or_default();
                say(
                    self.stderr,
                    format_args!(
                        "warning: --log-file {} is not keeping up (a stalled filesystem?); dropping the lines it cannot take",
                        path.display()
                    ),
                );
            }
        }
    }

    /// Ends the log: the last lines, the count of dropped ones where it can
    /// still be read, and the file's thread given until `until` to write
    /// what it holds. A thread still stuck then (a hung mount) is left
    /// behind: the hook's exit ends it.
    pub fn close(&mut self, until: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        let _ = self.flush();
        let to_stderr = self.dropped.0;
        let mut name = "auto".to_owned();
        if let Some(f) = self.file.as_mut() {
            if to_stderr > 0 {
                f.send(
                    format!("{PREFIX}warning: {to_stderr} log lines dropped: stderr would block\n")
                        .as_bytes(),
                );
            }
            let events = f.close(until);
            let (done, path) = (f.done.is_some(), f.path.clone());
            if let Some(p) = path {
                name = p.display().to_string();
            }
            self.relay(events);
            if !done {
                say(
                    self.stderr,
                    format_args!(
                        "warning: --log-file {name} did not take its last lines in time (a stalled filesystem, or auto still looking among the processes); leaving it"
                    ),
                );
            }
        }
        let to_file = self.dropped.1;
        if to_file > 0 {
            say(
                self.stderr,
                format_args!("warning: {to_file} log lines dropped: --log-file {name} would block"),
            );
        }
    }
}

impl Drop for Log<'_> {
    /// A log nobody closed gets a second for its file.
    fn drop(&mut self) {
        self.close(crate::time::after(Instant::now(), Duration::from_secs(1)));
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
/// caller's stays as it was); a socket (which cannot be reopened so) with
/// `MSG_DONTWAIT`; anything else (no /proc) written only when `poll` says it
/// takes data now.
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
        // A socket (what /proc/self/fd/2 cannot reopen) takes MSG_DONTWAIT:
        // `poll` saying it takes data says nothing of a long line, and a
        // blocking send of one to a reader that went quiet never returns.
        // Where `send` is no way (not a socket, or a seccomp profile that
        // refuses `sendto`), the `poll` way below.
        match rustix::net::send(fd, buf, rustix::net::SendFlags::DONTWAIT) {
            Ok(n) => return Ok(n),
            Err(e) if e == rustix::io::Errno::AGAIN => {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Err(_) => {}
        }
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
        Log::with_target(
            err,
            quiet,
            Target::resolve(file, Path::new("/nonexistent-proc"), &Whose::App, &[]),
        )
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

    #[test]
    fn auto_that_finds_nothing_warns_once_and_logs_to_stderr() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixture::Process::new(7, "app")
            .write(dir.path())
            .unwrap();
        let names = vec!["envoy".to_owned(), "pilot-agent".to_owned()];
        let target = Target::resolve(
            Some(&LogFile::Auto),
            dir.path(),
            &Whose::Proxy(names.clone()),
            &[],
        );
        assert_eq!((&target.path, &target.note), (&None, &None));
        let mut err = Vec::new();
        let mut log = Log::with_target(&mut err, false, target);
        writeln!(log, "line").unwrap();
        drop(log);
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

    #[test]
    fn auto_that_finds_the_log_says_where_in_the_log() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        crate::fixture::Process::new(1, "pilot-agent")
            .write(dir.path())
            .unwrap();
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        if me != rustix::process::geteuid().as_raw() {
            return; // the fixture's owner is not this process's uid
        }
        // fd 2 of the fixture is a plain file here.
        let fd2 = dir.path().join("1/fd/2");
        std::fs::remove_file(&fd2).unwrap();
        let names = vec!["envoy".to_owned()];
        let target = Target::resolve(
            Some(&LogFile::Auto),
            dir.path(),
            &Whose::Proxy(names.clone()),
            &[],
        );
        assert_eq!(target.path.as_deref(), Some(fd2.as_path()));
        let note = target.note.clone().unwrap();
        assert!(note.starts_with("log: also to "), "{note}");
        assert!(note.contains("PID 1 runs as uid"), "{note}");
        let mut err = Vec::new();
        let mut log = Log::with_target(&mut err, false, target);
        writeln!(log, "line").unwrap();
        drop(log);
        assert_eq!(err, b"line\n");
        assert_eq!(std::fs::read_to_string(&fd2).unwrap(), "line\n");
    }
}
