//! One module per command; [`crate::run`] only dispatches to them.

pub mod check;
pub mod install;
pub mod quiesce;
pub mod wait;

use std::path::Path;

use crate::exit_codes::ExitCode;
use crate::log::Log;
use crate::procread::netlink::Diag;
use crate::source::{Chosen, Kind, ProcTables};
use crate::waiter::Clock;

/// The source a hook (`wait`, `quiesce`) reads, opened as `kind` asks with
/// the netlink socket set up by `setup`, and probed once. Where that cannot
/// be opened (`--source netlink` where netlink is denied), the hook fails
/// safe, as for a bad flag: it says so, counts it in `errors` (exit 2 at
/// the end) and `doing` goes on from the tables.
pub fn hook_source(
    kind: Kind,
    proc_root: &Path,
    setup: impl FnOnce(Diag) -> Diag,
    log: &mut Log<'_>,
    errors: &mut usize,
    doing: &str,
) -> Chosen {
    let mut source = Chosen::open_with(kind, proc_root, setup).unwrap_or_else(|e| {
        *errors += 1;
        log.error(format_args!(
            "{e:#}; {doing} on the tables instead, then exit 2"
        ));
        Chosen::Proc(ProcTables::new(proc_root.to_path_buf()), None)
    });
    // A failed probe is the first look's to report, as any read error is.
    let _ = source.probe();
    source
}

/// `sleep DURATION`: a `sleep` for distroless app images.
pub fn sleep(duration: std::time::Duration, clock: &impl Clock) -> ExitCode {
    clock.sleep(duration);
    ExitCode::Success
}
