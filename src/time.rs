//! Time for the hooks: the [`Clock`] seam that lets every test run a hook on
//! a fake clock, and the saturating arithmetic that keeps any duration from
//! aborting one. A leaf: it knows nothing of the rest.

use std::time::{Duration, Instant};

/// Source of time for a hook.
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

/// The longest duration taken; longer ones count as this. Far past any grace
/// period, and small enough that no deadline sum overflows an `Instant`
/// (which would abort the hook).
/// (100 of humantime's years of 365.25 days, so it prints as `100years`.)
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// `t + d`, saturating: no duration may abort the hook. (Flags are capped
/// at [`MAX_DURATION`]; this keeps the loop safe for any value.)
pub fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(MAX_DURATION))
        .unwrap_or(t)
}

/// The share of its interval a look may cost before the interval stretches.
const CPU_SHARE: u32 = 20; // 1/20 = 5%

/// The interval in force after a look that cost `took`: `interval`, or
/// twenty times the cost when that is longer, so looking takes at most 5%
/// of a core: the hook must not take a core from a pod that is shutting
/// down.
pub fn stretched(took: Duration, interval: Duration) -> Duration {
    took.saturating_mul(CPU_SHARE).max(interval)
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

    #[test]
    fn durations_print_to_the_millisecond() {
        assert_eq!(
            fmt_duration(Duration::from_nanos(1_234_567_890)),
            "1s 234ms"
        );
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn sums_saturate() {
        let t = Instant::now();
        assert!(after(t, Duration::MAX) >= after(t, MAX_DURATION));
        assert_eq!(stretched(Duration::MAX, Duration::ZERO), Duration::MAX);
        assert_eq!(
            stretched(Duration::from_millis(1), Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}

/// A clock for the tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::Clock;
    use std::cell::{Cell, RefCell};
    use std::time::{Duration, Instant};

    /// A clock that only moves when slept on; looks may also advance it to
    /// model their own cost.
    pub(crate) struct FakeClock {
        base: Instant,
        offset: Cell<Duration>,
        pub(crate) sleeps: RefCell<Vec<Duration>>,
        /// Added to the next sleep: the process stopped (SIGSTOP) or
        /// starved while it slept.
        pub(crate) stall: Cell<Duration>,
    }

    impl FakeClock {
        pub(crate) fn new() -> Self {
            FakeClock {
                base: Instant::now(),
                offset: Cell::new(Duration::ZERO),
                sleeps: RefCell::new(Vec::new()),
                stall: Cell::new(Duration::ZERO),
            }
        }
        pub(crate) fn advance(&self, d: Duration) {
            self.offset.set(self.offset.get() + d);
        }
        pub(crate) fn elapsed(&self) -> Duration {
            self.offset.get()
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.base + self.offset.get()
        }
        fn sleep(&self, d: Duration) {
            self.sleeps.borrow_mut().push(d);
            self.advance(d + self.stall.take());
        }
    }
}
