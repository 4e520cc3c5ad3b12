//! Where `wait`'s lines go: stderr (unless `--quiet`) and `--log-file`.
//!
//! The hook must never fail over its own logging: every write error is
//! swallowed here, and a log file that cannot be opened costs one warning.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::Path;

/// Writes every log line to stderr (unless quiet) and to the log file.
pub struct Log<'a> {
    stderr: Option<&'a mut dyn Write>,
    file: Option<LineWriter<File>>,
}

impl<'a> Log<'a> {
    /// Opens `log_file` if given. A file that cannot be opened is reported on
    /// `stderr` even when `quiet`, since otherwise nothing would be said at all.
    pub fn open(stderr: &'a mut dyn Write, quiet: bool, log_file: Option<&Path>) -> Self {
        let mut file = None;
        if let Some(path) = log_file {
            match open_append(path) {
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
        Log {
            stderr: (!quiet).then_some(stderr),
            file,
        }
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

    #[test]
    fn lines_go_to_both_and_quiet_silences_only_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.log");
        let mut err = Vec::new();
        let mut log = Log::open(&mut err, true, Some(&path));
        writeln!(log, "one").unwrap();
        drop(log);
        assert!(err.is_empty());
        let mut log = Log::open(&mut err, false, Some(&path));
        writeln!(log, "two").unwrap();
        drop(log);
        assert_eq!(err, b"two\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn an_unopenable_file_is_one_warning_even_when_quiet() {
        let mut err = Vec::new();
        let missing = Path::new("/nonexistent-dir/hook.log");
        let mut log = Log::open(&mut err, true, Some(missing));
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
}
