//! `quiesce`: the app container's preStop. After a pod is deleted, its
//! endpoint's removal reaches kube-proxy, ingresses and every mesh proxy
//! over seconds, and requests keep arriving until then. Instead of a guessed
//! `sleep`, this looks at the pod's sockets every interval and holds until no
//! inbound traffic has reached the app's ports for `--idle` (and
//! `--min-wait` has passed), or the deadline passes.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;

use crate::cli::{QuiesceConfig, QuiesceTiming};
use crate::exit_codes::ExitCode;
use crate::log::{Log, Target, Whose, say};
use crate::procread::{Stopped, Table, netlink::ALL_STATES};
use crate::render::{self, Addr};
use crate::source::{Chosen, Source};
use crate::traffic::{Look, Sign, Traffic, TrafficRules, Watch};
use crate::waiter::{self, Clock, after, fmt_duration};

/// Runs `quiesce`, logging to `stderr` (and `--log-file`). Errors are
/// logged, not returned, as `wait` does: the log file is where a hook's
/// output is read.
pub fn run(config: QuiesceConfig, clock: &impl Clock, stderr: &mut dyn Write) -> Result<ExitCode> {
    let start = clock.now();
    let timing = config.timing;
    let deadline = after(start, timing.timeout);
    let target = Target::resolve(config.log_file.as_ref(), &config.proc_root, Whose::App);
    let note = target.note.clone();
    let mut log = Log::open(stderr, config.quiet, target);
    let mut errors = config.config_errors.len();
    for error in &config.config_errors {
        log.error(format_args!(
            "{error}; holding without it (its default), then exit 2"
        ));
    }
    let mut source = super::hook_source(
        config.source,
        &config.proc_root,
        |d| d.with_info().with_states(ALL_STATES),
        &mut log,
        &mut errors,
        "holding",
    );
    say(
        &mut log,
        format_args!(
            "{}; sockets from {}",
            start_line(&config.rules, &timing),
            source.origin()
        ),
    );
    if let Some(note) = note.filter(|_| log.has_file()) {
        say(&mut log, format_args!("{note}"));
    }
    let mut hold = Hold::new(start, timing, !config.rules.ports.is_empty());
    let mut watch = Watch::new(config.rules);
    let cut = !timing.timeout.is_zero();
    let stop = || cut && clock.now() > deadline;
    let mut interval = timing.interval;
    let (mut warned_error, mut warned_cost, mut said_coarse) = (false, false, false);
    loop {
        // Said once, at the start or when netlink failed over to the tables.
        if source.name() == "proc" && !said_coarse {
            say(&mut log, format_args!("note: {COARSE}"));
            said_coarse = true;
        }
        let at = clock.now();
        let looked = look(&mut source, &mut watch, at, &stop);
        let done = clock.now();
        match looked {
            Ok(l) => {
                let cost = done.saturating_duration_since(at);
                // As for `wait`: the hook must not take a core from a pod
                // shutting down.
                let wanted = waiter::stretched(cost, timing.interval);
                if wanted.as_millis() > interval.as_millis() && !warned_cost {
                    say(
                        &mut log,
                        format_args!(
                            "a look takes {}, over 5% of the {} interval: looking every {} instead",
                            fmt_duration(cost),
                            fmt_duration(timing.interval),
                            fmt_duration(wanted)
                        ),
                    );
                    warned_cost = true;
                }
                interval = wanted;
                for line in hold.observe(&l, at, watch.listening()) {
                    say(&mut log, format_args!("{line}"));
                }
            }
            Err(e) if e.is::<Stopped>() => {}
            Err(e) if !hold.looked() => {
                log.error(format_args!("{e:#}"));
                let _ = log.flush();
                return Ok(ExitCode::Error);
            }
            Err(e) => {
                if !warned_error {
                    say(
                        &mut log,
                        format_args!(
                            "a look failed, keeping what the last one saw and looking on: {e:#}"
                        ),
                    );
                    warned_error = true;
                }
            }
        }
        let now = clock.now();
        if let Some((quiet, line)) = hold.outcome(now) {
            say(&mut log, format_args!("{line}"));
            let _ = log.flush();
            return Ok(match (errors, quiet) {
                (1.., _) => ExitCode::Error,
                (0, true) => ExitCode::Success,
                (0, false) => ExitCode::Blocked,
            });
        }
        let wake = after(now, interval).min(hold.release()).min(deadline);
        clock.sleep(wake.saturating_duration_since(now));
    }
}

/// Said once when the tables are the source.
const COARSE: &str = "the tables carry no tcp_info, so this is coarser: data on a kept-alive connection shows only while bytes wait in its queues; new, ended and queued connections show at every look; traffic is assumed until --idle after the start";

/// One look at both tables.
fn look(
    source: &mut Chosen,
    watch: &mut Watch,
    at: Instant,
    stop: &dyn Fn() -> bool,
) -> Result<Look> {
    let mut l = watch.begin();
    for table in [Table::Tcp, Table::Tcp6] {
        source.read(table, stop, &mut |s| watch.row(&mut l, at, &s))?;
    }
    Ok(watch.finish(l))
}

fn start_line(rules: &TrafficRules, t: &QuiesceTiming) -> String {
    let mut line = format!(
        "quiescing: holding up to {} (every {}) until no inbound traffic for {} on ",
        fmt_duration(t.timeout),
        fmt_duration(t.interval),
        fmt_duration(t.idle),
    );
    if rules.ports.is_empty() {
        line.push_str(&format!(
            "the app's listening ports (not proxy uids {:?})",
            rules.proxy_uids
        ));
    } else {
        line.push_str(&format!("ports {:?}", rules.ports));
    }
    if !t.min_wait.is_zero() {
        line.push_str(&format!(", at least {}", fmt_duration(t.min_wait)));
    }
    if !rules.ignore_uids.is_empty() {
        line.push_str(&format!(", ignoring uids {:?}", rules.ignore_uids));
    }
    if !rules.ignore_ports.is_empty() {
        line.push_str(&format!(", ignoring ports {:?}", rules.ignore_ports));
    }
    line
}

/// What the hold knows between looks, and the lines it says: pure, on
/// instants, so that tests run it on made-up times.
#[derive(Debug)]
struct Hold {
    start: Instant,
    timing: QuiesceTiming,
    earliest: Instant,
    deadline: Instant,
    /// When traffic last arrived (the start until a look says later: what
    /// happened before the first look cannot be known).
    last: Instant,
    /// Which traffic that was.
    latest: Option<Traffic>,
    /// When the last finished look started.
    looked_at: Option<Instant>,
    /// Whether traffic is arriving, as last said.
    arriving: bool,
    /// The app's ports, as last said.
    ports: Option<Vec<u16>>,
    /// `--port` was given: its ports count without a listener.
    ports_given: bool,
    connections: usize,
    queued: u32,
}

impl Hold {
    fn new(start: Instant, timing: QuiesceTiming, ports_given: bool) -> Self {
        Hold {
            start,
            timing,
            earliest: after(start, timing.min_wait),
            deadline: after(start, timing.timeout),
            last: start,
            latest: None,
            looked_at: None,
            arriving: false,
            ports: None,
            ports_given,
            connections: 0,
            queued: 0,
        }
    }

    fn looked(&self) -> bool {
        self.looked_at.is_some()
    }

    /// When the hold may end, if no traffic comes first.
    fn release(&self) -> Instant {
        after(self.last, self.timing.idle).max(self.earliest)
    }

    fn since(&self, t: Instant) -> String {
        fmt_duration(t.saturating_duration_since(self.start))
    }

    /// Takes in a look started at `at` when the app listens on `ports`;
    /// returns the lines to log: the ports when they change, traffic when
    /// it starts to arrive and when it stops.
    fn observe(&mut self, l: &Look, at: Instant, ports: &[u16]) -> Vec<String> {
        let mut lines = Vec::new();
        let stamp = self.since(at);
        if self.ports.as_deref() != Some(ports) {
            lines.push(match (ports.is_empty(), self.ports_given) {
                (true, false) => format!(
                    "[{stamp}] the app listens on no port (no LISTEN socket outside the proxy's and ignored uids): no inbound traffic to hold for"
                ),
                (true, true) => format!(
                    "[{stamp}] nothing listens on the --port ports; their connections count all the same"
                ),
                (false, _) => format!(
                    "[{stamp}] the app listens on {}; {} open, {} queued",
                    ports_list(ports),
                    render::count(l.connections, "connection", "connections"),
                    l.queued
                ),
            });
            self.ports = Some(ports.to_vec());
        }
        self.connections = l.connections;
        self.queued = l.queued;
        // Traffic at the very start is news only until something is seen.
        let fresh = l
            .latest
            .filter(|t| t.at > self.last || (self.latest.is_none() && t.at >= self.last));
        if let Some(t) = fresh {
            self.last = t.at;
            self.latest = Some(t);
        }
        // Arriving: traffic within half the idle window. The half keeps
        // requests a little apart from flapping the log every look.
        let quiet_for = at.saturating_duration_since(self.last);
        let arriving = self.latest.is_some() && quiet_for < self.timing.idle / 2;
        match (self.arriving, arriving, &self.latest) {
            (false, true, Some(t)) => lines.push(format!(
                "[{stamp}] traffic arriving: {}",
                describe(t, self.start)
            )),
            (true, false, Some(t)) => lines.push(format!(
                "[{stamp}] traffic stopped: none for {}; the last: {}",
                fmt_duration(quiet_for),
                describe(t, self.start)
            )),
            _ => {}
        }
        self.arriving = arriving;
        self.looked_at = Some(at);
        lines
    }

    /// Whether the hold is over at `now`: `(quiet, last line)`.
    fn outcome(&self, now: Instant) -> Option<(bool, String)> {
        let looked_at = self.looked_at?;
        let took = fmt_duration(now.saturating_duration_since(self.start));
        let idle = fmt_duration(self.timing.idle);
        let last = match &self.latest {
            Some(t) => format!("the last: {}", describe(t, self.start)),
            None => "none seen since the start".to_owned(),
        };
        if looked_at >= self.release() {
            return Some((
                true,
                format!("no inbound traffic for {idle} ({last}); done after {took}"),
            ));
        }
        if now < self.deadline {
            return None;
        }
        // At the deadline, judged by the last look that finished: quiet if
        // traffic stopped --idle ago, or none came at all (--idle longer
        // than --timeout).
        if self.latest.is_none() || after(self.last, self.timing.idle) <= now {
            return Some((
                true,
                format!(
                    "no inbound traffic for {idle} ({last}); done after {took} (deadline reached while holding)"
                ),
            ));
        }
        Some((
            false,
            format!(
                "deadline {} passed (at {took}); traffic still arriving: {last}; {} open, {} queued",
                fmt_duration(self.timing.timeout),
                render::count(self.connections, "connection", "connections"),
                self.queued
            ),
        ))
    }
}

fn ports_list(ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "{} {}",
        if ports.len() == 1 { "port" } else { "ports" },
        list.join(", ")
    )
}

/// One sign of traffic, for the log.
fn describe(t: &Traffic, start: Instant) -> String {
    let when = fmt_duration(t.at.saturating_duration_since(start));
    match t.sign {
        Sign::Data(_) => format!(
            "{} -> {} received data at {when}",
            Addr(&t.remote),
            Addr(&t.local)
        ),
        Sign::New => format!(
            "{} -> {} appeared by {when}",
            Addr(&t.remote),
            Addr(&t.local)
        ),
        Sign::Changed => format!(
            "{} -> {} had bytes moving by {when}",
            Addr(&t.remote),
            Addr(&t.local)
        ),
        Sign::Backlog(n) => format!(
            "{} accept queue changed by {when} ({n} waiting)",
            Addr(&t.local)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn timing(idle: u64, min_wait: u64, timeout: u64) -> QuiesceTiming {
        QuiesceTiming {
            timeout: Duration::from_secs(timeout),
            interval: Duration::from_millis(100),
            idle: Duration::from_secs(idle),
            min_wait: Duration::from_secs(min_wait),
        }
    }

    fn data(start: Instant, at_ms: u64) -> Look {
        Look {
            latest: Some(Traffic {
                at: start + Duration::from_millis(at_ms),
                local: "10.0.0.5:8080".parse().unwrap(),
                remote: "127.0.0.6:40000".parse().unwrap(),
                sign: Sign::Data(Duration::ZERO),
            }),
            connections: 1,
            queued: 0,
        }
    }

    #[test]
    fn idle_is_counted_from_the_start_until_a_look_says_later() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Hold::new(t0, timing(2, 0, 25), false);
        h.observe(&Look::default(), t0, &[8080]);
        assert_eq!(h.outcome(t0), None);
        assert_eq!(h.release(), t0 + ms(2000));
        let (quiet, line) = {
            h.observe(&Look::default(), t0 + ms(2000), &[8080]);
            h.outcome(t0 + ms(2000)).unwrap()
        };
        assert!(quiet);
        assert_eq!(
            line,
            "no inbound traffic for 2s (none seen since the start); done after 2s"
        );
    }

    #[test]
    fn traffic_moves_the_release_and_is_said_when_it_starts_and_stops() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Hold::new(t0, timing(2, 0, 25), false);
        let lines = h.observe(&data(t0, 0), t0 + ms(100), &[8080]);
        assert_eq!(
            lines,
            [
                "[100ms] the app listens on port 8080; 1 connection open, 0 queued",
                "[100ms] traffic arriving: 127.0.0.6:40000 -> 10.0.0.5:8080 received data at 0s",
            ]
        );
        // Data at 1.5s: the release moves to 3.5s; nothing to say.
        assert!(
            h.observe(&data(t0, 1500), t0 + ms(1600), &[8080])
                .is_empty()
        );
        assert_eq!(h.release(), t0 + ms(3500));
        // Older data than already seen changes nothing.
        assert!(
            h.observe(&data(t0, 1000), t0 + ms(1700), &[8080])
                .is_empty()
        );
        assert_eq!(h.release(), t0 + ms(3500));
        // Half the idle window without: stopped.
        let lines = h.observe(&data(t0, 1500), t0 + ms(2500), &[8080]);
        assert_eq!(
            lines,
            [
                "[2s 500ms] traffic stopped: none for 1s; the last: 127.0.0.6:40000 -> 10.0.0.5:8080 received data at 1s 500ms"
            ]
        );
        assert_eq!(h.outcome(t0 + ms(2500)), None);
        h.observe(&Look::default(), t0 + ms(3500), &[8080]);
        assert!(h.outcome(t0 + ms(3500)).unwrap().0);
    }

    #[test]
    fn min_wait_is_a_floor() {
        let t0 = Instant::now();
        let h = Hold::new(t0, timing(2, 5, 25), false);
        assert_eq!(h.release(), t0 + Duration::from_secs(5));
    }

    #[test]
    fn traffic_to_the_deadline_is_exit_1_and_says_the_last() {
        let t0 = Instant::now();
        let mut h = Hold::new(t0, timing(2, 0, 3), false);
        h.observe(&data(t0, 2900), t0 + Duration::from_millis(2950), &[8080]);
        let (quiet, line) = h.outcome(t0 + Duration::from_secs(3)).unwrap();
        assert!(!quiet);
        assert_eq!(
            line,
            "deadline 3s passed (at 3s); traffic still arriving: the last: 127.0.0.6:40000 -> 10.0.0.5:8080 received data at 2s 900ms; 1 connection open, 0 queued"
        );
    }

    #[test]
    fn quiet_at_the_deadline_is_quiet() {
        // --min-wait equal to --timeout: the release is the deadline.
        let t0 = Instant::now();
        let mut h = Hold::new(t0, timing(2, 3, 3), false);
        h.observe(&data(t0, 500), t0 + Duration::from_millis(2900), &[8080]);
        let (quiet, line) = h.outcome(t0 + Duration::from_secs(3)).unwrap();
        assert!(quiet, "{line}");
        assert!(line.ends_with("(deadline reached while holding)"), "{line}");
    }

    #[test]
    fn no_traffic_at_all_is_quiet_at_the_deadline_whatever_idle_is() {
        let t0 = Instant::now();
        let mut h = Hold::new(t0, timing(5, 0, 1), false);
        h.observe(&Look::default(), t0, &[8080]);
        let (quiet, line) = h.outcome(t0 + Duration::from_secs(1)).unwrap();
        assert!(quiet, "{line}");
        assert_eq!(
            line,
            "no inbound traffic for 5s (none seen since the start); done after 1s (deadline reached while holding)"
        );
    }

    #[test]
    fn no_listener_is_said() {
        let t0 = Instant::now();
        let mut h = Hold::new(t0, timing(2, 0, 25), false);
        let lines = h.observe(&Look::default(), t0, &[]);
        assert!(lines[0].contains("the app listens on no port"), "{lines:?}");
    }
}
