//! `wait`: the preStop hook itself. Logs what it will do, drains the proxy's
//! inbound listeners if asked, then polls until nothing blocks or the deadline.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::WaitConfig;
use crate::decide::Rules;
use crate::drain::{self, DrainTarget};
use crate::exit_codes::ExitCode;
use crate::log::{Log, Target, Whose, say};
use crate::pass::Pass;
use crate::sink::Tally;
use crate::waiter::{self, Clock, Outcome, WaitOptions};

/// Runs `wait`, logging to `stderr` (and `--log-file`).
///
/// Its errors are logged here, not returned: an error line must reach the
/// log file too, the one place a hook's output is read. Flags that were
/// wrong (see [`crate::cli::parse`]) are said first; the wait goes on
/// without them and ends with exit 2, whatever it found.
pub fn run(config: WaitConfig, clock: &impl Clock, stderr: &mut dyn Write) -> Result<ExitCode> {
    let start = clock.now();
    let deadline = waiter::after(start, config.timing.timeout);
    let target = Target::resolve(
        config.log_file.as_ref(),
        &config.pod.proc_root,
        Whose::Proxy(&config.pod.rules.proxy_names),
    );
    let note = target.note.clone();
    let mut log = Log::open(stderr, config.quiet, target);
    let mut errors = config.config_errors.len();
    for error in &config.config_errors {
        log.error(format_args!(
            "{error}; waiting without it (its default), then exit 2"
        ));
    }
    let source = super::hook_source(
        config.pod.source,
        &config.pod.proc_root,
        |d| d,
        &mut log,
        &mut errors,
        "waiting",
    );
    say(
        &mut log,
        format_args!(
            "{}; sockets from {}",
            start_line(&config.pod.rules, &config.pod.proc_root, &config.timing),
            source.origin()
        ),
    );
    if let Some(note) = note.filter(|_| log.has_file()) {
        say(&mut log, format_args!("{note}"));
    }
    if let Some(warning) = budget_warning(&config.timing, config.grace_period) {
        say(&mut log, format_args!("warning: {warning}"));
    }
    if let Some(target) = &config.drain {
        drain_proxy(target, clock, deadline, &mut log);
    }
    let mut pass = Pass::new(source, config.pod.proc_root, config.pod.rules);
    let silent = log.is_silent();
    let outcome = waiter::wait_loop(
        clock,
        start,
        &config.timing,
        |stop| pass.run(Tally::new(waiter::DEADLINE_SOCKETS), stop),
        (!silent).then_some(&mut log as &mut dyn Write),
    );
    let code = match outcome {
        Ok(_) if errors > 0 => ExitCode::Error,
        Ok(Outcome::Drained(_)) => ExitCode::Success,
        Ok(Outcome::DeadlineExceeded(_)) => ExitCode::Blocked,
        Err(e) => {
            log.error(format_args!("{e:#}"));
            ExitCode::Error
        }
    };
    let _ = log.flush();
    Ok(code)
}

/// `--drain`: one POST, bounded by its own budget and by the deadline; a
/// failure is logged and the wait goes on.
fn drain_proxy(target: &DrainTarget, clock: &impl Clock, deadline: Instant, log: &mut impl Write) {
    let until = deadline.min(waiter::after(clock.now(), drain::BUDGET));
    match drain::post(target, clock, until) {
        Ok((status, via)) if via == target.addr => {
            say(log, format_args!("drain: POST {} -> {status}", target.url));
        }
        Ok((status, via)) => say(
            log,
            format_args!(
                "drain: POST {} -> {status} (via {via}; {} could not be reached)",
                target.url, target.addr
            ),
        ),
        Err(e) => say(
            log,
            format_args!("drain: POST {} failed: {e:#}; waiting anyway", target.url),
        ),
    }
}

fn start_line(rules: &Rules, proc_root: &Path, o: &WaitOptions) -> String {
    let mut line = format!(
        "waiting up to {} (every {}) for sockets not owned by proxy uids {:?} or processes {:?} in {}",
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
    if !rules.ignore_uids.is_empty() {
        line.push_str(&format!(", ignoring uids {:?}", rules.ignore_uids));
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
/// makes the proxy die mid-drain. `grace` is `--grace-period`, when stated;
/// otherwise Kubernetes' default is assumed, and the warning says so.
/// Returns the warning to log, if any.
pub fn budget_warning(o: &WaitOptions, grace: Option<Duration>) -> Option<String> {
    let worst = o.timeout.max(o.min_wait) + DEFAULT_PROXY_DRAIN;
    let (limit, whose) = match grace {
        Some(g) => (g, "the pod's"),
        None => (DEFAULT_GRACE, "the default"),
    };
    (worst > limit).then(|| {
        format!(
            "--timeout {} plus the proxy's default {} drain is over {whose} {} terminationGracePeriodSeconds; set terminationGracePeriodSeconds to at least {} (and keep terminationDrainDuration in the sum){}",
            waiter::fmt_duration(o.timeout.max(o.min_wait)),
            waiter::fmt_duration(DEFAULT_PROXY_DRAIN),
            waiter::fmt_duration(limit),
            worst.as_secs() + u64::from(worst.subsec_nanos() > 0),
            if grace.is_none() { ", and pass it as --grace-period" } else { "" }
        )
    })
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
        assert_eq!(budget_warning(&opts(25, 0), None), None);
        assert_eq!(budget_warning(&opts(25, 25), None), None);
        let w = budget_warning(&opts(26, 0), None).unwrap();
        assert!(w.contains("--timeout 26s"), "{w}");
        assert!(
            w.contains("over the default 30s terminationGracePeriodSeconds"),
            "{w}"
        );
        assert!(w.contains("at least 31"), "{w}");
        assert!(w.ends_with("and pass it as --grace-period"), "{w}");
        let mut o = opts(25, 0);
        o.timeout += Duration::from_millis(1);
        assert!(budget_warning(&o, None).unwrap().contains("at least 31"));
    }

    #[test]
    fn a_stated_grace_period_replaces_the_default() {
        let s = Duration::from_secs;
        // The per-workload example: 60s + 5s fits 75s.
        assert_eq!(budget_warning(&opts(60, 5), Some(s(75))), None);
        let w = budget_warning(&opts(60, 0), Some(s(60))).unwrap();
        assert!(
            w.contains("over the pod's 1m terminationGracePeriodSeconds"),
            "{w}"
        );
        assert!(w.contains("at least 65"), "{w}");
        assert!(!w.contains("--grace-period"), "{w}");
        // A short grace period warns even at the default timeout.
        assert!(budget_warning(&opts(25, 0), Some(s(20))).is_some());
    }

    #[test]
    fn start_line_names_only_what_is_set() {
        let rules = Rules {
            proxy_uids: vec![1337],
            proxy_names: vec!["envoy".into()],
            ..Rules::default()
        };
        let l = start_line(&rules, Path::new("/proc"), &opts(25, 0));
        assert_eq!(
            l,
            "waiting up to 25s (every 250ms) for sockets not owned by proxy uids [1337] or processes [\"envoy\"] in /proc"
        );
        let mut o = opts(25, 5);
        o.quiet_period = Duration::from_secs(2);
        let rules = Rules {
            ignore_uids: vec![65532],
            ignore_ports: vec![9090],
            listen_only: true,
            ..rules
        };
        let l = start_line(&rules, Path::new("/proc"), &o);
        assert!(
            l.ends_with(
                ", at least 5s, quiet period 2s, ignoring uids [65532], ignoring ports [9090], LISTEN sockets only"
            ),
            "{l}"
        );
    }
}
