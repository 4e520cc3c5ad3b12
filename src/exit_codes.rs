//! Exit codes: part of the contract with the kubelet and with scripts.

/// Every code the binary exits with.
///
/// A preStop hook that exits non-zero gets a `FailedPreStopHook` event that
/// says only "PreStopHook failed" (since Kubernetes 1.26): its output is shown
/// nowhere, which is why `wait` has `--log-file`. The container is stopped
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// `wait`: nothing blocks any more (drained). `check`: nothing blocks.
    /// `quiesce`: no inbound traffic for `--idle`. `sleep`, `install`,
    /// `--help`, `--version`: done.
    Success,
    /// `wait`: the deadline passed with sockets still held. `check`: something
    /// blocks. `quiesce`: the deadline passed with traffic still arriving.
    Blocked,
    /// Usage error (bad flag, bad duration) or runtime error (unreadable or
    /// malformed table, `install` could not write). The hooks (`wait`,
    /// `quiesce`) fail safe: on a bad flag they say so, hold without it, and
    /// exit with this at the end; when no look can be read they say so,
    /// hold to the deadline, and exit with this.
    Error,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Blocked => 1,
            ExitCode::Error => 2,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

/// Text for `--help`, kept next to the enum it documents.
pub const HELP: &str = "\
Exit codes:
  0  nothing blocks (wait: drained before the deadline; quiesce: no inbound traffic for --idle);
     sleep, install: done
  1  something blocks (wait: the deadline passed with sockets still held; quiesce: with traffic
     still arriving)
  2  usage or runtime error (bad flag or duration: wait and quiesce say it, hold with the default,
     then exit 2; unreadable or malformed table or netlink message: wait and quiesce say it,
     hold to the deadline, then exit 2; install could not write)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let all = [ExitCode::Success, ExitCode::Blocked, ExitCode::Error];
        for c in all {
            assert!(HELP.contains(&format!("  {}  ", c.code())), "{c:?}");
        }
        assert_eq!(all.map(ExitCode::code), [0, 1, 2]);
    }
}
