//! prestop-wait: hold a mesh proxy's shutdown until the app in its pod is done with the network.
//!
//! Layout: [`cli`] turns arguments into one config per command; [`commands`]
//! holds one module per command. Under them: [`procread`] gathers `/proc`
//! into plain structs, [`poll`] runs one look at the pod, [`decide`] is the
//! pure rule set, [`render`] writes text, JSON or log fragments, [`waiter`] is
//! the polling loop behind a clock seam, [`log`] and [`drain`] are `wait`'s
//! side effects.

pub mod cli;
pub mod commands;
pub mod decide;
pub mod drain;
pub mod exit_codes;
pub mod log;
pub mod poll;
pub mod procread;
pub mod render;
pub mod waiter;

use std::ffi::OsString;
use std::io::Write;

use anyhow::{Result, anyhow};
use clap::Parser;

use cli::{Cli, Config};
use exit_codes::ExitCode;
use waiter::SystemClock;

/// Parses arguments (and `PRESTOP_WAIT_*` variables) and runs the command.
///
/// `stdout` gets `check` output and `--help`; `stderr` gets `wait`'s log.
/// Errors come back for `main` to print as one line.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    stdout: &mut impl Write,
    stderr: &mut dyn Write,
) -> Result<ExitCode> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_outcome(e, stdout),
    };
    match Config::from_cli(cli)? {
        Config::Check(config) => commands::check::run(config, stdout),
        Config::Wait(config) => commands::wait::run(config, &SystemClock, stderr),
        Config::Sleep(duration) => Ok(commands::sleep(duration, &SystemClock)),
        Config::Install(dir) => commands::install::run(&dir, stdout),
    }
}

/// `--help` and `--version` are successes printed to stdout; every other clap
/// error becomes one line naming the flag, instead of clap's multi-line usage.
fn clap_outcome(e: clap::Error, stdout: &mut impl Write) -> Result<ExitCode> {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            write!(stdout, "{}", e.render())?;
            Ok(ExitCode::Success)
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            Err(anyhow!("{first} (see --help)"))
        }
    }
}
