//! `--log-file`, written by a process of its own, off the hook's deadline.
//!
//! `O_NONBLOCK` does nothing for a regular file: an `open` or a `write` on a
//! hung NFS or FUSE mount blocks in the kernel for as long as the mount
//! hangs, and a FUSE request already handed to its server waits
//! uninterruptibly, so not even a thread helps: the kernel reaps a process
//! only once every thread of it has ended. Resolving `auto` also reads every
//! visible process's `/proc` entry (10,000 processes: over 100 ms). So all
//! of that runs in a writer: the hook's own binary started again as
//! `prestop-wait __log-file …` ([`writer_main`]), which resolves the target,
//! opens it and writes the lines it reads from a pipe. The hook hands whole
//! lines over that pipe without ever waiting, hears back on another what
//! went wrong when it next writes, and at its end waits for the last lines
//! only as long as it can afford; a writer stuck in the kernel is left
//! behind, to end when the mount answers.
//!
//! The unit tests, whose binary is not this one, run the same loop in a
//! thread over the same pipes; the hook itself never starts a thread (a
//! thread stuck in the kernel would hold it all the same, and the thread
//! machinery costs 33 KB of the binary).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;

use super::target::{LogFile, Target, Whose};
use super::{open_append, write_line};

/// The hidden command a writer runs as.
pub const WRITER_COMMAND: &str = "__log-file";

/// The longest line handed to the writer: a pipe takes up to this many
/// bytes whole or not at all, so no line is ever torn.
const PIPE_BUF: usize = 4096;

/// The binary to start writers from, set once by `main`.
static WRITER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes writers processes of `exe` (this binary; `/proc/self/exe` works
/// even once the file was replaced by an install).
pub fn use_writer_process(exe: PathBuf) {
    let _ = WRITER_EXE.set(exe);
}

/// What the writer is to write to, before it is resolved.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `--log-file`.
    pub log_file: LogFile,
    /// Where `auto` looks for processes.
    pub proc_root: PathBuf,
    /// Whose container log `auto` means.
    pub whose: Whose,
    /// The hook's pid, which `auto` never takes for the app.
    pub hook_pid: i32,
}

impl Spec {
    fn resolve(&self) -> Target {
        let writer = rustix::process::getpid().as_raw_nonzero().get();
        Target::resolve(
            Some(&self.log_file),
            &self.proc_root,
            &self.whose,
            &[self.hook_pid, writer],
        )
    }

    fn to_args(&self) -> Vec<OsString> {
        let file = match &self.log_file {
            LogFile::Auto => OsString::from("auto"),
            LogFile::Path(p) => {
                let mut s = OsString::from("path:");
                s.push(p);
                s
            }
        };
        let whose = match &self.whose {
            Whose::App => OsString::from("app"),
            Whose::Proxy(names) => OsString::from(format!("proxy:{}", names.join(","))),
        };
        vec![
            WRITER_COMMAND.into(),
            file,
            self.proc_root.clone().into(),
            whose,
            self.hook_pid.to_string().into(),
        ]
    }

    fn from_args(args: &[OsString]) -> Option<Spec> {
        use std::os::unix::ffi::OsStrExt;
        let [file, proc_root, whose, pid] = args else {
            return None;
        };
        let log_file = match file.as_bytes() {
            b"auto" => LogFile::Auto,
            b => LogFile::Path(PathBuf::from(std::ffi::OsStr::from_bytes(
                b.strip_prefix(b"path:")?,
            ))),
        };
        let whose = match whose.to_str()? {
            "app" => Whose::App,
            w => Whose::Proxy(
                w.strip_prefix("proxy:")?
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
        };
        Some(Spec {
            log_file,
            proc_root: PathBuf::from(proc_root),
            whose,
            hook_pid: pid.to_str()?.parse().ok()?,
        })
    }
}

/// What the writer tells the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    /// The file is open; `auto`'s note on where it found the log.
    Opened(PathBuf, Option<String>),
    /// No file: `auto` found none, or it could not be opened. For stderr.
    NotOpened(String),
    /// The first line the file would not take at once (a FIFO nobody
    /// reads); more are counted.
    WouldBlock(PathBuf),
    /// The file failed for good (disk full, the reader gone).
    Failed(PathBuf, String),
    /// Every line is written: this many were dropped as would-block.
    Done(u64),
}

impl Event {
    /// One line of the events pipe: fields split by tabs, each escaped.
    fn encode(&self) -> String {
        let p = |p: &Path| esc(&p.to_string_lossy());
        match self {
            Event::Opened(path, note) => format!(
                "opened\t{}\t{}\n",
                p(path),
                note.as_deref().map(esc).unwrap_or_default()
            ),
            Event::NotOpened(w) => format!("notopened\t{}\n", esc(w)),
            Event::WouldBlock(path) => format!("wouldblock\t{}\n", p(path)),
            Event::Failed(path, e) => format!("failed\t{}\t{}\n", p(path), esc(e)),
            Event::Done(n) => format!("done\t{n}\n"),
        }
    }

    fn decode(line: &str) -> Option<Event> {
        let mut f = line.split('\t').map(unesc);
        Some(match f.next()?.as_str() {
            "opened" => {
                let path = PathBuf::from(f.next()?);
                let note = f.next().filter(|n| !n.is_empty());
                Event::Opened(path, note)
            }
            "notopened" => Event::NotOpened(f.next()?),
            "wouldblock" => Event::WouldBlock(PathBuf::from(f.next()?)),
            "failed" => Event::Failed(PathBuf::from(f.next()?), f.next()?),
            "done" => Event::Done(f.next()?.parse().ok()?),
            _ => return None,
        })
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn unesc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// The hook's end of its writer.
pub(super) struct FileLog {
    lines: Option<PipeWriter>,
    events: PipeReader,
    /// Bytes of the events pipe up to the next newline.
    partial: Vec<u8>,
    /// The writer process, if it is one.
    child: Option<Child>,
    /// The path, once the writer said it opened it.
    pub(super) path: Option<PathBuf>,
    /// The writer said it is done, or is gone.
    pub(super) done: Option<u64>,
}

impl FileLog {
    /// Starts a writer for `spec`: a process of the binary `main` named.
    pub(super) fn start(spec: Spec) -> io::Result<Self> {
        match WRITER_EXE.get() {
            Some(exe) => FileLog::process(exe, &spec),
            #[cfg(test)]
            None => FileLog::thread(move || spec.resolve()),
            #[cfg(not(test))]
            None => Err(io::Error::other("no binary to start it from")),
        }
    }

    /// A writer thread for a target that `target` resolves: the unit tests'.
    #[cfg(test)]
    pub(super) fn thread(target: impl FnOnce() -> Target + Send + 'static) -> io::Result<Self> {
        let (lines_r, lines_w) = io::pipe()?;
        let (events_r, events_w) = io::pipe()?;
        std::thread::Builder::new()
            .name("log-file".into())
            .spawn(move || writer_loop(target(), lines_r, events_w))?;
        FileLog::new(lines_w, events_r, None)
    }

    fn process(exe: &Path, spec: &Spec) -> io::Result<Self> {
        let (lines_r, lines_w) = io::pipe()?;
        let (events_r, events_w) = io::pipe()?;
        // The writer holds no end of the hook's stdout or stderr: whoever
        // reads those (the kubelet's exec) sees them end with the hook.
        let child = Command::new(exe)
            .args(spec.to_args())
            .stdin(lines_r)
            .stdout(events_w)
            .stderr(Stdio::null())
            .spawn()?;
        FileLog::new(lines_w, events_r, Some(child))
    }

    fn new(lines: PipeWriter, events: PipeReader, child: Option<Child>) -> io::Result<Self> {
        for fd in [lines.as_fd(), events.as_fd()] {
            let flags = rustix::fs::fcntl_getfl(fd)?;
            rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
        }
        Ok(FileLog {
            lines: Some(lines),
            events,
            partial: Vec::new(),
            child,
            path: None,
            done: None,
        })
    }

    /// Hands one line over without waiting: `false` when the pipe is full
    /// (the writer is stalled) and the line is dropped. A line longer than
    /// a pipe takes whole is cut.
    pub(super) fn send(&mut self, line: &[u8]) -> bool {
        let Some(w) = self.lines.as_mut() else {
            return true;
        };
        let mut cut;
        let line = if line.len() > PIPE_BUF {
            cut = line[..PIPE_BUF - 4].to_vec();
            cut.extend_from_slice("…\n".as_bytes());
            &cut[..]
        } else {
            line
        };
        match w.write(line) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => {
                // The writer is gone: what it said comes with its events.
                self.lines = None;
                true
            }
        }
    }

    /// What the writer said since the last call, without waiting.
    pub(super) fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.events.read(&mut buf) {
                Ok(0) => {
                    // The writer ended without saying it was done.
                    self.done.get_or_insert(0);
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            if let Some(e) = Event::decode(String::from_utf8_lossy(&line[..i]).as_ref()) {
                self.note(&e);
                out.push(e);
            }
        }
        out
    }

    /// Waits until the writer says something, at most until `until`.
    pub(super) fn wait_events(&mut self, until: Instant) -> Vec<Event> {
        loop {
            let events = self.events();
            let left = until.saturating_duration_since(Instant::now());
            if !events.is_empty() || self.done.is_some() || left.is_zero() {
                return events;
            }
            let mut fds = [PollFd::new(&self.events, PollFlags::IN)];
            let timeout = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
        }
    }

    /// No more lines: waits for the writer to write what it holds, at most
    /// until `until`. Returns what it said meanwhile; [`FileLog::done`]
    /// tells whether it finished. A writer process that finished is reaped;
    /// one still stuck is left to end on its own.
    pub(super) fn close(&mut self, until: Instant) -> Vec<Event> {
        self.lines = None;
        let mut out = Vec::new();
        while self.done.is_none() && Instant::now() < until {
            out.extend(self.wait_events(until));
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.try_wait();
        }
        out
    }

    fn note(&mut self, e: &Event) {
        match e {
            Event::Opened(p, _) => self.path = Some(p.clone()),
            Event::NotOpened(_) | Event::Failed(..) => self.lines = None,
            Event::Done(n) => self.done = Some(*n),
            Event::WouldBlock(_) => {}
        }
    }
}

/// `prestop-wait __log-file FILE PROC WHOSE PID`: a writer process. Reads
/// lines on stdin until it ends, writes them to the file, says what
/// happened on stdout. Exits 0; 2 when its arguments make no sense.
pub fn writer_main(args: &[OsString]) -> i32 {
    let Some(spec) = Spec::from_args(args) else {
        return 2;
    };
    let stdin = io::stdin();
    let stdout = io::stdout();
    writer_loop(spec.resolve(), stdin.lock(), stdout.lock());
    0
}

/// The writer: resolve, open, write every line read from `lines`, say what
/// happened on `events`.
fn writer_loop(target: Target, lines: impl Read, mut events: impl Write) {
    let mut send = |e: Event| {
        let _ = events.write_all(e.encode().as_bytes());
        let _ = events.flush();
    };
    if let Some(warning) = target.warning {
        send(Event::NotOpened(warning));
        return;
    }
    let Some(path) = target.path else {
        send(Event::Done(0));
        return;
    };
    let mut file: File = match open_append(&path) {
        Ok(f) => f,
        Err(e) => {
            send(Event::NotOpened(format!(
                "cannot open --log-file {}: {e}{}",
                path.display(),
                if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                    " (a FIFO or pipe nobody reads)"
                } else {
                    ""
                }
            )));
            return;
        }
    };
    send(Event::Opened(path.clone(), target.note));
    let mut would_block = 0u64;
    let mut reader = BufReader::new(lines);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match write_line(&mut file, &line) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                would_block += 1;
                if would_block == 1 {
                    send(Event::WouldBlock(path.clone()));
                }
            }
            Err(e) => {
                send(Event::Failed(path.clone(), e.to_string()));
                return;
            }
        }
    }
    send(Event::Done(would_block));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_specs_survive_their_pipes() {
        for e in [
            Event::Opened("/a\tb/c\nd\\e".into(), Some("note\twith tab".into())),
            Event::Opened("/x".into(), None),
            Event::NotOpened("cannot open --log-file /x: denied".into()),
            Event::WouldBlock("/proc/1/fd/2".into()),
            Event::Failed("/x".into(), "No space left on device".into()),
            Event::Done(7),
        ] {
            let line = e.encode();
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert_eq!(Event::decode(line.trim_end_matches('\n')), Some(e));
        }
        for spec in [
            Spec {
                log_file: LogFile::Auto,
                proc_root: "/proc".into(),
                whose: Whose::Proxy(vec!["envoy".into(), "pilot-agent".into()]),
                hook_pid: 42,
            },
            Spec {
                log_file: LogFile::Path("/var/log/with space".into()),
                proc_root: "/tmp/fixture".into(),
                whose: Whose::App,
                hook_pid: 7,
            },
        ] {
            let args = spec.to_args();
            assert_eq!(args[0], WRITER_COMMAND);
            let back = Spec::from_args(&args[1..]).unwrap();
            assert_eq!(format!("{back:?}"), format!("{spec:?}"));
        }
        assert!(Spec::from_args(&["x".into()]).is_none());
    }
}
