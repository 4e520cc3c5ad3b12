//! prestop-wait: the two halves of a pod's graceful shutdown. `wait` holds a
//! mesh proxy until the app in its pod is done with the network; `quiesce`
//! holds the app until inbound traffic has stopped arriving.
//!
//! The modules, from the top down; data flows down as calls and up as
//! plain values, and no module imports one above it:
//!
//! - [`cli`]: arguments and `PRESTOP_WAIT_*` into one config per command
//!   (the hooks fail safe on bad values); nothing past it sees clap.
//! - [`commands`]: one module per command. `wait` and `quiesce` are each a
//!   [`hook::Hook`] (what one look reads) and a [`hook::Judge`] (what the
//!   looks mean, pure); `check` is one [`pass`] and one look as `quiesce`
//!   would take its first; `install` and `sleep`.
//! - [`hook`]: a preStop hook's whole life, written once: the log, failing
//!   safe, the source, the deadline-keeping loop, the exit code.
//! - [`pass`]: one look for `wait` and `check`: rows from a [`source`],
//!   holders from the fd scan, each decided by [`decide`], pushed into a
//!   [`sink`] (`check`'s rows, `wait`'s tally) or [`render`]'s JSON sink.
//! - [`traffic`]: `quiesce`'s pure judgement of each look's rows: the
//!   freshest traffic and every arrival it can date;
//!   [`rhythm`]: when a silence means the traffic stopped (pure; `wait`
//!   judges the app's new connections by it too).
//! - [`render`]: the table, the JSON and the log fragments (text only).
//! - [`log`]: where the hooks' lines go, never blocking the hook;
//!   [`drain`]: `wait --drain`'s POST to the proxy, bounded by the deadline.
//! - [`source`]: netlink or the tables, chosen once; [`procread`]: the
//!   kernel read into plain structs (tables, netlink, the TCP destroy
//!   events, the namespace's counters, processes).
//! - Leaves: [`decide`] (whose socket is whose, and what blocks: pure),
//!   [`keys`] (address keys, port sets), [`time`] (the clock seam,
//!   saturating durations), [`decimal`] (numbers read and written without
//!   std's float formatting), [`exit_codes`], [`stdout`].

pub mod cli;
pub mod commands;
pub mod decide;
pub mod decimal;
pub mod drain;
pub mod exit_codes;
#[doc(hidden)]
pub mod fixture;
pub mod hook;
pub mod keys;
pub mod log;
pub mod pass;
pub mod procread;
pub mod render;
pub mod rhythm;
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
