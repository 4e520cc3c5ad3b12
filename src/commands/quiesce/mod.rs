//! `quiesce`: the app container's preStop. After a pod is deleted, its
//! endpoint's removal reaches kube-proxy, ingresses and every mesh proxy
//! over seconds, and requests keep arriving until then. Instead of a guessed
//! `sleep`, this looks at the pod's sockets every interval and holds until
//! the inbound traffic to the app's ports has been silent for longer than
//! its own rhythm explains ([`crate::rhythm`]; or a fixed `--idle`), and
//! `--min-wait` has passed, or the deadline passes.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::{IdleWindow, QuiesceConfig};
use crate::decide::{Containers, Rules};
use crate::decimal;
use crate::exit_codes::ExitCode;
use crate::hook::{self, Hook, Judge, Lines, Outcome, Settings, Span, Timing};
use crate::log::Whose;
use crate::procread::Table;
use crate::procread::counters;
use crate::procread::destroys::{Destroys, Drained};
use crate::procread::netlink::{ALL_STATES, Diag};
use crate::render::{self, Addr};
use crate::rhythm::{Basis, History, Rhythm, Window};
use crate::source::{Chosen, Source};
use crate::time::{Clock, after, fmt_duration};
use crate::traffic::{Look, Sign, Traffic, Watch};

mod preview;
pub use preview::{Preview, json_error, preview};

/// Runs `quiesce`, logging to `stderr` (and `--log-file`).
pub fn run(config: QuiesceConfig, clock: &impl Clock, stderr: &mut dyn Write) -> Result<ExitCode> {
    let watch = Watch::new(config.rules.clone(), config.ports.clone());
    let settings = config.hook.clone();
    let quiesce = Quiesce {
        config,
        watch,
        said_coarse: false,
        destroys: None,
        counters: None,
    };
    Ok(hook::run(quiesce, settings, clock, stderr))
}

struct Quiesce {
    config: QuiesceConfig,
    watch: Watch,
    /// The coarser-signal note was said at the start.
    said_coarse: bool,
    /// The kernel's destroy events, where it gives them: connections that
    /// come and go between two looks.
    destroys: Option<Destroys>,
    /// The namespace's accepted connections and the pod's age, read at the
    /// start, until the first look adds its connections' data segments
    /// and hands them on as the [`History`].
    counters: Option<(u64, Duration)>,
}

/// What one look saw.
pub struct Seen {
    look: Look,
    /// The ports the app has been seen listening on.
    ports: Vec<u16>,
    /// The source has no `tcp_info` (the tables).
    coarse: bool,
    /// Destroy events were lost (an overflow, a read that failed): said
    /// once, and counted as traffic.
    lost: Option<String>,
    /// The pod's history, with the first look.
    history: Option<History>,
}

impl Hook for Quiesce {
    type Judge = Hold;
    const DOING: &'static str = "holding";

    fn whose(&self) -> Whose {
        Whose::App
    }

    fn setup(&self, diag: Diag) -> Diag {
        diag.with_info().with_states(ALL_STATES)
    }

    fn attribute(&mut self, containers: &Containers) {
        self.config.rules.attribute(containers);
        self.watch.attribute(containers);
    }

    fn start_line(&self, settings: &Settings) -> String {
        start_line(
            &self.config.rules,
            &self.config.ports,
            &settings.timing,
            self.config.window,
        )
    }

    /// The tables' coarser signal is said at the start, before any look's
    /// lines; a failover to them later is the judge's to say.
    fn begin(&mut self, _clock: &dyn Clock, _span: &Span, source: &Chosen, lines: &mut Lines) {
        // Only a learned window asks what came before; unreadable counters
        // leave it to what the hold sees.
        if matches!(self.config.window, IdleWindow::Learned(_)) {
            match before(&self.config.hook.proc_root) {
                Ok(c) => self.counters = Some(c),
                Err(e) => lines.say(format_args!(
                    "note: no history of the pod's traffic ({e:#}): the window is learned from the hold alone"
                )),
            }
        }
        if source.is_tables() {
            lines.say(format_args!("note: {COARSE}"));
            self.said_coarse = true;
        }
        match Destroys::subscribe() {
            Ok(d) => self.destroys = Some(d),
            Err(e) => lines.say(format_args!(
                "note: no TCP destroy events ({e:#}): a connection that comes and goes between two looks is not seen; traffic is assumed until a window after the start"
            )),
        }
    }

    fn judge(&self, span: &Span) -> Hold {
        let mut hold = Hold::new(
            *span,
            self.config.hook.timing,
            self.config.window,
            !self.config.ports.is_empty(),
        );
        hold.said_coarse = self.said_coarse;
        hold
    }

    fn look(&mut self, source: &mut Chosen, at: Instant, stop: &dyn Fn() -> bool) -> Result<Seen> {
        let mut l = rows(&mut self.watch, source, at, stop)?;
        // After the rows, so that the app's ports are known: what closed
        // since the last look, however briefly it lived.
        let mut lost = None;
        if let Some(d) = &mut self.destroys {
            let watch = &self.watch;
            match d.drain(&mut |s| watch.closed(&mut l, at, &s)) {
                Ok(Drained::Whole) => {}
                Ok(Drained::Lost) => {
                    lost = Some("the kernel's queue of TCP destroy events overflowed".to_owned());
                }
                Err(e) => {
                    lost = Some(format!("{e:#}; reading no more of them"));
                    self.destroys = None;
                }
            }
            if lost.is_some() {
                self.watch.lost(&mut l, at);
            }
        }
        let look = self.watch.finish(l, at);
        let history = self.counters.take().map(|c| history(c, &look));
        Ok(Seen {
            look,
            ports: self.watch.listening().to_vec(),
            coarse: source.is_tables(),
            lost,
            history,
        })
    }
}

/// One look's rows, both tables, into the watch (the look not yet
/// finished: `quiesce` adds what closed since).
fn rows(
    watch: &mut Watch,
    source: &mut Chosen,
    at: Instant,
    stop: &dyn Fn() -> bool,
) -> Result<Look> {
    watch.dated(!source.is_tables());
    let mut l = watch.begin();
    for table in [Table::Tcp, Table::Tcp6] {
        source.read(table, stop, &mut |s| watch.row(&mut l, at, &s))?;
    }
    Ok(l)
}

/// What the namespace's counters say came before: the connections it
/// accepted, and the pod's age (its PID 1's, the pause process's where the
/// pod shares it, the container's otherwise).
fn before(proc_root: &std::path::Path) -> Result<(u64, Duration)> {
    Ok((
        counters::passive_opens(proc_root)?,
        counters::age_of_pid1(proc_root)?,
    ))
}

/// The pod's history: [`before`]'s accepted connections plus the data
/// segments the first look's open connections received over their lives.
fn history((opens, over): (u64, Duration), first: &Look) -> History {
    History {
        arrivals: opens.saturating_add(first.lifetime_segs),
        over,
    }
}

/// Said once when the tables are the source.
const COARSE: &str = "the tables carry no tcp_info, so this is coarser: data on a kept-alive connection shows only while bytes wait in its queues; new, ended and queued connections show at every look; traffic is assumed until a window after the start";

/// The window when nothing at all is known (no traffic seen, no history):
/// the fixed window `quiesce` had before it learned.
const UNKNOWN: Duration = Duration::from_secs(2);

/// The shortest learned window: two looks, so that a connection that
/// arrives while one is taken is seen by the next.
fn floor(interval: Duration) -> Duration {
    interval.saturating_mul(2)
}

fn start_line(rules: &Rules, ports: &[u16], t: &Timing, window: IdleWindow) -> String {
    let window = match window {
        IdleWindow::Fixed(d) => format!("for {}", fmt_duration(d)),
        IdleWindow::Learned(m) => format!(
            "for longer than its rhythm explains (miss <= {}, at least {})",
            decimal::chance(m.0),
            fmt_duration(floor(t.interval))
        ),
    };
    let mut line = format!(
        "quiescing: holding up to {} (every {}) until no inbound traffic {window} on ",
        fmt_duration(t.timeout),
        fmt_duration(t.interval),
    );
    if ports.is_empty() && rules.own_cgroup.is_some() {
        line.push_str("this container's listening ports");
        if rules.proxy_uids_given {
            line.push_str(&format!(" (not proxy uids {:?})", rules.proxy_uids));
        }
    } else if ports.is_empty() {
        line.push_str(&format!(
            "the app's listening ports (not proxy uids {:?})",
            rules.proxy_uids
        ));
    } else {
        line.push_str(&format!("ports {ports:?}"));
    }
    if !t.min_wait.is_zero() {
        line.push_str(&format!(", at least {}", fmt_duration(t.min_wait)));
    }
    line.push_str(&render::ignoring(rules));
    line
}

/// `quiesce`'s judgement: what the hold knows between looks, and the lines
/// it says. Pure, on instants, so that tests run it on made-up times.
#[derive(Debug)]
pub struct Hold {
    span: Span,
    timing: Timing,
    rule: IdleWindow,
    /// The judge of a learned window.
    rhythm: Rhythm,
    /// The window as the last look left it.
    window: Window,
    /// When traffic last arrived (the start until a look says later: what
    /// happened before the first look cannot be known).
    last: Instant,
    /// Which traffic that was.
    latest: Option<Traffic>,
    /// Whether traffic is arriving, as last said.
    arriving: bool,
    /// The app's ports, as last said.
    ports: Option<Vec<u16>>,
    /// `--port` was given: its ports count without a listener.
    ports_given: bool,
    /// The coarser-signal note was said.
    said_coarse: bool,
    /// Lost destroy events were said.
    said_lost: bool,
    connections: usize,
    queued: u32,
}

impl Hold {
    fn new(span: Span, timing: Timing, rule: IdleWindow, ports_given: bool) -> Self {
        let miss = match rule {
            IdleWindow::Learned(m) => m.0,
            IdleWindow::Fixed(_) => 1.0,
        };
        let mut rhythm = Rhythm::new(span.start, miss, floor(timing.interval), UNKNOWN);
        let mut window = rhythm.window();
        if let IdleWindow::Fixed(d) = rule {
            window.length = d;
        }
        Hold {
            span,
            timing,
            rule,
            rhythm,
            window,
            last: span.start,
            latest: None,
            arriving: false,
            ports: None,
            ports_given,
            said_coarse: false,
            said_lost: false,
            connections: 0,
            queued: 0,
        }
    }
}

impl Judge for Hold {
    type Seen = Seen;
    const LOOK: &'static str = "look";
    const UNSEEN: &'static str = "the app stops with whatever traffic still arrives";
    const FAILED: &'static str = "a look failed, keeping what the last one saw and looking on";

    /// Says the app's ports when they change, and traffic when it starts to
    /// arrive and when it stops.
    fn observe(&mut self, seen: Seen, at: Instant, done: Instant, lines: &mut Lines) {
        let Seen {
            look: mut l,
            ports,
            coarse,
            lost,
            history,
        } = seen;
        if let (Some(why), false) = (lost, self.said_lost) {
            lines.say(format_args!(
                "warning: {why}: connections may have come and gone unseen, so this look counts as traffic"
            ));
            self.said_lost = true;
        }
        // The watch stamps a look's traffic from its start, but each row is
        // read later, up to the look's end: `tcp_info`'s age was measured
        // then, and a new connection may have come just before. Stamped as
        // late as the look can tell, the release is never early, however
        // long a look takes (200,000 sockets on the node).
        let late = done.saturating_duration_since(at);
        if let Some(t) = l.latest.as_mut() {
            t.at = after(t.at, late);
        }
        if let Some(h) = history {
            self.rhythm.history(h);
        }
        for a in &l.arrivals {
            let at = after(a.at, late);
            match a.after {
                Some(from) if a.count > 1 => {
                    self.rhythm.arrive_spread(after(from, late), at, a.count)
                }
                _ => self.rhythm.arrive(at),
            }
        }
        // Said once: at the start (see `Quiesce::begin`), or here when
        // netlink failed over to the tables.
        if coarse && !self.said_coarse {
            lines.say(format_args!("note: {COARSE}"));
            self.said_coarse = true;
        }
        let stamp = self.span.since(at);
        if self.ports.as_deref() != Some(&ports[..]) {
            match (ports.is_empty(), self.ports_given) {
                (true, false) => lines.say(format_args!("[{stamp}] the app listens on no port (no LISTEN socket outside the proxy's and ignored uids): no inbound traffic to hold for"
                )),
                (true, true) => lines.say(format_args!("[{stamp}] nothing listens on the --port ports; their connections count all the same"
                )),
                (false, _) => lines.say(format_args!("[{stamp}] the app listens on {}; {} open, {} queued",
                    ports_list(&ports),
                    render::count(l.connections, "connection", "connections"),
                    l.queued
                )),
            }
            self.ports = Some(ports);
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
        if let IdleWindow::Learned(_) = self.rule {
            self.window = self.rhythm.window();
        }
        // Arriving: traffic within half the window. The half keeps
        // requests a little apart from flapping the log every look.
        let quiet_for = at.saturating_duration_since(self.last);
        let arriving = self.latest.is_some() && quiet_for < self.window.length / 2;
        match (self.arriving, arriving, &self.latest) {
            (false, true, Some(t)) => lines.say(format_args!(
                "[{stamp}] traffic arriving: {}",
                describe(t, self.span.start)
            )),
            (true, false, Some(t)) => lines.say(format_args!(
                "[{stamp}] traffic stopped: none for {}; the last: {}{}",
                fmt_duration(quiet_for),
                describe(t, self.span.start),
                self.rhythm_said(", waiting ")
            )),
            _ => {}
        }
        self.arriving = arriving;
    }

    /// The window after the last traffic (or the start).
    fn release(&self) -> Option<Instant> {
        Some(after(self.last, self.window.length))
    }

    fn end(&mut self, now: Instant, released: bool, lines: &mut Lines) -> Outcome {
        let took_for = now.saturating_duration_since(self.span.start);
        let took = fmt_duration(took_for);
        let quiet_for = now.saturating_duration_since(self.last);
        let last = match &self.latest {
            Some(t) => format!("the last: {}", describe(t, self.span.start)),
            None => "none seen since the start".to_owned(),
        };
        let (silence, why) = match self.rule {
            IdleWindow::Fixed(d) => (fmt_duration(d), String::new()),
            IdleWindow::Learned(_) => (fmt_duration(quiet_for), self.rhythm_said("")),
        };
        let why = if why.is_empty() {
            why
        } else {
            format!("{why}; ")
        };
        if released {
            lines.say(format_args!(
                "no inbound traffic for {silence} ({why}{last}); done after {took}"
            ));
            return Outcome::Drained(took_for);
        }
        // At the deadline, judged by the last look that finished: quiet if
        // traffic stopped a window ago, or none came at all (a window
        // longer than --timeout). A learned window can be longer than any
        // deadline for sparse traffic: a silence of the old fixed window
        // is quiet enough to say so, not a failed hook.
        let enough = match self.rule {
            IdleWindow::Fixed(d) => d,
            IdleWindow::Learned(_) => self.window.length.min(UNKNOWN),
        };
        if self.latest.is_none() || after(self.last, enough) <= now {
            lines.say(format_args!("no inbound traffic for {silence} ({why}{last}); done after {took} (deadline reached while holding)"
            ));
            return Outcome::Drained(took_for);
        }
        lines.say(format_args!(
            "deadline {} passed (at {took}); traffic still arriving: {last}; {} open, {} queued",
            fmt_duration(self.timing.timeout),
            render::count(self.connections, "connection", "connections"),
            self.queued
        ));
        Outcome::DeadlineExceeded(Some(self.connections))
    }
}

impl Hold {
    /// What set a learned window, for the log; nothing for a fixed one.
    fn rhythm_said(&self, lead: &str) -> String {
        let IdleWindow::Learned(m) = self.rule else {
            return String::new();
        };
        format!("{lead}{}", said_window(&self.window, m.0))
    }
}

/// A learned window and why: "27.0 arrivals/s over 40s; a silence of
/// 310ms by chance <= 1e-3".
fn said_window(w: &Window, miss: f64) -> String {
    let len = fmt_duration(rounded(w.length));
    let history = if w.history {
        ", the pod's history with them"
    } else {
        ""
    };
    let rate = format!(
        "{} arrivals/s over {}{history}",
        decimal::rate(w.rate),
        fmt_duration(rounded(w.over))
    );
    match w.basis {
        Basis::Nothing => {
            format!("no traffic in the pod's history nor since the start: window {len}")
        }
        Basis::Unknown => format!("no traffic seen and no history to judge by: window {len}"),
        Basis::Floor => format!("{rate}: busier than the looks sample, window {len} (the floor)"),
        Basis::Rate => format!(
            "{rate}: a silence of {len} by chance <= {}",
            decimal::chance(miss)
        ),
        Basis::Gaps => format!(
            "{rate}, gaps up to {}: a silence of {len} by chance <= {}",
            fmt_duration(rounded(w.longest)),
            decimal::chance(miss)
        ),
    }
}

/// A window for people: whole seconds from 10s, hundredths from 1s
/// (`3h 8m 51s`, not `3h 8m 50s 940ms`); the hold keeps the exact one.
fn rounded(d: Duration) -> Duration {
    let step = if d >= Duration::from_secs(10) {
        1000
    } else if d >= Duration::from_secs(1) {
        10
    } else {
        return d;
    };
    let ms = d.as_millis() as u64;
    Duration::from_millis((ms + step / 2) / step * step)
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
        Sign::Closed => format!("{} -> {} closed by {when}", Addr(&t.remote), Addr(&t.local)),
        Sign::Lost => format!("destroy events lost by {when}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::said;

    fn timing(idle: u64, min_wait: u64, timeout: u64) -> (Timing, IdleWindow) {
        let timing = Timing {
            timeout: Duration::from_secs(timeout),
            interval: Duration::from_millis(100),
            min_wait: Duration::from_secs(min_wait),
        };
        (timing, IdleWindow::Fixed(Duration::from_secs(idle)))
    }

    /// The hold as the loop drives it: looks in, lines out, and the end the
    /// loop would reach at `now`.
    struct H {
        hold: Hold,
        looked_at: Option<Instant>,
    }

    impl H {
        fn new(t0: Instant, (timing, idle): (Timing, IdleWindow), ports_given: bool) -> Self {
            let span = Span::new(t0, &timing);
            H {
                hold: Hold::new(span, timing, idle, ports_given),
                looked_at: None,
            }
        }

        fn observe(&mut self, l: &Look, at: Instant, ports: &[u16]) -> Vec<String> {
            let seen = Seen {
                look: l.clone(),
                ports: ports.to_vec(),
                coarse: false,
                lost: None,
                history: None,
            };
            self.looked_at = Some(at);
            said(|lines| self.hold.observe(seen, at, at, lines)).1
        }

        /// The release with --min-wait, as the loop sees it.
        fn release(&self) -> Instant {
            self.hold.release().unwrap().max(self.hold.span.earliest)
        }

        fn outcome(&mut self, now: Instant) -> Option<(bool, String)> {
            let at = self.looked_at?;
            let released = at >= self.release();
            if !released && now < self.hold.span.deadline {
                return None;
            }
            let (o, lines) = said(|lines| self.hold.end(now, released, lines));
            Some((matches!(o, Outcome::Drained(_)), lines.join("\n")))
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
            ..Look::default()
        }
    }

    #[test]
    fn idle_is_counted_from_the_start_until_a_look_says_later() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = H::new(t0, timing(2, 0, 25), false);
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
        let mut h = H::new(t0, timing(2, 0, 25), false);
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
    fn no_look_finishing_by_the_deadline_ends_the_hold_instead_of_spinning() {
        use crate::hook::keep_deadline;
        use crate::procread::Stopped;
        use crate::time::fake::FakeClock;
        // --timeout=1ms: every look is cut. The loop must end at once.
        let c = FakeClock::new();
        let (timing, idle) = timing(2, 0, 0);
        let timing = Timing {
            timeout: Duration::from_millis(1),
            ..timing
        };
        let span = Span::new(c.now(), &timing);
        let mut hold = Hold::new(span, timing, idle, false);
        let mut looks = 0;
        let (ended, lines) = said(|lines| {
            keep_deadline(
                &c,
                &span,
                &timing,
                &mut hold,
                |stop| {
                    looks += 1;
                    assert!(looks < 10, "the loop spins");
                    c.advance(Duration::from_millis(2));
                    assert!(stop());
                    Err(Stopped.into())
                },
                |d| c.sleep(d),
                lines,
            )
        });
        assert_eq!(ended.outcome, Outcome::DeadlineExceeded(None));
        assert_eq!(looks, 1);
        assert_eq!(
            lines,
            [
                "deadline 1ms passed (at 2ms) before any look finished: the app stops with whatever traffic still arrives"
            ]
        );
    }

    #[test]
    fn traffic_is_stamped_as_late_as_the_look_can_tell() {
        // A look of 600ms: data 100ms old when its row was read may be
        // 100ms old at the look's end, no older. Stamped from the start,
        // the release would come up to the look's cost early.
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = H::new(t0, timing(1, 0, 25), false);
        let mut l = data(t0, 0);
        l.latest.as_mut().unwrap().at = t0 + ms(1_000) - ms(100);
        let seen = Seen {
            look: l,
            ports: vec![8080],
            coarse: false,
            lost: None,
            history: None,
        };
        said(|lines| h.hold.observe(seen, t0 + ms(1_000), t0 + ms(1_600), lines));
        assert_eq!(h.release(), t0 + ms(1_500 + 1_000));
    }

    #[test]
    fn min_wait_is_a_floor() {
        let t0 = Instant::now();
        let h = H::new(t0, timing(2, 5, 25), false);
        assert_eq!(h.release(), t0 + Duration::from_secs(5));
    }

    #[test]
    fn traffic_to_the_deadline_is_exit_1_and_says_the_last() {
        let t0 = Instant::now();
        let mut h = H::new(t0, timing(2, 0, 3), false);
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
        let mut h = H::new(t0, timing(2, 3, 3), false);
        h.observe(&data(t0, 500), t0 + Duration::from_millis(2900), &[8080]);
        let (quiet, line) = h.outcome(t0 + Duration::from_secs(3)).unwrap();
        assert!(quiet, "{line}");
        assert!(line.ends_with("(deadline reached while holding)"), "{line}");
    }

    #[test]
    fn no_traffic_at_all_is_quiet_at_the_deadline_whatever_idle_is() {
        let t0 = Instant::now();
        let mut h = H::new(t0, timing(5, 0, 1), false);
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
        let mut h = H::new(t0, timing(2, 0, 25), false);
        let lines = h.observe(&Look::default(), t0, &[]);
        assert!(lines[0].contains("the app listens on no port"), "{lines:?}");
    }

    #[test]
    fn lost_destroy_events_are_traffic_said_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = H::new(t0, timing(1, 0, 25), false);
        let mut l = Look::default();
        Watch::new(Rules::default(), vec![8080]).lost(&mut l, t0 + ms(100));
        for i in 1..=2u32 {
            let seen = Seen {
                look: l.clone(),
                ports: vec![8080],
                coarse: false,
                lost: Some("the kernel's queue of TCP destroy events overflowed".into()),
                history: None,
            };
            let at = t0 + ms(100) * i;
            let lines = said(|lines| h.hold.observe(seen, at, at, lines)).1;
            let warned = lines.iter().filter(|l| l.contains("warning: the kernel's queue of TCP destroy events overflowed: connections may have come and gone unseen, so this look counts as traffic")).count();
            assert_eq!(warned, usize::from(i == 1), "{lines:?}");
        }
        assert_eq!(h.release(), t0 + ms(100) + ms(1_000));
    }

    /// A learned window, fed looks 100ms apart whose arrivals come from
    /// `gaps` (seconds) until `until` seconds; then empty looks until the
    /// hold ends or `limit`. What ended it, when, and its last line.
    fn learned(gaps: &[f64], until: f64, limit: u64) -> (bool, Duration, Duration, String) {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (timing, _) = timing(0, 0, limit);
        let rule = IdleWindow::Learned(crate::rhythm::Miss(1e-3));
        let mut h = H::new(t0, (timing, rule), false);
        let mut arrivals: Vec<Duration> = Vec::new();
        let mut t = 0.0;
        for g in gaps.iter().cycle() {
            t += g;
            if t >= until {
                break;
            }
            arrivals.push(Duration::from_secs_f64(t));
        }
        let last = t0 + *arrivals.last().unwrap();
        let mut next = arrivals.iter().peekable();
        for k in 0.. {
            let at = t0 + ms(100) * k;
            let mut l = Look::default();
            while let Some(a) = next.next_if(|a| t0 + **a <= at) {
                let when = t0 + *a;
                l.arrivals.push(crate::traffic::Arrival {
                    after: None,
                    at: when,
                    count: 1,
                });
                l.latest = data(t0, a.as_millis() as u64).latest;
            }
            h.observe(&l, at, &[8080]);
            if let Some((quiet, line)) = h.outcome(at) {
                return (quiet, at - t0, at.saturating_duration_since(last), line);
            }
        }
        unreachable!()
    }

    /// Made-up exponential gaps (a fixed LCG), `n` of them at `rate`.
    fn exp_gaps(rate: f64, n: usize) -> Vec<f64> {
        let mut x = 7u64;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                -(((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64).ln() / rate
            })
            .collect()
    }

    #[test]
    fn busy_traffic_is_let_go_soon_after_it_stops() {
        let (quiet, _, after_last, line) = learned(&exp_gaps(40.0, 1000), 3.0, 25);
        assert!(quiet, "{line}");
        assert!(
            after_last <= Duration::from_millis(800),
            "{after_last:?}: {line}"
        );
        assert!(
            after_last >= Duration::from_millis(200),
            "{after_last:?}: {line}"
        );
        assert!(line.contains(" arrivals/s over "), "{line}");
        assert!(
            line.contains("by chance <= 1e-3") || line.contains("(the floor)"),
            "{line}"
        );
    }

    #[test]
    fn sparse_traffic_is_held_through_its_own_gaps() {
        // One a second for 6s: a 2s silence (the old --idle) is no proof.
        let (quiet, took, after_last, line) = learned(&exp_gaps(1.0, 100), 6.0, 20);
        assert!(
            after_last > Duration::from_secs(5),
            "{took:?} {after_last:?}: {line}"
        );
        // Quiet for long at the deadline: exit 0, saying so.
        if took >= Duration::from_secs(20) {
            assert!(quiet, "{line}");
            assert!(line.ends_with("(deadline reached while holding)"), "{line}");
        }
    }

    #[test]
    fn a_silence_is_judged_by_the_traffic_before_it() {
        // Two a second for 10s, then nothing. Judged by the 20 arrivals
        // over the 10s they came in, a silence of about 6s releases.
        // (Counting the silence as observation lowered the rate as it
        // grew, and the window with it: 16s, and the rollout benchmark's
        // 2 requests/s held to the deadline.)
        let (quiet, _, after_last, line) = learned(&exp_gaps(2.0, 1000), 10.0, 60);
        assert!(quiet, "{line}");
        assert!(
            (Duration::from_secs(4)..Duration::from_secs(9)).contains(&after_last),
            "{after_last:?}: {line}"
        );
        assert!(!line.contains("deadline"), "{line}");
    }

    #[test]
    fn learned_traffic_to_the_deadline_is_exit_1() {
        let (quiet, took, _, line) = learned(&exp_gaps(5.0, 1000), 100.0, 3);
        assert!(!quiet, "{line}");
        assert_eq!(took, Duration::from_secs(3));
        assert!(
            line.starts_with("deadline 3s passed (at 3s); traffic still arriving"),
            "{line}"
        );
    }
}
