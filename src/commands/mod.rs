//! One module per command; [`crate::run`] only dispatches to them.

pub mod check;
pub mod install;
pub mod quiesce;
pub mod wait;

use crate::exit_codes::ExitCode;
use crate::time::Clock;

/// `sleep DURATION`: a `sleep` for distroless app images.
pub fn sleep(duration: std::time::Duration, clock: &impl Clock) -> ExitCode {
    clock.sleep(duration);
    ExitCode::Success
}
