//! A preStop hook's whole life, written once: the log target, the flags that
//! were wrong (failing safe), opening the source, the start line, the
//! deadline-keeping loop and the end with its exit code.
//!
//! A hook is two parts that [`run`] drives: a [`Hook`], which says what the
//! hook is (its start line, how it sets up the netlink socket, what one look
//! reads), and its [`Judge`], which is pure: it takes in what each look saw,
//! on instants, and says when the hook may end and how. `wait` and `quiesce`
//! are each one file of these plus their flags.
//!
//! Time comes through [`Clock`], so the whole loop runs on a fake clock in
//! the tests, to the millisecond and without sleeping.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::decide::Containers;
use crate::exit_codes::ExitCode;
use crate::log::{self, Log, LogFile, Spec, Whose};
use crate::procread::Stopped;
use crate::procread::netlink::Diag;
use crate::source::{self, Chosen, ProcTables};
use crate::time::{Clock, after, fmt_duration, stretched};

/// The times every hook keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Hard limit from the start of the hook.
    pub timeout: Duration,
    /// Time between looks.
    pub interval: Duration,
    /// Never end before this much time has passed.
    pub min_wait: Duration,
}

/// What every hook is given besides its own flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// procfs root.
    pub proc_root: PathBuf,
    /// Where the sockets are read from.
    pub source: source::Kind,
    /// Deadline, interval, minimum wait.
    pub timing: Timing,
    /// Nothing on stderr but errors.
    pub quiet: bool,
    /// Where else to append the log lines.
    pub log_file: Option<LogFile>,
    /// Flags that were wrong and dropped, one line each: the hook says them
    /// where they will be read, holds without them, and exits 2 at the end
    /// (see [`crate::cli::parse`]).
    pub config_errors: Vec<String>,
}

/// How a hook ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Released after this long: nothing holds it any more (exit 0).
    Drained(Duration),
    /// The deadline passed with this many things still holding it at the
    /// last look that finished (`None`: no look finished, or none since the
    /// hook was held up) (exit 1).
    DeadlineExceeded(Option<usize>),
}

/// The hook's start, its earliest end (`--min-wait`) and its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// When the hook started: time spent before the first look counts.
    pub start: Instant,
    /// The earliest moment the hook may end.
    pub earliest: Instant,
    /// The deadline.
    pub deadline: Instant,
}

impl Span {
    /// The span of a hook started at `start`.
    pub fn new(start: Instant, timing: &Timing) -> Self {
        Span {
            start,
            earliest: after(start, timing.min_wait),
            deadline: after(start, timing.timeout),
        }
    }

    /// `t` as time since the start, for the log.
    pub fn since(&self, t: Instant) -> String {
        fmt_duration(t.saturating_duration_since(self.start))
    }
}

/// The log as the loop and the judge see it: lines are written only when
/// someone reads them (not `--quiet` without `--log-file`); a line whose
/// arguments cost something to build asks [`Lines::is_on`] first. Errors
/// are said always.
pub struct Lines<'l, 'a> {
    log: &'l mut Log<'a>,
    on: bool,
}

impl<'l, 'a> Lines<'l, 'a> {
    /// The lines of `log`.
    pub fn new(log: &'l mut Log<'a>) -> Self {
        let on = !log.is_silent();
        Lines { log, on }
    }

    /// Whether anyone reads the lines.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Says one line, if anyone reads it.
    pub fn say(&mut self, args: std::fmt::Arguments<'_>) {
        if self.on {
            log::say(self.log, args);
        }
    }

    /// Says one error line, on stderr even when `--quiet`.
    pub fn error(&mut self, args: std::fmt::Arguments<'_>) {
        self.log.error(args);
    }

    /// The log itself, to write a line that is already formatted.
    pub fn writer(&mut self) -> Option<&mut dyn Write> {
        self.on.then_some(&mut *self.log as &mut dyn Write)
    }
}

/// What a hook decides from its looks: pure, on instants.
pub trait Judge {
    /// What one look saw.
    type Seen;
    /// The word for one look in the log (`poll`, `look`).
    const LOOK: &'static str;
    /// What happens when the deadline passes before any look finished.
    const UNSEEN: &'static str;
    /// Said once when a look fails after one succeeded, before the error.
    const FAILED: &'static str;

    /// Takes in a look that started at `at` and finished at `done`.
    fn observe(&mut self, seen: Self::Seen, at: Instant, done: Instant, lines: &mut Lines);

    /// When the hook may end if what the last look saw stays so (`None`:
    /// not while it stays so). `--min-wait` is the loop's to add.
    fn release(&self) -> Option<Instant>;

    /// Called while the release is ahead, with the release `--min-wait`
    /// included.
    fn holding(&mut self, _release: Instant, _lines: &mut Lines) {}

    /// The end at `now`, by the last look that finished: `released` when a
    /// look at or after the release saw nothing new, otherwise the deadline
    /// has passed. Says the last lines.
    fn end(&mut self, now: Instant, released: bool, lines: &mut Lines) -> Outcome;
}

/// What a hook is: its log, its start line, and one look at the pod.
pub trait Hook {
    /// Its judgement.
    type Judge: Judge;
    /// What the hook does, for its error lines (`waiting`, `holding`).
    const DOING: &'static str;

    /// Whose container log `--log-file=auto` means.
    fn whose(&self) -> Whose;

    /// The netlink socket as this hook reads it.
    fn setup(&self, diag: Diag) -> Diag {
        diag
    }

    /// Takes in how containers are told apart (see [`Chosen::containers`]),
    /// before [`Hook::start_line`].
    fn attribute(&mut self, containers: &Containers);

    /// The first line, up to the source it reads.
    fn start_line(&self, settings: &Settings) -> String;

    /// What to do after the start line and before the first look (warnings,
    /// notes on the `source` it reads, `wait`'s drain call), within the
    /// span's deadline.
    fn begin(&mut self, _clock: &dyn Clock, _span: &Span, _source: &Chosen, _lines: &mut Lines) {}

    /// Its judge, for this span.
    fn judge(&self, span: &Span) -> Self::Judge;

    /// Sleeps `d` between looks, or less when the hook learns that what it
    /// waits for has changed (`wait`: the kernel destroyed a socket the last
    /// look found blocking), so that the next look comes at once.
    fn sleep(&mut self, clock: &dyn Clock, d: Duration) {
        clock.sleep(d);
    }

    /// One look at the pod from `source`, started at `at`, given up once
    /// `stop()` says so.
    fn look(
        &mut self,
        source: &mut Chosen,
        at: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<<Self::Judge as Judge>::Seen>;
}

/// Runs `hook` with `settings`, logging to `stderr` (and `--log-file`).
///
/// Its errors are logged here, not returned: an error line must reach the
/// log file too, the one place a hook's output is read. Flags that were
/// wrong are said first; the hook goes on without them and ends with exit
/// 2, whatever it found.
pub fn run<H: Hook>(
    mut hook: H,
    settings: Settings,
    clock: &impl Clock,
    stderr: &mut dyn Write,
) -> ExitCode {
    let span = Span::new(clock.now(), &settings.timing);
    let mut log = match settings.log_file.clone() {
        None => Log::open(stderr, settings.quiet),
        Some(log_file) => {
            let spec = Spec {
                log_file,
                proc_root: settings.proc_root.clone(),
                whose: hook.whose(),
                hook_pid: rustix::process::getpid().as_raw_nonzero().get(),
            };
            // What the file is (`auto` scans /proc), and whether it opens,
            // is its writer's to find out; the hook waits for that only a
            // little, so that a fast answer keeps the lines in order.
            let patience = (settings.timing.timeout / 4).min(START_PATIENCE);
            Log::start(stderr, settings.quiet, spec, after(clock.now(), patience))
        }
    };
    let mut errors = settings.config_errors.len();
    for error in &settings.config_errors {
        log.error(format_args!(
            "{error}; {} without it (its default), then exit 2",
            H::DOING
        ));
    }
    let mut source = Chosen::open_with(settings.source, &settings.proc_root, |d| hook.setup(d))
        .unwrap_or_else(|e| {
            errors += 1;
            log.error(format_args!(
                "{e:#}; {} on the tables instead, then exit 2",
                H::DOING
            ));
            Chosen::Proc(ProcTables::new(settings.proc_root.clone()), None)
        });
    // A failed probe is the first look's to report, as any read error is.
    let _ = source.probe();
    let containers = source.containers();
    hook.attribute(&containers);
    let mut lines = Lines::new(&mut log);
    lines.say(format_args!(
        "{}; sockets from {}; {containers}",
        hook.start_line(&settings),
        source.origin()
    ));
    if let Some(note) = lines.log.note() {
        lines.say(format_args!("{note}"));
    }
    hook.begin(clock, &span, &source, &mut lines);
    let mut judge = hook.judge(&span);
    // The loop looks and sleeps in turn, each through the hook.
    let hook = std::cell::RefCell::new(hook);
    let ended = keep_deadline(
        clock,
        &span,
        &settings.timing,
        &mut judge,
        |stop| hook.borrow_mut().look(&mut source, clock.now(), stop),
        |d| hook.borrow_mut().sleep(clock, d),
        &mut lines,
    );
    let code = match ended.outcome {
        _ if errors > 0 || ended.failed => ExitCode::Error,
        Outcome::Drained(_) => ExitCode::Success,
        Outcome::DeadlineExceeded(_) => ExitCode::Blocked,
    };
    // The log file gets what is left of the span, and never holds a hook
    // that ended early for long, nor one at its deadline past its promise.
    let now = clock.now();
    let until = if now >= span.deadline {
        after(now, LAST_LINES)
    } else {
        span.deadline.min(after(now, Duration::from_secs(1)))
    };
    log.close(until);
    code
}

/// How long the start waits for the log file to open (or `auto` to find
/// it) before going on without knowing: a quarter of `--timeout` at most.
const START_PATIENCE: Duration = Duration::from_millis(50);

/// How long a hook at its deadline still gives the log file for its last
/// lines: well within the deadline's promise.
const LAST_LINES: Duration = Duration::from_millis(20);

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The verdict.
    pub outcome: Outcome,
    /// No look could be read before the first one that could, or none at
    /// all: said as an error, and the exit code is 2 whatever the verdict.
    pub failed: bool,
}

/// Runs the loop: looks until the judge releases the hook or the deadline
/// passes. `span.start` is when the hook started (anything done before the
/// first look, such as the drain call, counts against the deadline).
///
/// A hook that cannot read sockets at all (a wrong `--proc`, an unreadable
/// table, a sandbox that refuses the netlink dump) still holds: the first
/// error is said as an error, the loop keeps looking every interval, and
/// the hook exits 2 at the end ([`Ended::failed`]), at the deadline if no
/// look ever succeeds. A later error is said once and the last look
/// stands. Giving up early would let the proxy (or the app) stop under
/// traffic, which is the failure this tool prevents.
///
/// A verdict needs a look that started after what it judges could have
/// changed: the release needs one that started at or after the release
/// time, and a hook that was held up (SIGSTOP, a starved node) longer than
/// an interval past its wake time looks once more before any verdict, even
/// past the deadline, where that look is cut after its expected cost.
///
/// Nothing runs past the deadline. The last look is started early enough
/// that the one before it says it will finish in time (its cost and half
/// again); the loop then sleeps to the deadline and judges by it. A look
/// still running at the deadline (a slower one than the last, a drain call
/// that took the time) is cut short by its `stop`, and the verdict is the
/// last one that finished. `--timeout 0s` is the one exception: one look,
/// uncut, so that `--timeout 0s` gives a verdict at all.
///
/// A look that costs more than 5% of the interval (tens of thousands of
/// sockets, a slow node) stretches the interval to twenty times its cost,
/// said once: the hook must not take a core from a pod that is shutting
/// down.
pub fn keep_deadline<J: Judge>(
    clock: &impl Clock,
    span: &Span,
    timing: &Timing,
    judge: &mut J,
    mut look: impl FnMut(&dyn Fn() -> bool) -> Result<J::Seen>,
    mut sleep: impl FnMut(Duration),
    lines: &mut Lines,
) -> Ended {
    let mut m = Machine::new(*span, timing);
    let cut = !timing.timeout.is_zero();
    // Where looks are cut: the deadline, or, for the one look after a
    // hold-up past the deadline, that look's expected cost.
    let limit = std::cell::Cell::new(span.deadline);
    let stop = || cut && clock.now() > limit.get();
    let mut now = clock.now();
    loop {
        if !m.final_looked {
            let looked = look(&stop);
            let done = clock.now();
            m.observe::<J>(looked, now, done, judge, lines);
            now = done;
        }
        if let Some(outcome) = m.outcome(now, judge, lines) {
            return Ended {
                outcome,
                failed: m.failed,
            };
        }
        let wake = m.next_wake(now, judge);
        // `sleep` may end early (see `Hook::sleep`): the next look comes
        // sooner, never later.
        sleep(wake.saturating_duration_since(now));
        now = clock.now();
        if now.saturating_duration_since(wake) > m.interval.max(HELD_UP) {
            // Held up: what the last look saw may be gone or changed.
            m.held_up = Some(now.saturating_duration_since(wake));
            m.final_looked = false;
            if now > span.deadline {
                limit.set(after(now, m.margin().max(HELD_UP)));
            }
        }
    }
}

/// The least hold-up past a wake time that counts as the hook having been
/// held up (stopped, or starved on a busy node), and the least time the one
/// look after such a hold-up past the deadline gets.
const HELD_UP: Duration = Duration::from_millis(50);

/// What the loop knows between looks.
struct Machine {
    span: Span,
    /// `--timeout`, for the log.
    timeout: Duration,
    /// `--interval`, as given.
    base_interval: Duration,
    /// The interval in force: `--interval`, or longer when looks are costly.
    interval: Duration,
    /// What the last look that finished cost.
    cost: Duration,
    /// When the last look that finished started.
    looked_at: Option<Instant>,
    /// No look can start and finish before the deadline any more.
    final_looked: bool,
    /// A look was cut short at the deadline.
    cut_short: bool,
    /// The hook was held up this long past a wake time, and no look has
    /// finished since.
    held_up: Option<Duration>,
    /// Looks failed before any succeeded.
    failed: bool,
    warned_error: bool,
    warned_cost: bool,
}

impl Machine {
    fn new(span: Span, timing: &Timing) -> Self {
        Machine {
            span,
            timeout: timing.timeout,
            base_interval: timing.interval,
            interval: timing.interval,
            cost: Duration::ZERO,
            looked_at: None,
            final_looked: false,
            cut_short: false,
            held_up: None,
            failed: false,
            warned_error: false,
            warned_cost: false,
        }
    }

    /// Takes in one look, started at `at` and done at `done`. A look cut
    /// short at the deadline is no failure: the last one that finished
    /// stands.
    fn observe<J: Judge>(
        &mut self,
        looked: Result<J::Seen>,
        at: Instant,
        done: Instant,
        judge: &mut J,
        lines: &mut Lines,
    ) {
        let looked = match looked {
            Err(e) if e.is::<Stopped>() => {
                self.cut_short = true;
                self.final_looked = true;
                return;
            }
            other => other,
        };
        let took = done.saturating_duration_since(at);
        self.cost = took;
        self.final_looked = after(done, self.margin()) >= self.span.deadline;
        let seen = match looked {
            Ok(seen) => seen,
            Err(e) if self.looked_at.is_none() => {
                if !self.failed {
                    lines.error(format_args!("{e:#}; {} on, then exit 2", ing(J::LOOK)));
                    self.failed = true;
                }
                return;
            }
            Err(e) => {
                if !self.warned_error {
                    lines.say(format_args!("{}: {e:#}", J::FAILED));
                    self.warned_error = true;
                }
                return;
            }
        };
        self.pace::<J>(took, lines);
        judge.observe(seen, at, done, lines);
        self.looked_at = Some(at);
        self.held_up = None;
    }

    /// What the next look is expected to cost: the last one's cost and half
    /// again, room for one a little slower.
    fn margin(&self) -> Duration {
        self.cost.saturating_add(self.cost / 2)
    }

    /// Stretches the interval when a look costs over 5% of it.
    fn pace<J: Judge>(&mut self, took: Duration, lines: &mut Lines) {
        let wanted = stretched(took, self.base_interval);
        // Compared in whole milliseconds, as the line shows them.
        if wanted.as_millis() > self.interval.as_millis() && !self.warned_cost {
            lines.say(format_args!(
                "a {} takes {}, over 5% of the {} interval: {} every {} instead",
                J::LOOK,
                fmt_duration(took),
                fmt_duration(self.base_interval),
                ing(J::LOOK),
                fmt_duration(wanted)
            ));
            self.warned_cost = true;
        }
        self.interval = wanted;
    }

    /// The judge's release with `--min-wait` as its floor.
    fn release<J: Judge>(&self, judge: &J) -> Option<Instant> {
        judge.release().map(|r| r.max(self.span.earliest))
    }

    /// Whether the hook is over at `now`, and how.
    fn outcome<J: Judge>(
        &mut self,
        now: Instant,
        judge: &mut J,
        lines: &mut Lines,
    ) -> Option<Outcome> {
        // After a hold-up, no verdict by what was seen before it.
        let looked_at = self.looked_at.filter(|_| self.held_up.is_none());
        if let (Some(release), Some(at)) = (self.release(judge), looked_at) {
            // A release needs a look that started at or after it: what
            // came before that look could not be seen by the ones before.
            if at >= release {
                return Some(judge.end(now, true, lines));
            }
            judge.holding(release, lines);
        }
        if now < self.span.deadline {
            return None;
        }
        let took = fmt_duration(now.saturating_duration_since(self.span.start));
        if let Some(held) = self.held_up {
            lines.say(format_args!(
                "deadline {} passed (at {took}); the hook was held up for {} (stopped, or starved of CPU) and no {} finished since: {}",
                fmt_duration(self.timeout),
                fmt_duration(held),
                J::LOOK,
                J::UNSEEN
            ));
            return Some(Outcome::DeadlineExceeded(None));
        }
        if self.looked_at.is_none() && self.failed {
            lines.say(format_args!(
                "deadline {} passed (at {took}) and no {} could be read: {}",
                fmt_duration(self.timeout),
                J::LOOK,
                J::UNSEEN
            ));
            return Some(Outcome::DeadlineExceeded(None));
        }
        if self.cut_short {
            match looked_at {
                Some(at) => lines.say(format_args!(
                    "the last {} was cut short at the deadline; judging by the one at {}",
                    J::LOOK,
                    self.span.since(at)
                )),
                None => lines.say(format_args!(
                    "deadline {} passed (at {took}) before any {} finished: {}",
                    fmt_duration(self.timeout),
                    J::LOOK,
                    J::UNSEEN
                )),
            }
        }
        if looked_at.is_none() {
            return Some(Outcome::DeadlineExceeded(None));
        }
        Some(judge.end(now, false, lines))
    }

    /// When to wake next. While looks are due, the next is an interval on,
    /// or earlier: at the release time, and at the last moment a look of the
    /// last one's cost (and half again) still ends before the deadline.
    /// After the final look, the deadline itself.
    fn next_wake<J: Judge>(&self, now: Instant, judge: &J) -> Instant {
        let release = self.release(judge);
        let deadline = self.span.deadline;
        if self.final_looked {
            return release.map_or(deadline, |r| r.min(deadline));
        }
        let latest = deadline.checked_sub(self.margin()).unwrap_or(now).max(now);
        let wake = after(now, self.interval).min(latest);
        release.map_or(wake, |r| wake.min(r))
    }
}

/// `poll` → `polling`, `look` → `looking`.
fn ing(look: &str) -> String {
    format!("{look}ing")
}

/// What `f` says through [`Lines`], line by line without the prefix.
#[cfg(test)]
pub(crate) fn said<R>(f: impl FnOnce(&mut Lines) -> R) -> (R, Vec<String>) {
    let mut out = Vec::new();
    let r = {
        let mut log = Log::open(&mut out, false);
        let mut lines = Lines::new(&mut log);
        f(&mut lines)
    };
    let text = String::from_utf8(out).unwrap();
    let lines = text
        .lines()
        .map(|l| l.strip_prefix(log::PREFIX).unwrap_or(l).to_owned())
        .collect();
    (r, lines)
}
