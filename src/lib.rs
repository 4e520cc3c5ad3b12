//! prestop-wait: hold a mesh proxy's shutdown until the app in its pod is done with the network.
//!
//! Layout: [`procread`] gathers `/proc` into plain structs, [`decide`] is the
//! pure rule set, [`render`] writes text or JSON, [`waiter`] is the polling
//! loop behind a clock seam, [`cli`] turns arguments into one [`cli::Config`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod decide;
pub mod exit_codes;
pub mod poll;
pub mod procread;
pub mod render;
pub mod waiter;

use std::ffi::OsString;
use std::io::Write;

use anyhow::{Result, anyhow};
use clap::Parser;

use cli::{Cli, Config, Mode};
use exit_codes::ExitCode;
use poll::Poller;
use waiter::{Outcome, SystemClock};

/// Parses arguments (and `PRESTOP_WAIT_*` variables) and runs the command.
///
/// `stdout` gets `check` output and `--help`; `stderr` gets `wait`'s log.
/// Errors come back for `main` to print as one line.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> Result<ExitCode> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_outcome(e, stdout),
    };
    let config = Config::from_cli(cli)?;
    match config.mode {
        Mode::Check { json, all } => {
            let mut poller = Poller::new(config.proc_root, config.rules, all);
            let verdict = poller.poll()?;
            if json {
                render::write_json(stdout, &verdict, all)?;
            } else {
                render::write_text(stdout, &verdict, all)?;
            }
            stdout.flush()?;
            Ok(if verdict.blocking.is_empty() {
                ExitCode::Success
            } else {
                ExitCode::Blocked
            })
        }
        Mode::Wait { options, quiet } => {
            let mut sink = std::io::sink();
            let log: &mut dyn Write = if quiet { &mut sink } else { stderr };
            let mut log = log;
            let _ = writeln!(
                log,
                "prestop-wait: waiting up to {} (every {}, at least {}) for sockets not owned by proxy uids {:?} or processes {:?} in {}{}{}",
                waiter::fmt_duration(options.timeout),
                waiter::fmt_duration(options.interval),
                waiter::fmt_duration(options.min_wait),
                config.rules.proxy_uids,
                config.rules.proxy_names,
                config.proc_root.display(),
                if config.rules.ignore_ports.is_empty() {
                    String::new()
                } else {
                    format!(", ignoring ports {:?}", config.rules.ignore_ports)
                },
                if config.rules.listen_only {
                    ", LISTEN sockets only"
                } else {
                    ""
                },
            );
            let mut poller = Poller::new(config.proc_root, config.rules, false);
            let outcome = waiter::wait_loop(&SystemClock, &options, || poller.poll(), &mut log)?;
            Ok(match outcome {
                Outcome::Drained(_) => ExitCode::Success,
                Outcome::DeadlineExceeded(_) => ExitCode::Blocked,
            })
        }
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
