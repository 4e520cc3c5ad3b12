//! `wait`: the proxy container's preStop. Says what it will do, drains the
//! proxy's inbound listeners if asked, then looks until no socket of the app
//! is left or the deadline passes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::WaitConfig;
use crate::decide::{self, Containers, Rules};
use crate::decimal;
use crate::drain::{self, DrainTarget};
use crate::exit_codes::ExitCode;
use crate::hook::{self, Hook, Judge, Lines, Outcome, Settings, Span, Timing};
use crate::keys::connection_key;
use crate::log::{self, Whose};
use crate::pass::Pass;
use crate::procread::Socket;
use crate::procread::destroys::Destroys;
use crate::render;
use crate::rhythm::{Miss, Rhythm, Window};
use crate::sink::{Summary, Tally};
use crate::source::Chosen;
use crate::time::{Clock, after, fmt_duration};

/// How many sockets a change line names before `and N more`.
const LOG_SOCKETS: usize = 5;

/// How many the deadline line names; the owner summary after it counts the
/// rest. Looks keep this many in full, and no more.
pub const DEADLINE_SOCKETS: usize = 10;

/// Runs `wait`, logging to `stderr` (and `--log-file`).
pub fn run(config: WaitConfig, clock: &impl Clock, stderr: &mut dyn Write) -> Result<ExitCode> {
    let WaitConfig { hook, rules, .. } = &config;
    let pass = Pass::new(hook.proc_root.clone(), rules.clone());
    let settings = hook.clone();
    let wait = Wait {
        config,
        pass,
        destroys: None,
        blocking: Vec::new(),
        known: None,
        came: 0,
    };
    Ok(hook::run(wait, settings, clock, stderr))
}

struct Wait {
    config: WaitConfig,
    pass: Pass,
    /// The kernel's destroy events, where netlink is read: the last of the
    /// app's sockets closing ends the sleep before the next look.
    destroys: Option<Destroys>,
    /// What the last look found blocking, each as (local, remote), when it
    /// found few enough to know them all; empty otherwise.
    blocking: Vec<(SocketAddr, SocketAddr)>,
    /// The last look's blocking connections (their keys, ascending): one
    /// not among them is new.
    known: Option<Vec<u64>>,
    /// The app's connections destroyed since the last look that it never
    /// saw: opened and closed between two looks, one call each.
    came: u32,
}

/// One poll: what blocks, and how many of the app's connections are new
/// since the last (opened as it calls, whether still open or closed by
/// now).
#[derive(Debug, Clone)]
pub struct Polled {
    /// What blocks.
    pub summary: Summary,
    /// The app's new connections.
    pub arrivals: u32,
}

impl Polled {
    /// A poll that saw no new connection.
    pub fn quiet(summary: Summary) -> Self {
        Polled {
            summary,
            arrivals: 0,
        }
    }
}

/// Whether a destroyed connection was a call of the app's that no look
/// saw. The kernel's destroy events carry no uid (0, whoever's): a call is
/// told by its client end, whose local port nothing in the pod listens on
/// (the server end, the proxy's or the app's, is dropped). A client end of
/// the proxy's own counts too: it comes with traffic either way.
fn came_and_went(s: &Socket, rules: &Rules, pass: &Pass, known: Option<&[u64]>) -> bool {
    s.remote.port() != 0
        && !pass.listens_on(s.local.port())
        && decide::row_reason(s, rules).is_none()
        && known.is_none_or(|k| k.binary_search(&connection_key(s.local, s.remote)).is_err())
}

impl Hook for Wait {
    type Judge = Drain;
    const DOING: &'static str = "waiting";

    fn whose(&self) -> Whose {
        Whose::Proxy(self.config.rules.proxy_names.clone())
    }

    fn attribute(&mut self, containers: &Containers) {
        self.config.rules.attribute(containers);
        self.pass.attribute(containers);
    }

    fn start_line(&self, settings: &Settings) -> String {
        start_line(
            &self.config.rules,
            &settings.proc_root,
            &settings.timing,
            self.config.quiet_period,
        )
    }

    fn begin(&mut self, clock: &dyn Clock, span: &Span, source: &Chosen, lines: &mut Lines) {
        // Without them the next look comes at its interval, as always: no
        // word needed.
        if !source.is_tables() {
            self.destroys = Destroys::subscribe().ok();
        }
        let timing = &self.config.hook.timing;
        if let Some(warning) = budget_warning(timing, self.config.grace_period) {
            lines.say(format_args!("warning: {warning}"));
        }
        if let Some(target) = &self.config.drain {
            drain_proxy(target, clock, span.deadline, lines);
        }
    }

    fn judge(&self, span: &Span) -> Drain {
        Drain::new(
            *span,
            self.config.hook.timing,
            self.config.quiet_period,
            self.config.calls,
        )
    }

    fn look(
        &mut self,
        source: &mut Chosen,
        _at: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Polled> {
        // Before the pass: a connection it sees is then not counted again
        // by its destroy event.
        if let Some(destroys) = &mut self.destroys {
            let (rules, pass, known, came) = (
                &self.config.rules,
                &self.pass,
                self.known.as_deref(),
                &mut self.came,
            );
            if destroys
                .drain(&mut |s| *came += u32::from(came_and_went(&s, rules, pass, known)))
                .is_err()
            {
                self.destroys = None;
            }
        }
        let summary = self.pass.run(source, Tally::new(DEADLINE_SOCKETS), stop)?;
        self.blocking.clear();
        if summary.blocking_count() <= DEADLINE_SOCKETS {
            let all = summary.first().map(|e| (e.socket.local, e.socket.remote));
            self.blocking.extend(all);
        }
        let new = match &self.known {
            Some(known) => summary
                .connections()
                .iter()
                .filter(|k| known.binary_search(k).is_err())
                .count(),
            None => 0,
        };
        let arrivals = u32::try_from(new)
            .unwrap_or(u32::MAX)
            .saturating_add(self.came);
        self.came = 0;
        self.known = Some(summary.connections().to_vec());
        Ok(Polled { summary, arrivals })
    }

    /// Until the interval ends, or the kernel destroys one of the sockets
    /// the last look found blocking: the app's last socket closing is then
    /// seen at once, not up to an interval later. The app's connections
    /// that come and go meanwhile are counted for the next look.
    fn sleep(&mut self, clock: &dyn Clock, d: Duration) {
        match &mut self.destroys {
            Some(destroys) if !self.blocking.is_empty() => {
                let (blocking, rules, pass, known) = (
                    &self.blocking,
                    &self.config.rules,
                    &self.pass,
                    self.known.as_deref(),
                );
                let came = std::cell::Cell::new(0u32);
                destroys.wait_for(d, &|s| {
                    came.set(came.get() + u32::from(came_and_went(s, rules, pass, known)));
                    blocking.contains(&(s.local, s.remote))
                });
                self.came = self.came.saturating_add(came.get());
            }
            _ => clock.sleep(d),
        }
    }
}

/// `wait`'s judgement: what blocks, since when nothing has, and the lines
/// that say so.
pub struct Drain {
    span: Span,
    timing: Timing,
    quiet_period: Duration,
    /// The last look that finished.
    last: Option<Summary>,
    /// When the current stretch of "nothing blocks" began, for `--quiet-period`.
    clear_since: Option<Instant>,
    warned_hold: bool,
    /// The app's new connections: an app that connects per call holds no
    /// socket between two calls, and its rhythm says how long a silence
    /// means it has stopped calling.
    rhythm: Rhythm,
    /// The window as the last poll left it.
    window: Window,
    /// The miss the window is judged by.
    miss: f64,
    /// When the last poll was taken: new connections came after it.
    looked_at: Instant,
    /// `--between-calls`: the rhythm holds.
    between_calls: bool,
}

impl Drain {
    /// A judge for a wait of this span; `miss`: the chance of letting go
    /// between two of the app's calls.
    pub fn new(span: Span, timing: Timing, quiet_period: Duration, calls: Option<Miss>) -> Self {
        let (between_calls, miss) = (calls.is_some(), calls.unwrap_or(Miss(1e-3)));
        // No fallback window: an app seen to open no connection is let go
        // when its last socket closes, as ever.
        let mut rhythm = Rhythm::new(
            span.start,
            miss.0,
            timing.interval.saturating_mul(2),
            Duration::ZERO,
        );
        let window = rhythm.window();
        Drain {
            span,
            timing,
            quiet_period,
            last: None,
            clear_since: None,
            warned_hold: false,
            rhythm,
            window,
            miss: miss.0,
            looked_at: span.start,
            between_calls,
        }
    }
}

impl Judge for Drain {
    type Seen = Polled;
    const LOOK: &'static str = "poll";
    const UNSEEN: &'static str = "the proxy stops with whatever the app still holds";
    const FAILED: &'static str = "poll failed, keeping the last result and polling on";

    fn observe(&mut self, seen: Polled, at: Instant, done: Instant, lines: &mut Lines) {
        let Polled {
            summary: v,
            arrivals,
        } = seen;
        if arrivals > 0 {
            // Dated as late as the poll can tell: the release is never early.
            self.rhythm.arrive_spread(self.looked_at, done, arrivals);
            self.window = self.rhythm.window();
        }
        self.looked_at = at;
        if self.last.is_none() && v.trailer.host_network {
            lines.say(format_args!("warning: {}", render::HOST_NETWORK_NOTE));
        }
        let changed = self.last.as_ref().is_none_or(|old| {
            old.fingerprint() != v.fingerprint() || old.blocking_count() != v.blocking_count()
        });
        if changed && lines.is_on() {
            log_change(lines, &v, at.saturating_duration_since(self.span.start));
        }
        if v.blocking_count() == 0 {
            self.clear_since.get_or_insert(at);
        } else {
            self.clear_since = None;
        }
        self.last = Some(v);
    }

    /// Nothing blocking for `--quiet-period`, and, for an app seen opening
    /// connections as it calls, a silence of them longer than their rhythm
    /// explains.
    fn release(&self) -> Option<Instant> {
        self.clear_since.map(|since| {
            let quiet = after(since, self.quiet_period);
            match self.calling() {
                true => quiet.max(after(self.rhythm.last(), self.window.length)),
                false => quiet,
            }
        })
    }

    fn holding(&mut self, release: Instant, lines: &mut Lines) {
        if !self.warned_hold {
            let calls = match self.calling() {
                true => format!(", {}", self.calls_said()),
                false => String::new(),
            };
            lines.say(format_args!(
                "nothing blocks; holding until {} (--min-wait {}, --quiet-period {}{calls})",
                self.span.since(release),
                fmt_duration(self.timing.min_wait),
                fmt_duration(self.quiet_period)
            ));
            self.warned_hold = true;
        }
    }

    fn end(&mut self, now: Instant, released: bool, lines: &mut Lines) -> Outcome {
        let took = now.saturating_duration_since(self.span.start);
        if released {
            lines.say(format_args!("drained after {}", fmt_duration(took)));
            return Outcome::Drained(took);
        }
        let blocking = self.last.as_ref().map_or(0, Summary::blocking_count);
        if blocking == 0 {
            // Held only by --min-wait or --quiet-period: the app has no socket
            // left, so this is a drain, not a failure.
            lines.say(format_args!(
                "drained after {} (deadline reached while holding)",
                fmt_duration(took)
            ));
            return Outcome::Drained(took);
        }
        if let (Some(v), Some(w)) = (&self.last, lines.writer()) {
            log_deadline(w, v, self.timing.timeout, took);
        }
        Outcome::DeadlineExceeded(Some(blocking))
    }
}

/// Fewer new connections than this make no rhythm: a pool that refills,
/// a last flush to a database. Held for, they would hold the pod for a
/// window as long as a sparse caller's.
const MIN_CALLS: u64 = 3;

impl Drain {
    /// Whether the app has been seen opening connections as it calls.
    fn calling(&self) -> bool {
        self.between_calls && self.rhythm.count() >= MIN_CALLS
    }

    /// The app's calls, for the holding line: "the app opened 42 connections
    /// as it called, 10.0/s: a silence of 1s by chance <= 1e-3".
    fn calls_said(&self) -> String {
        let w = &self.window;
        format!(
            "the app opened {} as it called, {}/s: a silence of {} by chance <= {}",
            render::count(w.arrivals as usize, "connection", "connections"),
            decimal::rate(w.rate),
            fmt_duration(w.length),
            decimal::chance(self.miss)
        )
    }
}

fn count(n: usize) -> String {
    render::count(n, "socket", "sockets")
}

/// The last lines of a wait that timed out: what still blocks, by owner, and
/// how to excuse another container. The kubelet shows a hook's output
/// nowhere, so these lines are for `--log-file`.
fn log_deadline(w: &mut dyn Write, v: &Summary, timeout: Duration, took: Duration) {
    log::say(
        w,
        format_args!(
            "deadline {} passed (at {}); {} still blocking: {}",
            fmt_duration(timeout),
            fmt_duration(took),
            count(v.blocking_count()),
            render::summary(v.first(), v.blocking_count(), DEADLINE_SOCKETS)
        ),
    );
    log::say(
        w,
        format_args!(
            "still blocking by {}: {}",
            render::owners_by(v.owners()),
            render::owner_summary(v.owners())
        ),
    );
    log::say(
        w,
        format_args!("hint: {}", render::ignore_uid_hint(v.owners())),
    );
}

fn log_change(lines: &mut Lines, v: &Summary, at: Duration) {
    if v.blocking_count() == 0 {
        lines.say(format_args!("[{}] nothing blocks", fmt_duration(at)));
    } else {
        lines.say(format_args!(
            "[{}] {} blocking: {}",
            fmt_duration(at),
            count(v.blocking_count()),
            render::summary(v.first(), v.blocking_count(), LOG_SOCKETS)
        ));
    }
    if let Some(note) =
        render::uninspected_note(v.trailer.uninspected_processes, v.trailer.unreadable_fds)
    {
        lines.say(format_args!("{note}"));
    }
}

/// `--drain`: one POST, bounded by its own budget and by the deadline; a
/// failure is logged and the wait goes on.
fn drain_proxy(target: &DrainTarget, clock: &dyn Clock, deadline: Instant, lines: &mut Lines) {
    let until = deadline.min(after(clock.now(), drain::BUDGET));
    match drain::post(target, clock, until) {
        Ok((status, via)) if via == target.addr => {
            lines.say(format_args!("drain: POST {} -> {status}", target.url));
        }
        Ok((status, via)) => lines.say(format_args!(
            "drain: POST {} -> {status} (via {via}; {} could not be reached)",
            target.url, target.addr
        )),
        Err(e) => lines.say(format_args!(
            "drain: POST {} failed: {e:#}; waiting anyway",
            target.url
        )),
    }
}

fn start_line(rules: &Rules, proc_root: &Path, o: &Timing, quiet_period: Duration) -> String {
    let mut line = format!(
        "waiting up to {} (every {}) for {} in {}",
        fmt_duration(o.timeout),
        fmt_duration(o.interval),
        render::whose_sockets(rules),
        proc_root.display(),
    );
    if !o.min_wait.is_zero() {
        line.push_str(&format!(", at least {}", fmt_duration(o.min_wait)));
    }
    if !quiet_period.is_zero() {
        line.push_str(&format!(", quiet period {}", fmt_duration(quiet_period)));
    }
    line.push_str(&render::ignoring(rules));
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
pub fn budget_warning(o: &Timing, grace: Option<Duration>) -> Option<String> {
    let worst = o.timeout.max(o.min_wait) + DEFAULT_PROXY_DRAIN;
    let (limit, whose) = match grace {
        Some(g) => (g, "the pod's"),
        None => (DEFAULT_GRACE, "the default"),
    };
    (worst > limit).then(|| {
        format!(
            "--timeout {} plus the proxy's default {} drain is over {whose} {} terminationGracePeriodSeconds; set terminationGracePeriodSeconds to at least {} (and keep terminationDrainDuration in the sum){}",
            fmt_duration(o.timeout.max(o.min_wait)),
            fmt_duration(DEFAULT_PROXY_DRAIN),
            fmt_duration(limit),
            worst.as_secs() + u64::from(worst.subsec_nanos() > 0),
            if grace.is_none() { ", and pass it as --grace-period" } else { "" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(timeout: u64, min_wait: u64) -> Timing {
        Timing {
            timeout: Duration::from_secs(timeout),
            interval: Duration::from_millis(250),
            min_wait: Duration::from_secs(min_wait),
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
        let l = start_line(&rules, Path::new("/proc"), &opts(25, 0), Duration::ZERO);
        assert_eq!(
            l,
            "waiting up to 25s (every 250ms) for sockets not owned by proxy uids [1337] or processes [\"envoy\"] in /proc"
        );
        let o = opts(25, 5);
        let rules = Rules {
            ignore_uids: vec![65532],
            ignore_ports: vec![9090],
            listen_only: true,
            ..rules
        };
        let l = start_line(&rules, Path::new("/proc"), &o, Duration::from_secs(2));
        assert!(
            l.ends_with(
                ", at least 5s, quiet period 2s, ignoring uids [65532], ignoring ports [9090], LISTEN sockets only"
            ),
            "{l}"
        );
    }

    mod calls {
        // An app that connects per call: its rhythm holds the proxy past
        // the moment it has no socket, between two calls.
        use super::*;
        use crate::decide::PodFacts;
        use crate::hook::said;
        use crate::procread::{Holders, TcpState};

        fn poll(blocking: bool, arrivals: u32) -> Polled {
            let s = Socket {
                state: TcpState::Established,
                local: "127.0.0.1:40000".parse().unwrap(),
                remote: "127.0.0.1:15001".parse().unwrap(),
                uid: 1000,
                inode: 9,
                rx_queue: 0,
                tx_queue: 0,
                info: None,
                cgroup: 0,
            };
            let rows: &[Socket] = if blocking { &[s] } else { &[] };
            let summary = crate::pass::decide_rows(
                &[rows],
                &Holders::default(),
                &Rules::default(),
                PodFacts::default(),
                Tally::new(DEADLINE_SOCKETS),
            )
            .unwrap();
            Polled { summary, arrivals }
        }

        /// Polls every 100ms: `calls` new connections each, with a socket
        /// open, until `until_ms`; then none. The release it settles on.
        fn release_after(calls: u32, until_ms: u64) -> (Instant, Instant, Vec<String>) {
            let t0 = Instant::now();
            let timing = Timing {
                timeout: Duration::from_secs(25),
                interval: Duration::from_millis(100),
                min_wait: Duration::ZERO,
            };
            let mut d = Drain::new(
                Span::new(t0, &timing),
                timing,
                Duration::ZERO,
                Some(Miss(1e-3)),
            );
            let ms = Duration::from_millis;
            let mut k = 1;
            while k * 100 <= until_ms {
                let at = t0 + ms(k * 100);
                said(|l| d.observe(poll(true, calls), at, at, l));
                k += 1;
            }
            let at = t0 + ms(k * 100);
            let (_, mut lines) = said(|l| d.observe(poll(false, 0), at, at, l));
            let release = d.release().unwrap();
            lines.extend(said(|l| d.holding(release, l)).1);
            (at, release, lines)
        }

        #[test]
        fn an_app_that_connects_per_call_is_held_for_its_rhythm() {
            // Ten calls a second for 3s, then nothing blocks: not let go
            // at once, as between two calls, but after a silence of them
            // that unlikely: about a second.
            let (clear, release, lines) = release_after(1, 3000);
            let held = release - clear;
            assert!(
                (Duration::from_millis(500)..Duration::from_millis(2000)).contains(&held),
                "{held:?} {lines:?}"
            );
            let hold = lines.last().unwrap();
            assert!(
                hold.contains("the app opened 30 connections as it called, 10.0/s: a silence of"),
                "{hold}"
            );
            assert!(hold.ends_with("by chance <= 1e-3)"), "{hold}");
        }

        #[test]
        fn a_few_new_connections_make_no_rhythm() {
            // Two (a pool refilling) over 200ms: let go when nothing blocks.
            let (clear, release, lines) = release_after(1, 200);
            assert_eq!(release, clear, "{lines:?}");
            assert!(
                !lines.last().unwrap().contains("the app opened"),
                "{lines:?}"
            );
        }
    }

    mod machine {
        // The loop itself, driven with `wait`'s judge on a fake clock.
        use super::*;
        use crate::decide::PodFacts;
        use crate::hook::{Ended, keep_deadline};
        use crate::log::Log;
        use crate::procread::{Holders, Socket, Stopped, TcpState};
        use crate::time::fake::FakeClock;

        /// The loop's options as the tests give them.
        struct WaitOptions {
            timeout: Duration,
            interval: Duration,
            min_wait: Duration,
            quiet_period: Duration,
        }

        /// The machine with `wait`'s judge; `log` gets the lines (`None`: a
        /// silent log).
        fn wait_loop(
            clock: &FakeClock,
            start: Instant,
            o: &WaitOptions,
            look: impl FnMut(&dyn Fn() -> bool) -> Result<Summary>,
            log: Option<&mut Vec<u8>>,
        ) -> Ended {
            let timing = Timing {
                timeout: o.timeout,
                interval: o.interval,
                min_wait: o.min_wait,
            };
            let span = Span::new(start, &timing);
            let mut judge = Drain::new(span, timing, o.quiet_period, None);
            let mut look = look;
            let look = |stop: &dyn Fn() -> bool| look(stop).map(Polled::quiet);
            let mut nowhere = Vec::new();
            let (out, quiet): (&mut dyn Write, bool) = match log {
                Some(l) => (l, false),
                None => (&mut nowhere, true),
            };
            let mut log = Log::open(out, quiet);
            let mut lines = Lines::new(&mut log);
            keep_deadline(
                clock,
                &span,
                &timing,
                &mut judge,
                look,
                |d| clock.sleep(d),
                &mut lines,
            )
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
                cgroup: 0,
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
            .outcome;
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
            .outcome;
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
            .outcome;
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
            .outcome;
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
        fn first_errors_hold_to_the_deadline_later_errors_keep_last_state() {
            let c = FakeClock::new();
            let mut log = Vec::new();
            // A hook that cannot read sockets still holds, to the deadline.
            let ended = wait_loop(
                &c,
                c.now(),
                &opts(1_000, 100, 0),
                |_| anyhow::bail!("boom"),
                Some(&mut log),
            );
            assert_eq!(
                ended,
                Ended {
                    outcome: Outcome::DeadlineExceeded(None),
                    failed: true
                }
            );
            assert_eq!(c.elapsed(), ms(1_000));
            let log = String::from_utf8(log).unwrap();
            assert_eq!(
                log.lines().collect::<Vec<_>>(),
                [
                    "prestop-wait: boom; polling on, then exit 2",
                    "prestop-wait: deadline 1s passed (at 1s) and no poll could be read: the proxy stops with whatever the app still holds"
                ],
                "{log}"
            );
            // One that can read again goes on as any wait, and still exits 2.
            let c = FakeClock::new();
            let ended = wait_loop(
                &c,
                c.now(),
                &opts(1_000, 100, 0),
                |_| {
                    if c.elapsed() < ms(300) {
                        anyhow::bail!("not yet")
                    }
                    Ok(nothing())
                },
                None,
            );
            assert_eq!(ended.outcome, Outcome::Drained(ms(300)));
            assert!(ended.failed);

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
        fn a_hook_held_up_past_its_deadline_looks_again_before_a_verdict() {
            // Nothing blocks at first; --min-wait holds to the deadline. The
            // hook is stopped across the deadline while the app starts
            // listening: the verdict must come from a look after the stop.
            let c = FakeClock::new();
            let (out, log, polls) = run(&c, &opts(2_000, 250, 2_000), |t| {
                if t == ms(250) {
                    c.stall.set(ms(2_750));
                }
                Ok(if t < ms(600) { nothing() } else { blocking(1) })
            });
            assert_eq!(out, Outcome::DeadlineExceeded(Some(1)), "{log}");
            assert_eq!(polls, 3, "{log}");
            assert_eq!(c.elapsed(), ms(3_250));
            assert!(log.contains("still blocking: LISTEN 0.0.0.0:1 "), "{log}");
            // Held up before the release: the release waits for a new look.
            let c = FakeClock::new();
            let (out, _, _) = run(&c, &opts(10_000, 250, 1_000), |t| {
                if t == ms(250) {
                    c.stall.set(ms(1_000));
                }
                Ok(if t < ms(600) || t >= ms(2_000) {
                    nothing()
                } else {
                    blocking(1)
                })
            });
            assert_eq!(out, Outcome::Drained(ms(2_000)));
        }

        #[test]
        fn a_look_held_up_past_the_deadline_that_is_cut_gives_no_verdict() {
            let c = FakeClock::new();
            let mut log = Vec::new();
            let out = wait_loop(
                &c,
                c.now(),
                &opts(1_000, 250, 1_000),
                |stop| {
                    if c.elapsed() == ms(250) {
                        c.stall.set(ms(2_000));
                    }
                    if c.elapsed() > ms(1_000) {
                        // Slow after the stop: cut at its budget.
                        for _ in 0..100 {
                            c.advance(ms(10));
                            if stop() {
                                return Err(Stopped.into());
                            }
                        }
                    }
                    Ok(nothing())
                },
                Some(&mut log),
            )
            .outcome;
            let log = String::from_utf8(log).unwrap();
            assert_eq!(out, Outcome::DeadlineExceeded(None), "{log}");
            assert!(
                log.contains("the hook was held up for 2s (stopped, or starved of CPU) and no poll finished since"),
                "{log}"
            );
            assert_eq!(c.elapsed(), ms(2_560));
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
            .outcome;
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
            .outcome;
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
}
