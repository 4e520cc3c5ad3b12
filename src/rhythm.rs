//! The traffic's rhythm: how long a silence must last before it means the
//! traffic has stopped, not paused. Pure: arrival instants in, a window out.
//!
//! A fixed idle window is wrong both ways: at one request a second a 2s
//! silence comes by chance every few requests, at forty a second it never
//! does. The judge asks instead: for the traffic seen so far, how likely is
//! a silence this long while traffic still flows? It releases once that is
//! at most `miss` over the whole hold.
//!
//! Two estimates of that chance, and the window is the longer:
//! - **the rate**, with its uncertainty: arrivals are taken as Poisson at a
//!   rate the hold has only estimated. With `n` arrivals over `T`, the rate
//!   is Gamma(`n + 1/2`, `T`) distributed (Jeffreys' prior) and the chance
//!   of a gap over `s` is the Lomax tail `(T / (T + s))^(n + 1/2)`: a few
//!   arrivals leave a heavy tail, so a sparse service is not let go after
//!   a lucky second.
//! - **the observed gaps**, for bursty traffic, where the mean says little
//!   (Paxson and Floyd: arrivals within sessions are not Poisson): the
//!   longest gaps seen are fitted with an exponential tail (peaks over a
//!   threshold), so an off period seen once makes the window longer than it.
//!
//! Both are per gap; over a hold the traffic has `N` chances (the arrivals
//! the hold has seen), so each must be at most `miss / N`: `miss` is per
//! rollout, not per gap.
//!
//! What came before the hold: where the pod's history is known (accepted
//! connections and data segments over its age, see [`History`]), it counts
//! as up to [`HISTORY_WEIGHT`] of observation at its rate, while the hold's
//! own arrivals stay consistent with it; once they are not (a lull after a
//! busy day, or kept-alive traffic its counters do not show), the hold
//! judges by what it sees alone.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most arrivals kept for their gaps: at 200 a second, the last 20s.
const KEPT: usize = 4096;

/// The most of the pod's history that counts as observation.
pub const HISTORY_WEIGHT: Duration = Duration::from_secs(60);

/// Fewer gaps than this say nothing about a tail.
const MIN_GAPS: usize = 8;

/// Windows past this are "never" (the deadline decides).
const NEVER: f64 = 100.0 * 365.0 * 86_400.0;

/// `--miss`: a chance above 0 and at most 0.5 (checked where it is
/// parsed), so never NaN.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Miss(pub f64);

impl Eq for Miss {}

/// What the pod's counters say of its traffic before the hold: `arrivals`
/// over `over` (its age).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct History {
    /// Arrivals the counters show (at least; some kinds they miss).
    pub arrivals: u64,
    /// Over how long.
    pub over: Duration,
}

impl History {
    fn rate(&self) -> f64 {
        self.arrivals as f64 / self.over.as_secs_f64().max(1e-3)
    }
}

/// Which estimate set the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// No traffic seen, in the hold or the pod's history of at least
    /// [`HISTORY_WEIGHT`].
    Nothing,
    /// No traffic seen, and no history (or one too short) to tell a quiet
    /// pod from a sparse one: the fallback window.
    Unknown,
    /// The watcher's own floor: the traffic is busier than it can sample.
    Floor,
    /// The rate and its uncertainty.
    Rate,
    /// The longest gaps seen (bursty traffic).
    Gaps,
}

/// The window the judge chose, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// A silence this long releases.
    pub length: Duration,
    /// Arrivals a second, as estimated.
    pub rate: f64,
    /// Arrivals that estimate stands on (history's included).
    pub arrivals: u64,
    /// Over how long.
    pub over: Duration,
    /// Whether the pod's history counted.
    pub history: bool,
    /// The longest gap seen.
    pub longest: Duration,
    /// What set it.
    pub basis: Basis,
}

/// The judge: arrivals in, [`Window`]s out.
#[derive(Debug, Clone)]
pub struct Rhythm {
    miss: f64,
    floor: Duration,
    unknown: Duration,
    start: Instant,
    /// Arrival instants, ascending, the newest [`KEPT`].
    arrivals: VecDeque<Instant>,
    /// Every arrival since `from`.
    count: u64,
    /// The pod's history, while the hold's arrivals agree with it.
    history: Option<History>,
    /// Scratch for the gaps, kept to spare an allocation a look.
    gaps: Vec<f64>,
}

impl Rhythm {
    /// A judge for a hold from `start`: `miss` the chance per hold of a
    /// release while traffic still flows, `floor` the shortest window (the
    /// watcher's own sampling), `unknown` the window when nothing at all is
    /// known.
    pub fn new(start: Instant, miss: f64, floor: Duration, unknown: Duration) -> Self {
        Rhythm {
            miss: miss.clamp(1e-12, 0.5),
            floor,
            unknown,
            start,
            arrivals: VecDeque::new(),
            count: 0,
            history: None,
            gaps: Vec::new(),
        }
    }

    /// Takes in the pod's history (once, before or at the first look).
    pub fn history(&mut self, h: History) {
        if !h.over.is_zero() {
            self.history = Some(h);
        }
    }

    /// One arrival at `at`. One before the start (a kept-alive
    /// connection's last request, dated by its `tcp_info`) is left to the
    /// [`History`]: the hold did not see what else came then.
    pub fn arrive(&mut self, at: Instant) {
        if at < self.start {
            return;
        }
        self.count += 1;
        // Mostly in order: dates come per connection, each look's after
        // the last look's.
        let i = self.arrivals.iter().rev().take_while(|&&a| a > at).count();
        self.arrivals.insert(self.arrivals.len() - i, at);
        if self.arrivals.len() > KEPT {
            self.arrivals.pop_front();
        }
    }

    /// `n` arrivals after `after`, the last at `last` (a kept-alive
    /// connection's data segments between two looks): spread evenly, since
    /// only the last is dated.
    pub fn arrive_spread(&mut self, after: Instant, last: Instant, n: u32) {
        let n = n.max(1);
        let span = last.saturating_duration_since(after);
        for k in 1..n {
            self.arrive(after + span.mul_f64(f64::from(k) / f64::from(n)));
        }
        self.arrive(last);
    }

    /// The last arrival, or the start where none came.
    pub fn last(&self) -> Instant {
        self.arrivals.back().copied().unwrap_or(self.start)
    }

    /// Whether any arrival was seen.
    pub fn seen(&self) -> bool {
        self.count > 0
    }

    /// How many arrivals were seen (from the start).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The window after the last arrival (or the start), for what has
    /// been seen so far: a silence, however long, does not change it.
    pub fn window(&mut self) -> Window {
        // The traffic is judged over the hold up to its last arrival: the
        // silence since is what is being judged, not evidence of a lower
        // rate. Counted in, a silence lowered the rate, which lengthened
        // the window, without end (and dropped a history it disagreed
        // with): the rollout benchmark's 2 requests/s held to the deadline.
        let flowing = self.last().saturating_duration_since(self.start);
        let t = flowing.as_secs_f64().max(1e-3);
        let n = self.count;
        if let Some(h) = self.history
            && !consistent(n, h.rate() * t)
        {
            self.history = None;
        }
        let (mut alpha, mut beta) = (n as f64 + 0.5, t);
        let history = self.history.filter(|h| h.arrivals > 0);
        if let Some(h) = history {
            let w = h.over.min(HISTORY_WEIGHT).as_secs_f64();
            alpha += h.rate() * w;
            beta += w;
        }
        let rate = (alpha - 0.5).max(0.0) / beta;
        let longest = self.longest();
        let base = Window {
            length: self.floor,
            rate,
            arrivals: (alpha - 0.5).round() as u64,
            over: Duration::from_secs_f64(beta),
            history: history.is_some(),
            longest,
            basis: Basis::Floor,
        };
        if n == 0 && history.is_none() {
            let (length, basis) = match self.history {
                // Counters that show nothing over a pod's life long enough
                // to say so: no traffic. Over seconds (a pod just started,
                // bursty traffic between two bursts) they say nothing.
                Some(h) if h.over >= HISTORY_WEIGHT => (self.floor, Basis::Nothing),
                _ => (self.unknown.max(self.floor), Basis::Unknown),
            };
            return Window {
                length,
                basis,
                ..base
            };
        }
        // The chances the traffic had to fall silent this long: a gap per
        // arrival over the hold, at least one.
        let chances = (rate * t).max(1.0);
        let per_gap = self.miss / chances;
        let by_rate = beta * ((1.0 / per_gap).powf(1.0 / alpha) - 1.0);
        let by_gaps = self.tail(per_gap);
        let floor = self.floor.as_secs_f64();
        let (secs, basis) = if by_gaps > by_rate && by_gaps > floor {
            (by_gaps, Basis::Gaps)
        } else if by_rate > floor {
            (by_rate, Basis::Rate)
        } else {
            (floor, Basis::Floor)
        };
        Window {
            length: Duration::from_secs_f64(secs.min(NEVER)),
            basis,
            ..base
        }
    }

    fn longest(&self) -> Duration {
        self.arrivals
            .iter()
            .zip(self.arrivals.iter().skip(1))
            .map(|(a, b)| b.saturating_duration_since(*a))
            .max()
            .unwrap_or_default()
    }

    /// The silence whose chance, by the observed gaps' tail, is `p`: the
    /// `k` longest gaps over the next one as threshold `u`, their excess
    /// over it exponential with their mean excess `e`; the chance of a gap
    /// past `u + x` is `(k / gaps) * exp(-x / e)`. For Poisson traffic this
    /// agrees with the rate; an off period among the longest lengthens it.
    fn tail(&mut self, p: f64) -> f64 {
        self.gaps.clear();
        self.gaps.extend(
            self.arrivals
                .iter()
                .zip(self.arrivals.iter().skip(1))
                .map(|(a, b)| b.saturating_duration_since(*a).as_secs_f64()),
        );
        let g = self.gaps.len();
        if g < MIN_GAPS {
            return 0.0;
        }
        let k = ((g as f64).sqrt().ceil() as usize).clamp(3, 32).min(g - 1);
        // The k longest first, then the threshold.
        self.gaps.select_nth_unstable_by(k, |a, b| b.total_cmp(a));
        let u = self.gaps[k];
        let e = self.gaps[..k].iter().map(|x| x - u).sum::<f64>() / k as f64;
        let q = k as f64 / g as f64;
        if q <= p {
            return u;
        }
        u + e * (q / p).ln()
    }
}

/// Whether `n` arrivals are a plausible count where `mean` were expected
/// (Poisson, about 1 in 1,000 either way; a normal approximation with a
/// continuity margin, which errs toward "plausible" for small means).
fn consistent(n: u64, mean: f64) -> bool {
    const Z: f64 = 3.3;
    let n = n as f64;
    let sd = mean.sqrt();
    n <= mean + Z * sd + Z * Z && n + 1.0 >= mean - Z * sd
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISS: f64 = 1e-3;

    fn judge(t0: Instant) -> Rhythm {
        Rhythm::new(t0, MISS, Duration::from_millis(200), Duration::from_secs(2))
    }

    /// A deterministic stand-in for exponential gaps (a fixed LCG).
    fn poisson(rate: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                -u.ln() / rate
            })
            .collect()
    }

    /// Feeds gaps from `t0`; returns the last arrival.
    fn feed(r: &mut Rhythm, t0: Instant, gaps: &[f64]) -> Instant {
        let mut t = t0;
        for g in gaps {
            t += Duration::from_secs_f64(*g);
            r.arrive(t);
        }
        t
    }

    #[test]
    fn busy_traffic_gets_a_short_window_sparse_a_long_one() {
        let t0 = Instant::now();
        let mut busy = judge(t0);
        feed(&mut busy, t0, &poisson(200.0, 400, 1));
        let w = busy.window();
        assert_eq!(w.basis, Basis::Floor, "{w:?}");
        assert_eq!(w.length, Duration::from_millis(200));
        assert!((150.0..250.0).contains(&w.rate), "{w:?}");

        let mut twenty = judge(t0);
        feed(&mut twenty, t0, &poisson(20.0, 60, 2));
        let w = twenty.window();
        // Poisson at a known 20/s over ~60 chances: ln(60/1e-3)/20 = 0.55s;
        // the estimate's uncertainty adds a little.
        assert!((0.4..0.9).contains(&w.length.as_secs_f64()), "{w:?}");

        let mut sparse = judge(t0);
        feed(&mut sparse, t0, &poisson(1.0, 5, 3));
        let w = sparse.window();
        // At a known 1/s, ln(5/1e-3) = 8.5s; five arrivals know it poorly.
        assert!(w.length > Duration::from_secs(10), "{w:?}");
    }

    #[test]
    fn the_window_shrinks_as_evidence_grows() {
        let t0 = Instant::now();
        let gaps = poisson(20.0, 200, 4);
        let mut r = judge(t0);
        let mut lengths = Vec::new();
        let mut t = t0;
        for chunk in gaps.chunks(20) {
            t = feed(&mut r, t, chunk);
            lengths.push(r.window().length);
        }
        assert!(lengths[0] > lengths[9], "{lengths:?}");
        assert!(lengths[9] < Duration::from_millis(900), "{lengths:?}");
    }

    #[test]
    fn an_off_period_seen_makes_the_window_longer_than_it() {
        let t0 = Instant::now();
        let mut r = judge(t0);
        // Bursts at 50/s for a second, then 3s off, three times.
        let mut gaps = Vec::new();
        for i in 0..3 {
            let mut b = poisson(50.0, 50, 10 + i);
            b[0] = 3.0;
            gaps.extend(b);
        }
        feed(&mut r, t0, &gaps);
        let w = r.window();
        assert_eq!(w.basis, Basis::Gaps, "{w:?}");
        assert!(w.length > Duration::from_secs(3), "{w:?}");
        // The mean alone (about 11/s) would have said under a second.
        let mut plain = judge(t0);
        feed(&mut plain, t0, &poisson(11.0, 150, 20));
        assert!(plain.window().length < Duration::from_secs(2));
    }

    #[test]
    fn nothing_seen_is_the_fallback_or_quiet_by_history() {
        let t0 = Instant::now();
        let mut r = judge(t0);
        let w = r.window();
        assert_eq!(
            (w.basis, w.length),
            (Basis::Unknown, Duration::from_secs(2))
        );
        r.history(History {
            arrivals: 0,
            over: Duration::from_secs(3600),
        });
        let w = r.window();
        assert_eq!(
            (w.basis, w.length),
            (Basis::Nothing, Duration::from_millis(200))
        );
        // Nothing over a pod's first seconds says nothing: the rollout
        // benchmark's bursty traffic was let go at 200ms between two
        // bursts of a 3s-old pod, and the next burst failed.
        let mut r = judge(t0);
        r.history(History {
            arrivals: 0,
            over: Duration::from_secs(3),
        });
        let w = r.window();
        assert_eq!(
            (w.basis, w.length),
            (Basis::Unknown, Duration::from_secs(2))
        );
    }

    #[test]
    fn traffic_that_agrees_with_the_history_keeps_it() {
        let t0 = Instant::now();
        let mut r = judge(t0);
        // Two a second over the pod's minute, then the same for 10s of
        // the hold, then nothing: the traffic stopped.
        r.history(History {
            arrivals: 120,
            over: Duration::from_secs(60),
        });
        feed(&mut r, t0, &poisson(2.0, 20, 7));
        let w = r.window();
        assert!(w.history, "{w:?}");
        // ln(1000 x ~20 chances) / 2 a second: about 5s, a little more
        // for the rate's uncertainty.
        let len = w.length.as_secs_f64();
        assert!((4.0..8.0).contains(&len), "{w:?}");
        // The arrivals agree with the history: it stays, whatever the
        // silence after them (see quiesce's a_silence_is_judged_by_the_
        // traffic_before_it for the hold).
    }

    #[test]
    fn history_makes_a_sparse_service_known_at_the_first_look() {
        let t0 = Instant::now();
        let mut r = judge(t0);
        // One connection a second over the pod's hour.
        r.history(History {
            arrivals: 3600,
            over: Duration::from_secs(3600),
        });
        let w = r.window();
        assert!(w.history, "{w:?}");
        assert!(w.length > Duration::from_secs(5), "{w:?}");
        assert!((0.9..1.1).contains(&w.rate), "{w:?}");
    }

    #[test]
    fn history_the_hold_contradicts_is_dropped() {
        let t0 = Instant::now();
        // Counters that say one a minute (kept-alive traffic they miss);
        // the hold sees 100/s.
        let mut r = judge(t0);
        r.history(History {
            arrivals: 60,
            over: Duration::from_secs(3600),
        });
        feed(&mut r, t0, &poisson(100.0, 200, 5));
        let w = r.window();
        assert!(!w.history, "{w:?}");
        assert!(w.length < Duration::from_millis(400), "{w:?}");
        // A busy history in a lull: after a few quiet seconds it is dropped.
        let mut r = judge(t0);
        r.history(History {
            arrivals: 360_000,
            over: Duration::from_secs(3600),
        });
        feed(&mut r, t0, &[1.0, 1.5, 0.7]);
        let w = r.window();
        assert!(!w.history, "{w:?}");
        assert!(w.length > Duration::from_secs(10), "{w:?}");
    }

    #[test]
    fn spread_arrivals_count_and_those_before_the_start_do_not() {
        let t0 = Instant::now() + Duration::from_secs(120);
        let mut r = judge(t0);
        // Before the start: the history's to count.
        r.arrive(t0 - Duration::from_secs(1));
        assert!(!r.seen());
        assert_eq!(r.last(), t0);
        r.arrive_spread(t0, t0 + Duration::from_millis(100), 10);
        assert_eq!(r.count, 10);
        assert_eq!(r.last(), t0 + Duration::from_millis(100));
        // Out of order: kept ascending.
        r.arrive(t0 + Duration::from_millis(5));
        assert!(
            r.arrivals
                .iter()
                .zip(r.arrivals.iter().skip(1))
                .all(|(a, b)| a <= b)
        );
    }

    #[test]
    fn consistency_is_about_one_in_a_thousand() {
        assert!(consistent(100, 100.0));
        assert!(consistent(0, 5.0));
        assert!(!consistent(0, 20.0));
        assert!(!consistent(200, 100.0));
        assert!(consistent(3, 0.0));
        assert!(!consistent(40, 1.0));
    }
}
