//! prestop-wait: hold a mesh proxy's shutdown until the app in its pod is done with the network.
//!
//! Layout: [`procread`] gathers `/proc` into plain structs, [`decide`] is the
//! pure rule set, [`render`] writes text or JSON, [`waiter`] is the polling
//! loop behind a clock seam, [`cli`] turns arguments into one [`cli::Config`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod decide;
pub mod drain;
pub mod exit_codes;
pub mod poll;
pub mod procread;
pub mod render;
pub mod waiter;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Parser;

use cli::{Cli, Config, Mode};
use exit_codes::ExitCode;
use poll::Poller;
use waiter::{Clock, Outcome, SystemClock, WaitOptions};

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
        Mode::Sleep(d) => {
            SystemClock.sleep(d);
            Ok(ExitCode::Success)
        }
        Mode::Wait {
            options,
            quiet,
            drain,
            log_file,
        } => {
            let clock = SystemClock;
            let start = clock.now();
            let mut file = None;
            if let Some(path) = &log_file {
                match open_log_file(path) {
                    Ok(f) => file = Some(LineWriter::new(f)),
                    // The hook must not fail over its own logging; said even
                    // with --quiet, since otherwise nothing would be said at all.
                    Err(e) => {
                        let _ = writeln!(
                            stderr,
                            "prestop-wait: warning: cannot open --log-file {}: {e}",
                            path.display()
                        );
                    }
                }
            }
            let mut log = Tee {
                stderr: (!quiet).then_some(stderr as &mut dyn Write),
                file,
            };
            let _ = writeln!(
                log,
                "{}",
                start_line(&config.rules, &config.proc_root, &options)
            );
            if let Some(warning) = budget_warning(&options) {
                let _ = writeln!(log, "prestop-wait: warning: {warning}");
            }
            if let Some(target) = &drain {
                let _ = match drain::post(target) {
                    Ok(status) => {
                        writeln!(log, "prestop-wait: drain: POST {} -> {status}", target.url)
                    }
                    Err(e) => writeln!(
                        log,
                        "prestop-wait: drain: POST {} failed: {e:#}; waiting anyway",
                        target.url
                    ),
                };
            }
            let mut poller = Poller::new(config.proc_root, config.rules, false);
            let outcome = waiter::wait_loop(&clock, start, &options, || poller.poll(), &mut log)?;
            let _ = log.flush();
            Ok(match outcome {
                Outcome::Drained(_) => ExitCode::Success,
                Outcome::DeadlineExceeded(_) => ExitCode::Blocked,
            })
        }
    }
}

/// Writes every log line to stderr (unless `--quiet`) and to `--log-file`.
struct Tee<'a> {
    stderr: Option<&'a mut dyn Write>,
    file: Option<LineWriter<File>>,
}

impl Write for Tee<'_> {
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

/// Opens for append without creating: `/proc/1/fd/2` is a pipe or a tty, and
/// the root filesystem of a proxy container is read-only anyway; a path in a
/// writable volume is created.
fn open_log_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

fn start_line(rules: &decide::Rules, proc_root: &Path, o: &WaitOptions) -> String {
    let mut line = format!(
        "prestop-wait: waiting up to {} (every {}) for sockets not owned by proxy uids {:?} or processes {:?} in {}",
        waiter::fmt_duration(o.timeout),
        waiter::fmt_duration(o.interval),
        rules.proxy_uids,
        rules.proxy_names,
        proc_root.display(),
    );
    if !o.min_wait.is_zero() {
        line.push_str(&format!(", at least {}", waiter::fmt_duration(o.min_wait)));
    }
    if !o.quiet_period.is_zero() {
        line.push_str(&format!(
            ", quiet period {}",
            waiter::fmt_duration(o.quiet_period)
        ));
    }
    if !rules.ignore_ports.is_empty() {
        line.push_str(&format!(", ignoring ports {:?}", rules.ignore_ports));
    }
    if rules.listen_only {
        line.push_str(", LISTEN sockets only");
    }
    line
}

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Istio's default `terminationDrainDuration`, which runs after the hook.
const DEFAULT_PROXY_DRAIN: Duration = Duration::from_secs(5);

/// The kubelet kills the whole pod at the grace period, hook or not; a hook
/// that may run longer than the grace period minus the proxy's own drain
/// makes the proxy die mid-drain. Returns the warning to log, if any.
pub fn budget_warning(o: &WaitOptions) -> Option<String> {
    let worst = o.timeout.max(o.min_wait) + DEFAULT_PROXY_DRAIN;
    (worst > DEFAULT_GRACE).then(|| {
        format!(
            "--timeout {} plus the proxy's default {} drain is over the default {}s terminationGracePeriodSeconds; set terminationGracePeriodSeconds to at least {} (and keep terminationDrainDuration in the sum)",
            waiter::fmt_duration(o.timeout),
            waiter::fmt_duration(DEFAULT_PROXY_DRAIN),
            DEFAULT_GRACE.as_secs(),
            worst.as_secs() + u64::from(worst.subsec_nanos() > 0)
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(timeout: u64, min_wait: u64) -> WaitOptions {
        WaitOptions {
            timeout: Duration::from_secs(timeout),
            interval: Duration::from_millis(250),
            min_wait: Duration::from_secs(min_wait),
            quiet_period: Duration::ZERO,
        }
    }

    #[test]
    fn budget_warning_only_past_grace_minus_drain() {
        assert_eq!(budget_warning(&opts(25, 0)), None);
        assert_eq!(budget_warning(&opts(25, 25)), None);
        let w = budget_warning(&opts(26, 0)).unwrap();
        assert!(w.contains("--timeout 26s"), "{w}");
        assert!(w.contains("at least 31"), "{w}");
        let mut o = opts(25, 0);
        o.timeout += Duration::from_millis(1);
        assert!(budget_warning(&o).unwrap().contains("at least 31"));
    }

    #[test]
    fn start_line_names_only_what_is_set() {
        let rules = decide::Rules {
            proxy_uids: vec![1337],
            proxy_names: vec!["envoy".into()],
            ignore_ports: vec![],
            listen_only: false,
        };
        let l = start_line(&rules, Path::new("/proc"), &opts(25, 0));
        assert_eq!(
            l,
            "prestop-wait: waiting up to 25s (every 250ms) for sockets not owned by proxy uids [1337] or processes [\"envoy\"] in /proc"
        );
        let mut o = opts(25, 5);
        o.quiet_period = Duration::from_secs(2);
        let rules = decide::Rules {
            ignore_ports: vec![9090],
            listen_only: true,
            ..rules
        };
        let l = start_line(&rules, Path::new("/proc"), &o);
        assert!(
            l.ends_with(
                ", at least 5s, quiet period 2s, ignoring ports [9090], LISTEN sockets only"
            ),
            "{l}"
        );
    }
}
