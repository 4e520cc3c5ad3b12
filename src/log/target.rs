//! Where `--log-file` points: a path as given, or, for `auto`, the
//! container's own log found among its processes. Resolved once, by the
//! log file's thread (see `file`), off the hook's deadline.

use std::path::{Path, PathBuf};

use crate::decide::is_proxy_process;
use crate::procread::{self, Holder};

/// Where `--log-file` appends: a path, or the container's own log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFile {
    /// This path.
    Path(PathBuf),
    /// The container's own log, found at start (see [`Whose`]).
    Auto,
}

/// Whose container log `--log-file=auto` means.
#[derive(Debug, Clone)]
pub enum Whose {
    /// The proxy container's (`wait`): PID 1, or the oldest process of
    /// these names.
    Proxy(Vec<String>),
    /// The app container's (`quiesce`): PID 1, or the oldest process of the
    /// hook's uid but the hook.
    App,
}

/// Where `--log-file` goes, resolved before the log is opened: a path, and
/// what the resolving of `auto` has to say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Target {
    /// The file to append to, if any.
    pub path: Option<PathBuf>,
    /// For the log: where `auto` found the container's log, and why.
    pub note: Option<String>,
    /// For stderr: why `auto` found nothing.
    pub warning: Option<String>,
}

impl Target {
    /// Resolves `--log-file`: a path as given, or `auto` as
    /// [`procread::proxy_log`] finds the container's own log (`whose`) under
    /// `proc_root` for this process's effective uid. `not_ours` are the
    /// hook's own pids (the hook, its log writer): never the app.
    pub fn resolve(
        log_file: Option<&LogFile>,
        proc_root: &Path,
        whose: &Whose,
        not_ours: &[i32],
    ) -> Self {
        match log_file {
            None => Target::default(),
            Some(LogFile::Path(p)) => Target {
                path: Some(p.clone()),
                ..Target::default()
            },
            Some(LogFile::Auto) => {
                let uid = rustix::process::geteuid().as_raw();
                let names: &[String] = match whose {
                    Whose::Proxy(names) => names,
                    Whose::App => &[],
                };
                let is_main = |h: &Holder| match whose {
                    Whose::Proxy(names) => is_proxy_process(h, names),
                    Whose::App => !not_ours.contains(&h.pid),
                };
                match procread::proxy_log(proc_root, uid, is_main, names) {
                    Ok((path, why)) => Target {
                        note: Some(format!("log: also to {} ({why})", path.display())),
                        path: Some(path),
                        warning: None,
                    },
                    Err(why) => Target {
                        warning: Some(format!("--log-file auto: {why}; logging to stderr only")),
                        ..Target::default()
                    },
                }
            }
        }
    }
}
