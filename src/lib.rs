//! prestop-wait: hold a mesh proxy's shutdown until the app in its pod is done with the network.
//!
//! Layout: [`cli`] turns arguments into one config per command; [`commands`]
//! holds one module per command. Under them, one look at the pod is one
//! [`pass`]: rows from a [`source`] (the tables [`procread`] reads), each
//! decided once by [`decide`] (the pure rule set), pushed into a [`sink`]
//! (the table, JSON, `wait`'s tally); [`render`] writes text, JSON or log
//! fragments; [`waiter`] is the polling loop behind a clock seam; [`log`]
//! and [`drain`] are `wait`'s side effects.

pub mod cli;
pub mod commands;
pub mod decide;
pub mod drain;
pub mod exit_codes;
#[doc(hidden)]
pub mod fixture;
pub mod hook;
pub mod log;
pub mod pass;
pub mod procread;
pub mod render;
pub mod sink;
pub mod source;
pub mod stdout;
pub mod time;
pub mod traffic;

use std::ffi::OsString;
use std::io::Write;

use anyhow::Result;

use cli::{Config, Parsed};
use exit_codes::ExitCode;
use time::SystemClock;

/// Parses arguments (and `PRESTOP_WAIT_*` variables) and runs the command.
///
/// `stdout` gets `check` output and `--help`; `stderr` gets `wait`'s log.
/// Errors come back for `main` to print as one line.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    stdout: &mut impl Write,
    stderr: &mut dyn Write,
) -> Result<ExitCode> {
    match cli::parse(args)? {
        Parsed::Print(text) => {
            stdout.write_all(text.as_bytes())?;
            Ok(ExitCode::Success)
        }
        Parsed::Run(Config::Check(config)) => commands::check::run(config, stdout),
        Parsed::Run(Config::Wait(config)) => commands::wait::run(config, &SystemClock, stderr),
        Parsed::Run(Config::Quiesce(config)) => {
            commands::quiesce::run(config, &SystemClock, stderr)
        }
        Parsed::Run(Config::Sleep(duration)) => Ok(commands::sleep(duration, &SystemClock)),
        Parsed::Run(Config::Install(dir)) => commands::install::run(&dir, stdout),
    }
}
