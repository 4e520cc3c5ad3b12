//! The `wait` loop: poll until nothing blocks or the deadline passes.
//!
//! Time comes through [`Clock`] so tests run the loop on a fake clock, to the
//! millisecond and without sleeping.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::procread::Stopped;
use crate::sink::Summary;
use crate::{log, render};

/// How long to wait and how often to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOptions {
    /// Hard limit from the start of the hook.
    pub timeout: Duration,
    /// Time between polls.
    pub interval: Duration,
    /// Never report drained before this much time has passed.
    pub min_wait: Duration,
    /// Report drained only after nothing has blocked for this long.
    pub quiet_period: Duration,
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing blocked any more, after this long.
    Drained(Duration),
    /// The deadline passed; this many sockets still blocked at the last poll
    /// that finished (`None`: no poll finished before the deadline).
    DeadlineExceeded(Option<usize>),
}

/// Source of time for the loop.
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Blocks for `d` (or advances a fake clock by it).
    fn sleep(&self, d: Duration);
}

/// The real clock: `Instant::now` is CLOCK_MONOTONIC, which does not jump
/// when NTP steps the wall clock during shutdown.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// How many sockets a change line names before `and N more`.
const LOG_SOCKETS: usize = 5;

/// How many the deadline line names; the owner summary after it counts the
/// rest. Polls keep this many in full, and no more.
pub const DEADLINE_SOCKETS: usize = 10;

/// The share of its interval a poll may cost before the interval stretches.
const CPU_SHARE: u32 = 20; // 1/20 = 5%

/// Where the loop's lines go: `None` when nobody reads them (`--quiet`
/// without `--log-file`), and then nothing is formatted at all.
pub type Lines<'a> = Option<&'a mut dyn Write>;

/// The interval in force after a poll that cost `took`: `interval`, or twenty
/// times the cost when that is longer, so polling takes at most 5% of a
/// core.
pub fn stretched(took: Duration, interval: Duration) -> Duration {
    took.saturating_mul(CPU_SHARE).max(interval)
}

/// `t + d`, saturating: no duration may abort the hook. (Flags are capped
/// at [`crate::cli::MAX_DURATION`]; this keeps the loop safe for any value.)
pub fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(crate::cli::MAX_DURATION))
        .unwrap_or(t)
}

/// Runs the loop. `start` is when the hook started (anything done before the
/// first poll, such as the drain call, counts against the deadline); `poll` is
/// one look at the pod, given a `stop` to ask between reads; `log` receives
/// the `prestop-wait: ` lines.
///
/// The first poll's error is returned (wrong `--proc`, unreadable table: a
/// configuration problem to report at once). A later error is logged once and
/// the last known state is kept: giving up early would let the proxy stop
/// under the app, which is the failure this tool prevents.
///
/// Nothing runs past the deadline. The last poll is started early enough
/// that the one before it says it will finish in time (its cost and half
/// again); the loop then sleeps to the deadline and judges by it. A poll
/// still running at the deadline (a slower one than the last, a drain call
/// that took the time) is cut short by its `stop`, and the verdict is the
/// last one that finished. `--timeout 0s` is the one exception: one poll,
/// uncut, so that `wait --timeout 0s` gives a verdict at all.
///
/// A poll that costs more than 5% of the interval (tens of thousands of
/// sockets, a slow node) stretches the interval to twenty times its cost,
/// said once: the hook must not take a core from a proxy that is draining.
pub fn wait_loop(
    clock: &impl Clock,
    start: Instant,
    opts: &WaitOptions,
    mut poll: impl FnMut(&dyn Fn() -> bool) -> Result<Summary>,
    log: Lines<'_>,
) -> Result<Outcome> {
    let mut wait = Progress::new(start, opts, log);
    let (deadline, cut) = (wait.deadline, !opts.timeout.is_zero());
    let stop = || cut && clock.now() > deadline;
    let mut now = clock.now();
    loop {
        if !wait.final_polled {
            let polled = poll(&stop);
            let done = clock.now();
            wait.observe(polled, now, done)?;
            now = done;
        }
        if let Some(outcome) = wait.outcome(now) {
            return Ok(outcome);
        }
        clock.sleep(wait.next_wake(now).saturating_duration_since(now));
        now = clock.now();
    }
}

/// What the loop knows between polls.
struct Progress<'a, 'w> {
    opts: &'a WaitOptions,
    log: Lines<'w>,
    start: Instant,
    deadline: Instant,
    /// The earliest moment to report drained (`--min-wait`).
    earliest: Instant,
    /// The interval in force: `--interval`, or longer when polls are costly.
    interval: Duration,
    /// What the last poll that finished cost.
    cost: Duration,
    /// The last poll that succeeded, and when it started.
    last: Option<(Summary, Instant)>,
    /// No poll can start and finish before the deadline any more.
    final_polled: bool,
    /// A poll was cut short at the deadline.
    cut_short: bool,
    /// When the current stretch of "nothing blocks" began, for `--quiet-period`.
    clear_since: Option<Instant>,
    warned_error: bool,
    warned_hold: bool,
    warned_cost: bool,
}

/// Writes one line through [`log::say`], if anyone reads the log.
macro_rules! say {
    ($log:expr, $($arg:tt)*) => {
        if let Some(w) = $log.as_mut() {
            log::say(w, format_args!($($arg)*));
        }
    };
}

impl<'a, 'w> Progress<'a, 'w> {
    fn new(start: Instant, opts: &'a WaitOptions, log: Lines<'w>) -> Self {
        Progress {
            opts,
            log,
            start,
            deadline: after(start, opts.timeout),
            earliest: after(start, opts.min_wait),
            interval: opts.interval,
            cost: Duration::ZERO,
            last: None,
            final_polled: false,
            cut_short: false,
            clear_since: None,
            warned_error: false,
            warned_hold: false,
            warned_cost: false,
        }
    }

    /// Takes in one poll, started at `at` and done at `done`: logs a change
    /// of the blocking set, or the first failure after a success; returns a
    /// failure of the very first poll. A poll cut short at the deadline is
    /// no failure: the last one that finished stands.
    fn observe(&mut self, polled: Result<Summary>, at: Instant, done: Instant) -> Result<()> {
        let took = done.saturating_duration_since(at);
        let polled = match polled {
            Err(e) if e.is::<Stopped>() => {
                self.cut_short = true;
                self.final_polled = true;
                return Ok(());
            }
            other => other,
        };
        self.cost = took;
        self.final_polled = after(done, self.margin()) >= self.deadline;
        let v = match polled {
            Ok(v) => v,
            Err(e) if self.last.is_none() => return Err(e),
            Err(e) => {
                if !self.warned_error {
                    say!(
                        self.log,
                        "poll failed, keeping the last result and polling on: {e:#}"
                    );
                    self.warned_error = true;
                }
                return Ok(());
            }
        };
        self.pace(took);
        if self.last.is_none() && v.trailer.host_network {
            say!(self.log, "warning: {}", render::HOST_NETWORK_NOTE);
        }
        let changed = self.last.as_ref().is_none_or(|(old, _)| {
            old.fingerprint() != v.fingerprint() || old.blocking_count() != v.blocking_count()
        });
        if changed && self.log.is_some() {
            log_change(&mut self.log, &v, at.saturating_duration_since(self.start));
        }
        if v.blocking_count() == 0 {
            self.clear_since.get_or_insert(at);
        } else {
            self.clear_since = None;
        }
        self.last = Some((v, at));
        Ok(())
    }

    /// What the next poll is expected to cost: the last one's cost and half
    /// again, room for one a little slower.
    fn margin(&self) -> Duration {
        self.cost.saturating_add(self.cost / 2)
    }

    /// Stretches the interval when a poll costs over 5% of it.
    fn pace(&mut self, took: Duration) {
        let wanted = stretched(took, self.opts.interval);
        // Compared in whole milliseconds, as the line shows them.
        if wanted.as_millis() > self.interval.as_millis() && !self.warned_cost {
            say!(
                self.log,
                "a poll takes {}, over 5% of the {} interval: polling every {} instead",
                fmt_duration(took),
                fmt_duration(self.opts.interval),
                fmt_duration(wanted)
            );
            self.warned_cost = true;
        }
        self.interval = wanted;
    }

    fn blocking(&self) -> Option<usize> {
        self.last.as_ref().map(|(v, _)| v.blocking_count())
    }

    /// The moment we may report drained, if nothing blocks until then.
    fn release(&self) -> Option<Instant> {
        self.clear_since
            .map(|since| after(since, self.opts.quiet_period).max(self.earliest))
    }

    /// Whether the wait is over at `now`, and how; logs the last line.
    fn outcome(&mut self, now: Instant) -> Option<Outcome> {
        let took = now.saturating_duration_since(self.start);
        if let Some(release) = self.release() {
            if now >= release {
                say!(self.log, "drained after {}", fmt_duration(took));
                return Some(Outcome::Drained(took));
            }
            if !self.warned_hold {
                say!(
                    self.log,
                    "nothing blocks; holding until {} (--min-wait {}, --quiet-period {})",
                    fmt_duration(release.saturating_duration_since(self.start)),
                    fmt_duration(self.opts.min_wait),
                    fmt_duration(self.opts.quiet_period)
                );
                self.warned_hold = true;
            }
        }
        if now < self.deadline {
            return None;
        }
        if self.cut_short {
            match &self.last {
                Some((_, at)) => say!(
                    self.log,
                    "the last poll was cut short at the deadline; judging by the one at {}",
                    fmt_duration(at.saturating_duration_since(self.start))
                ),
                None => say!(
                    self.log,
                    "deadline {} passed (at {}) before any poll finished: the proxy stops with whatever the app still holds",
                    fmt_duration(self.opts.timeout),
                    fmt_duration(took)
                ),
            }
        }
        let Some(blocking) = self.blocking() else {
            return Some(Outcome::DeadlineExceeded(None));
        };
        if blocking == 0 {
            // Held only by --min-wait or --quiet-period: the app has no socket
            // left, so this is a drain, not a failure.
            say!(
                self.log,
                "drained after {} (deadline reached while holding)",
                fmt_duration(took)
            );
            return Some(Outcome::Drained(took));
        }
        if let (Some((v, _)), Some(log)) = (&self.last, self.log.as_mut()) {
            log_deadline(&mut **log, v, self.opts.timeout, took);
        }
        Some(Outcome::DeadlineExceeded(Some(blocking)))
    }

    /// When to wake next. While polls are due, the next is an interval on,
    /// or earlier: at the release time when nothing blocks, and at the last
    /// moment a poll of the last one's cost (and half again) still ends
    /// before the deadline. After the final poll, the deadline itself.
    fn next_wake(&self, now: Instant) -> Instant {
        let release = self.release();
        if self.final_polled {
            return release.map_or(self.deadline, |r| r.min(self.deadline));
        }
        let latest = self
            .deadline
            .checked_sub(self.margin())
            .unwrap_or(now)
            .max(now);
        let wake = after(now, self.interval).min(latest);
        release.map_or(wake, |r| wake.min(r))
    }
}

fn count(n: usize) -> String {
    render::count(n, "socket", "sockets")
}

/// The last lines of a wait that timed out: what still blocks, by owner, and
/// how to excuse another container. The kubelet shows a hook's output
/// nowhere, so these lines are for `--log-file`.
fn log_deadline(log: &mut dyn Write, v: &Summary, timeout: Duration, took: Duration) {
    log::say(
        log,
        format_args!(
            "deadline {} passed (at {}); {} still blocking: {}",
            fmt_duration(timeout),
            fmt_duration(took),
            count(v.blocking_count()),
            render::summary(v.first(), v.blocking_count(), DEADLINE_SOCKETS)
        ),
    );
    log::say(
        log,
        format_args!(
            "still blocking by owner: {}",
            render::owner_summary(v.owners())
        ),
    );
    log::say(
        log,
        format_args!("hint: {}", render::ignore_uid_hint(v.owners())),
    );
}

fn log_change(log: &mut Lines<'_>, v: &Summary, at: Duration) {
    if v.blocking_count() == 0 {
        say!(log, "[{}] nothing blocks", fmt_duration(at));
    } else {
        say!(
            log,
            "[{}] {} blocking: {}",
            fmt_duration(at),
            count(v.blocking_count()),
            render::summary(v.first(), v.blocking_count(), LOG_SOCKETS)
        );
    }
    if let Some(note) =
        render::uninspected_note(v.trailer.uninspected_processes, v.trailer.unreadable_fds)
    {
        say!(log, "{note}");
    }
}

/// Milliseconds precision is what a person reading a log wants; humantime
/// would print nanoseconds.
pub fn fmt_duration(d: Duration) -> String {
    let ms = Duration::from_millis(d.as_millis().min(u64::MAX as u128) as u64);
    humantime::format_duration(ms).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{PodFacts, Rules};
    use crate::procread::{Holders, Socket, TcpState};
    use crate::sink::Tally;
    use std::cell::{Cell, RefCell};

    /// A clock that only moves when slept on; polls may also advance it to
    /// model their own cost.
    struct FakeClock {
        base: Instant,
        offset: Cell<Duration>,
        sleeps: RefCell<Vec<Duration>>,
    }

    impl FakeClock {
        fn new() -> Self {
            FakeClock {
                base: Instant::now(),
                offset: Cell::new(Duration::ZERO),
                sleeps: RefCell::new(Vec::new()),
            }
        }
        fn advance(&self, d: Duration) {
            self.offset.set(self.offset.get() + d);
        }
        fn elapsed(&self) -> Duration {
            self.offset.get()
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.base + self.offset.get()
        }
        fn sleep(&self, d: Duration) {
            self.sleeps.borrow_mut().push(d);
            self.advance(d);
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn opts(timeout: u64, interval: u64, min_wait: u64) -> WaitOptions {
        WaitOptions {
            timeout: ms(timeout),
            interval: ms(interval),
            min_wait: ms(min_wait),
            quiet_period: Duration::ZERO,
        }
    }

    /// What a poll gives when these sockets block (and the facts say so).
    fn summary(sockets: &[Socket], facts: &PodFacts) -> Summary {
        crate::pass::decide_rows(
            &[sockets],
            &Holders::default(),
            &Rules::default(),
            facts.clone(),
            Tally::new(DEADLINE_SOCKETS),
        )
        .unwrap()
    }

    fn nothing() -> Summary {
        summary(&[], &PodFacts::default())
    }

    fn listener(port: u16) -> Socket {
        Socket {
            state: TcpState::Listen,
            local: format!("0.0.0.0:{port}").parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            uid: 1000,
            inode: u64::from(port),
            rx_queue: 0,
            tx_queue: 0,
            info: None,
        }
    }

    /// A poll in which one uid-1000 listener on `port` blocks.
    fn blocking(port: u16) -> Summary {
        summary(&[listener(port)], &PodFacts::default())
    }

    fn run(
        clock: &FakeClock,
        o: &WaitOptions,
        mut script: impl FnMut(Duration) -> Result<Summary>,
    ) -> (Outcome, String, usize) {
        let mut log = Vec::new();
        let mut polls = 0;
        let out = wait_loop(
            clock,
            clock.now(),
            o,
            |_| {
                polls += 1;
                script(clock.elapsed())
            },
            Some(&mut log),
        )
        .unwrap();
        (out, String::from_utf8(log).unwrap(), polls)
    }

    #[test]
    fn drains_at_first_poll_when_nothing_blocks() {
        let c = FakeClock::new();
        let (out, log, polls) = run(&c, &opts(25_000, 250, 0), |_| Ok(nothing()));
        assert_eq!(out, Outcome::Drained(Duration::ZERO));
        assert_eq!(polls, 1);
        assert!(log.contains("drained after 0s"), "{log}");
    }

    #[test]
    fn drains_at_the_first_poll_after_the_socket_goes() {
        let c = FakeClock::new();
        let (out, _, polls) = run(&c, &opts(25_000, 250, 0), |t| {
            Ok(if t < ms(1_100) {
                blocking(8080)
            } else {
                nothing()
            })
        });
        assert_eq!(out, Outcome::Drained(ms(1_250)));
        assert_eq!(polls, 6);
    }

    #[test]
    fn deadline_is_exact_and_the_last_poll_is_at_it() {
        let c = FakeClock::new();
        // 300ms interval does not divide 1000ms: the last sleep is cut to 100ms.
        let (out, log, polls) = run(&c, &opts(1_000, 300, 0), |_| Ok(blocking(8080)));
        assert_eq!(out, Outcome::DeadlineExceeded(Some(1)));
        assert_eq!(c.elapsed(), ms(1_000));
        assert_eq!(polls, 5);
        assert_eq!(*c.sleeps.borrow(), vec![ms(300), ms(300), ms(300), ms(100)]);
        assert!(
            log.contains(
                "deadline 1s passed (at 1s); 1 socket still blocking: LISTEN 0.0.0.0:8080 -> 0.0.0.0:0 (uid 1000)"
            ),
            "{log}"
        );
    }

    #[test]
    fn slow_polls_never_push_past_the_deadline() {
        let c = FakeClock::new();
        // Each poll costs 70ms of clock time: the loop must still stop at the
        // deadline, sleeping only what is left.
        let (out, _, _) = run(&c, &opts(1_000, 250, 0), |_| {
            c.advance(ms(70));
            Ok(blocking(1))
        });
        assert!(matches!(out, Outcome::DeadlineExceeded(_)));
        let over = c.elapsed() - ms(1_000);
        assert!(over <= ms(70), "overshoot {over:?} is more than one poll");
    }

    #[test]
    fn the_last_poll_starts_early_enough_to_end_by_the_deadline() {
        let c = FakeClock::new();
        let mut starts = Vec::new();
        // 70ms a poll (the interval stretches to 1.4s): the last starts by
        // 1000 - 105, and the exit is at the deadline itself, not a poll
        // after it.
        let (out, _, _) = run(&c, &opts(1_000, 250, 0), |t| {
            starts.push(t);
            c.advance(ms(70));
            Ok(blocking(1))
        });
        assert!(matches!(out, Outcome::DeadlineExceeded(Some(1))));
        assert_eq!(c.elapsed(), ms(1_000));
        let last = *starts.last().unwrap();
        assert!(last + ms(105) <= ms(1_000), "{starts:?}");
        assert_eq!(starts, [ms(0), ms(895)]);
    }

    #[test]
    fn a_poll_still_running_at_the_deadline_is_cut_and_the_last_full_one_judges() {
        let c = FakeClock::new();
        let mut n = 0;
        let mut log = Vec::new();
        // Polls cost 10ms, but the one that would be last costs 400ms: it
        // is cut at the deadline, and the verdict is the poll before.
        let out = wait_loop(
            &c,
            c.now(),
            &opts(1_000, 250, 0),
            |stop| {
                n += 1;
                let slow = c.elapsed() >= ms(900);
                for _ in 0..if slow { 40 } else { 1 } {
                    c.advance(ms(10));
                    if stop() {
                        return Err(Stopped.into());
                    }
                }
                Ok(blocking(if slow { 2 } else { 1 }))
            },
            Some(&mut log),
        )
        .unwrap();
        let log = String::from_utf8(log).unwrap();
        assert_eq!(out, Outcome::DeadlineExceeded(Some(1)));
        assert!(c.elapsed() <= ms(1_010), "{:?}", c.elapsed());
        assert!(
            log.contains(
                "the last poll was cut short at the deadline; judging by the one at 780ms"
            ),
            "{log}"
        );
        assert!(log.contains("LISTEN 0.0.0.0:1 "), "{log}");
        assert!(!log.contains("0.0.0.0:2"), "{log}");
    }

    #[test]
    fn no_poll_finished_by_the_deadline_is_a_deadline_without_a_count() {
        let c = FakeClock::new();
        let start = c.now();
        c.advance(ms(1_000)); // a drain call that took all the time
        let mut log = Vec::new();
        let out = wait_loop(
            &c,
            start,
            &opts(1_000, 250, 0),
            |stop| {
                c.advance(ms(1));
                if stop() {
                    return Err(Stopped.into());
                }
                Ok(nothing())
            },
            Some(&mut log),
        )
        .unwrap();
        assert_eq!(out, Outcome::DeadlineExceeded(None));
        let log = String::from_utf8(log).unwrap();
        assert!(
            log.contains("deadline 1s passed (at 1s 1ms) before any poll finished"),
            "{log}"
        );
    }

    #[test]
    fn a_zero_timeout_poll_is_never_cut() {
        let c = FakeClock::new();
        let (out, _, polls) = run(&c, &opts(0, 250, 0), |_| {
            c.advance(ms(300));
            Ok(blocking(1))
        });
        assert_eq!(out, Outcome::DeadlineExceeded(Some(1)));
        assert_eq!(polls, 1);
        let c = FakeClock::new();
        let out = wait_loop(
            &c,
            c.now(),
            &opts(0, 250, 0),
            |stop| {
                c.advance(ms(300));
                assert!(!stop(), "--timeout 0s is one whole poll");
                Ok(nothing())
            },
            None,
        )
        .unwrap();
        assert_eq!(out, Outcome::Drained(ms(300)));
    }

    #[test]
    fn huge_options_saturate() {
        let c = FakeClock::new();
        let huge = WaitOptions {
            timeout: Duration::MAX,
            interval: Duration::MAX,
            min_wait: Duration::ZERO,
            quiet_period: Duration::MAX,
        };
        let (out, _, _) = run(&c, &huge, |_| Ok(blocking(1)));
        // The fake clock jumps to the saturated wake: no panic on the way.
        assert!(matches!(out, Outcome::DeadlineExceeded(_)), "{out:?}");
    }

    #[test]
    fn zero_timeout_polls_once() {
        let c = FakeClock::new();
        let (out, _, polls) = run(&c, &opts(0, 250, 0), |_| Ok(blocking(1)));
        assert!(matches!(out, Outcome::DeadlineExceeded(_)));
        assert_eq!(polls, 1);
        assert!(c.sleeps.borrow().is_empty());
        let (out, _, polls) = run(&c, &opts(0, 250, 0), |_| Ok(nothing()));
        assert!(matches!(out, Outcome::Drained(_)));
        assert_eq!(polls, 1);
    }

    #[test]
    fn min_wait_holds_even_when_nothing_blocks_and_sees_late_sockets() {
        let c = FakeClock::new();
        let (out, log, _) = run(&c, &opts(10_000, 1_000, 2_500), |_| Ok(nothing()));
        assert_eq!(out, Outcome::Drained(ms(2_500)));
        assert_eq!(*c.sleeps.borrow(), vec![ms(1_000), ms(1_000), ms(500)]);
        assert_eq!(
            log.matches("holding until 2s 500ms (--min-wait 2s 500ms, --quiet-period 0s)")
                .count(),
            1,
            "{log}"
        );

        // A socket that appears during --min-wait is waited for.
        let c = FakeClock::new();
        let (out, _, _) = run(&c, &opts(10_000, 1_000, 2_000), |t| {
            Ok(if t >= ms(1_000) && t < ms(4_000) {
                blocking(9)
            } else {
                nothing()
            })
        });
        assert_eq!(out, Outcome::Drained(ms(4_000)));
    }

    #[test]
    fn logs_only_on_change() {
        let c = FakeClock::new();
        let (_, log, polls) = run(&c, &opts(5_000, 100, 0), |t| {
            Ok(if t < ms(1_000) {
                blocking(1)
            } else if t < ms(2_000) {
                blocking(2)
            } else {
                nothing()
            })
        });
        assert_eq!(polls, 21);
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 4, "{log}");
        assert!(lines[0].contains("[0s] 1 socket blocking: LISTEN 0.0.0.0:1"));
        assert!(lines[1].contains("[1s] 1 socket blocking: LISTEN 0.0.0.0:2"));
        assert!(lines[2].contains("[2s] nothing blocks"));
        assert!(lines[3].contains("drained after 2s"));
    }

    #[test]
    fn first_error_is_fatal_later_errors_keep_last_state() {
        let c = FakeClock::new();
        let mut log = Vec::new();
        let err = wait_loop(
            &c,
            c.now(),
            &opts(1_000, 100, 0),
            |_| anyhow::bail!("boom"),
            Some(&mut log),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "boom");

        let c = FakeClock::new();
        let (out, log, _) = run(&c, &opts(1_000, 100, 0), |t| {
            if t == Duration::ZERO {
                Ok(blocking(1))
            } else if t < ms(500) {
                anyhow::bail!("table vanished")
            } else {
                Ok(nothing())
            }
        });
        assert_eq!(out, Outcome::Drained(ms(500)));
        assert_eq!(log.matches("poll failed").count(), 1, "{log}");
    }

    #[test]
    fn durations_print_to_the_millisecond() {
        assert_eq!(
            fmt_duration(Duration::from_nanos(1_234_567_890)),
            "1s 234ms"
        );
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn quiet_period_needs_an_unbroken_stretch_of_nothing() {
        let mut o = opts(10_000, 100, 0);
        o.quiet_period = ms(500);
        let c = FakeClock::new();
        // Blocks, clears for 300ms (a gap between two calls), blocks again,
        // then clears for good at 1000ms.
        let (out, log, _) = run(&c, &o, |t| {
            Ok(if t < ms(200) || (t >= ms(500) && t < ms(1_000)) {
                blocking(1)
            } else {
                nothing()
            })
        });
        assert_eq!(out, Outcome::Drained(ms(1_500)));
        assert_eq!(log.matches("nothing blocks;").count(), 1, "{log}");

        // The release time is the later of --min-wait and the quiet period.
        let mut o = opts(10_000, 1_000, 2_000);
        o.quiet_period = ms(500);
        let c = FakeClock::new();
        let (out, _, _) = run(&c, &o, |_| Ok(nothing()));
        assert_eq!(out, Outcome::Drained(ms(2_000)));
        let mut o = opts(10_000, 1_000, 100);
        o.quiet_period = ms(700);
        let c = FakeClock::new();
        let (out, _, _) = run(&c, &o, |_| Ok(nothing()));
        assert_eq!(out, Outcome::Drained(ms(700)));
        assert_eq!(*c.sleeps.borrow(), vec![ms(700)]);
    }

    #[test]
    fn quiet_period_never_outlasts_the_deadline() {
        let mut o = opts(1_000, 100, 0);
        o.quiet_period = ms(5_000);
        let c = FakeClock::new();
        let (out, log, _) = run(&c, &o, |_| Ok(nothing()));
        // Nothing blocks at the deadline: that is a drain, not a failure.
        assert_eq!(out, Outcome::Drained(ms(1_000)));
        assert!(
            log.contains("drained after 1s (deadline reached while holding)"),
            "{log}"
        );
    }

    #[test]
    fn time_before_the_loop_counts_against_the_deadline() {
        let c = FakeClock::new();
        let start = c.now();
        c.advance(ms(400)); // e.g. a slow drain call
        let mut log = Vec::new();
        let out = wait_loop(
            &c,
            start,
            &opts(1_000, 250, 0),
            |_| Ok(blocking(1)),
            Some(&mut log),
        )
        .unwrap();
        assert!(matches!(out, Outcome::DeadlineExceeded(_)));
        assert_eq!(c.elapsed(), ms(1_000));
    }

    /// A poll in which `n` uid-1000 listeners (ports 1..=n) block,
    /// optionally with the kubelet's port listening.
    fn many(n: u16, node: bool) -> Summary {
        let sockets: Vec<Socket> = (1..=n).map(listener).collect();
        let mut facts = PodFacts::default();
        if node {
            facts.note(&listener(10250), &Rules::default());
        }
        summary(&sockets, &facts)
    }

    #[test]
    fn the_deadline_names_ten_then_groups_by_owner_with_a_hint() {
        let c = FakeClock::new();
        let (out, log, _) = run(&c, &opts(500, 250, 0), |_| Ok(many(25, false)));
        assert_eq!(out, Outcome::DeadlineExceeded(Some(25)));
        let lines: Vec<&str> = log.lines().collect();
        let n = lines.len();
        assert!(n >= 3, "{log}");
        assert!(
            lines[n - 3].starts_with(
                "prestop-wait: deadline 500ms passed (at 500ms); 25 sockets still blocking: "
            ),
            "{log}"
        );
        assert_eq!(lines[n - 3].matches("LISTEN").count(), 10, "{log}");
        assert!(lines[n - 3].ends_with(", and 15 more"), "{log}");
        assert_eq!(
            lines[n - 2],
            "prestop-wait: still blocking by owner: uid 1000: 25 sockets (local ports 1, 2, 3, 4, 5, 6, 7, 8, +17 more)"
        );
        assert!(lines[n - 1].starts_with("prestop-wait: hint: "), "{log}");
        assert!(
            lines[n - 1].contains("--ignore-uid UID (uids here: 1000)"),
            "{log}"
        );
    }

    #[test]
    fn the_node_network_is_warned_about_once() {
        let c = FakeClock::new();
        let (_, log, polls) = run(&c, &opts(1_000, 250, 0), |_| Ok(many(1, true)));
        assert_eq!(polls, 5);
        assert_eq!(
            log.matches("warning: these are the node's sockets").count(),
            1,
            "{log}"
        );
        let c = FakeClock::new();
        let (_, log, _) = run(&c, &opts(1_000, 250, 0), |_| Ok(many(1, false)));
        assert!(!log.contains("node's sockets"), "{log}");
    }

    #[test]
    fn costly_polls_stretch_the_interval_and_say_so_once() {
        let c = FakeClock::new();
        // 50ms a poll against a 250ms interval: 20% of it, so every 1s.
        let (out, log, polls) = run(&c, &opts(3_000, 250, 0), |_| {
            c.advance(ms(50));
            Ok(blocking(1))
        });
        assert_eq!(out, Outcome::DeadlineExceeded(Some(1)));
        assert_eq!(
            log.matches(
                "a poll takes 50ms, over 5% of the 250ms interval: polling every 1s instead"
            )
            .count(),
            1,
            "{log}"
        );
        // Polls at 0, 1.05, 2.1 and the deadline (3s), not every 300ms.
        assert_eq!(polls, 4, "{log}");
        // Cheap polls: the interval stays.
        let c = FakeClock::new();
        let (_, log, polls) = run(&c, &opts(1_000, 250, 0), |_| {
            c.advance(ms(12));
            Ok(blocking(1))
        });
        assert!(!log.contains("a poll takes"), "{log}");
        assert_eq!(polls, 5);
    }

    #[test]
    fn a_silent_log_gets_nothing_and_changes_nothing() {
        let c = FakeClock::new();
        let out = wait_loop(
            &c,
            c.now(),
            &opts(1_000, 100, 0),
            |_| {
                Ok(if c.elapsed() < ms(500) {
                    blocking(1)
                } else {
                    nothing()
                })
            },
            None,
        )
        .unwrap();
        assert_eq!(out, Outcome::Drained(ms(500)));
    }

    #[test]
    fn a_change_of_state_is_a_change_but_order_is_not() {
        let a = listener(1);
        let mut b = listener(2);
        let ab = summary(&[a.clone(), b.clone()], &PodFacts::default());
        let ba = summary(&[b.clone(), a.clone()], &PodFacts::default());
        assert_eq!(ab.fingerprint(), ba.fingerprint());
        b.state = TcpState::Established;
        let changed = summary(&[a.clone(), b], &PodFacts::default());
        assert_ne!(ab.fingerprint(), changed.fingerprint());
        assert_ne!(
            ab.fingerprint(),
            summary(&[a], &PodFacts::default()).fingerprint()
        );
    }
}
