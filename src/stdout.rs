//! stdout for `check`, `install` and `--help`: a reader that went away is
//! not an error.
//!
//! `prestop-wait check | head -1` closes the pipe after one line. As
//! ripgrep does, the rest of the output is dropped without a word; unlike a
//! write error, that does not change the exit code, which still says what
//! the command found.

use std::io::{self, Write};

/// Wraps stdout: after the first `EPIPE`, every write succeeds and goes nowhere.
#[derive(Debug)]
pub struct PipeEnd<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> PipeEnd<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        PipeEnd {
            inner,
            closed: false,
        }
    }

    /// Whether the reader went away.
    pub fn closed(&self) -> bool {
        self.closed
    }
}

impl<W: Write> Write for PipeEnd<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `room` bytes, then fails as a closed pipe does.
    struct Pipe {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() >= self.room {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room - self.taken.len());
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_ends_output_quietly() {
        let mut w = PipeEnd::new(Pipe {
            taken: Vec::new(),
            room: 4,
        });
        w.write_all(b"one\ntwo\nthree\n").unwrap();
        w.flush().unwrap();
        assert!(w.closed());
        assert_eq!(w.inner.taken, b"one\n");
    }

    #[test]
    fn other_errors_still_fail() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(28)) // ENOSPC
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = PipeEnd::new(Full);
        assert!(w.write_all(b"x").is_err());
        assert!(!w.closed());
    }
}
