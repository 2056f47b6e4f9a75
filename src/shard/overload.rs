//! The overload controller of one shard: it samples the shard's event-loop
//! lag (its monitor task), decides how much sheddable traffic to turn away,
//! and says when the shard lags more than an exchange's `tmax` allows.
//! What a shed request is answered with is the service's business
//! (`Service::shed`); which requests may be shed is the route table's.

use crate::config::OverloadConfig;
use crate::metrics::LocalMetrics;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A shard's load, from its event-loop lag: how late a timer set for
/// `overload.check_interval_ms` fires. Every runnable connection runs before
/// the timer does, so the lag is the queueing delay a request sees inside
/// the shard. Two rules make a shard overloaded:
/// - the smoothed lag is above `max_lag_ms` (a long queue), or
/// - every sample for `standing_window_ms` was above `standing_lag_ms` (a
///   standing queue, as CoDel defines one). A client that keeps its
///   connections busy and queues the rest on its side shows the shard a short
///   queue (256 connections of 50 µs requests: 13 ms) that never empties,
///   while its own queue grows without bound; a shard that keeps up empties
///   its queue now and then, and one low sample resets the window.
///
/// While overloaded, the shed fraction rises by `shed_rise_per_s` (10: 2
/// points per 2 ms sample), up to 0.95; otherwise it decays by
/// `shed_decay_per_s` (5), more slowly, so that shedding does not stop the
/// moment it has emptied the queue and let the backlog straight back.
/// Owned by one shard.
#[derive(Debug, Default)]
pub struct Load {
    /// Smoothed lag in microseconds.
    pub lag_us: Cell<f64>,
    /// How long every sample has been above `standing_lag`.
    standing: Cell<Duration>,
    /// Fraction of sheddable requests to shed now (0..=0.95).
    pub shed_fraction: Cell<f64>,
    /// Requests seen, for deterministic spreading of sheds.
    seq: Cell<u64>,
    /// Requests dispatched (the monitor slows down while it stands still).
    served: Cell<u64>,
}

/// The thresholds [`Load::observe`] compares against (from `[overload]`).
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    /// Smoothed lag above which the shard sheds.
    pub max_lag: Duration,
    /// Lag a queue may keep for `standing_window` before the shard sheds.
    pub standing_lag: Duration,
    /// See `standing_lag`.
    pub standing_window: Duration,
    /// Shed fraction gained per second overloaded.
    pub rise_per_s: f64,
    /// Shed fraction lost per second otherwise.
    pub decay_per_s: f64,
}

impl Load {
    /// Whether to shed this request.
    pub fn should_shed(&self) -> bool {
        self.served.set(self.served.get().wrapping_add(1));
        let f = self.shed_fraction.get();
        if f <= 0.0 {
            return false;
        }
        let n = self.seq.get().wrapping_add(1);
        self.seq.set(n);
        // Golden-ratio sequence: evenly spread, no RNG state.
        ((n as f64) * 0.618_033_988_749_895).fract() < f
    }

    /// Takes one sample: the timer fired `lag` late, `wall` after the last sample.
    pub fn observe(&self, lag: Duration, wall: Duration, lim: &LoadLimits) {
        let l = 0.8 * self.lag_us.get() + 0.2 * lag.as_secs_f64() * 1e6;
        self.lag_us.set(l);
        let standing = if lag > lim.standing_lag {
            self.standing.get() + wall
        } else {
            Duration::ZERO
        };
        self.standing.set(standing);
        let overloaded = l > lim.max_lag.as_secs_f64() * 1e6 || standing >= lim.standing_window;
        let f = self.shed_fraction.get();
        let f = if overloaded {
            (f + lim.rise_per_s * wall.as_secs_f64()).min(0.95)
        } else {
            (f - lim.decay_per_s * wall.as_secs_f64()).max(0.0)
        };
        self.shed_fraction.set(f);
    }
}

impl Load {
    /// Whether the shard lags at least `tmax_ms` behind: a bid would reach
    /// the exchange after it stopped waiting, so the request gets no bid.
    pub fn too_late_for(&self, tmax_ms: u32) -> bool {
        self.lag_us.get() / 1000.0 >= f64::from(tmax_ms)
    }
}

impl LoadLimits {
    /// The limits `[overload]` sets.
    pub fn from_config(ov: &OverloadConfig) -> Self {
        LoadLimits {
            max_lag: Duration::from_millis(ov.max_lag_ms),
            standing_lag: Duration::from_millis(ov.standing_lag_ms),
            standing_window: Duration::from_millis(ov.standing_window_ms),
            rise_per_s: ov.shed_rise_per_s,
            decay_per_s: ov.shed_decay_per_s,
        }
    }
}

/// How long the monitor sleeps while its shard serves nothing and sheds
/// nothing: an idle shard parks instead of waking every 2 ms (lag only
/// matters under load; the first sample of a burst comes at most this late).
pub(crate) const IDLE_STEP: Duration = Duration::from_millis(1000);

/// How long a shard must have served nothing before its monitor takes
/// [`IDLE_STEP`]s: a quiet sample or two inside a burst of slow requests
/// (each longer than the check interval) is not idleness.
const IDLE_AFTER: Duration = Duration::from_millis(100);

/// Starts the shard's monitor: a timer every `overload.check_interval_ms`
/// (every [`IDLE_STEP`] while the shard is idle) whose lateness is the lag
/// sample. Returns `None` when overload control is off. Dropping the task
/// stops it.
pub(crate) fn start_monitor(
    ov: &OverloadConfig,
    load: Rc<Load>,
    metrics: Rc<LocalMetrics>,
) -> Option<glommio::Task<()>> {
    if !ov.enabled {
        return None;
    }
    let every = Duration::from_millis(ov.check_interval_ms);
    let lim = LoadLimits::from_config(ov);
    Some(glommio::spawn_local(async move {
        let mut t = Instant::now();
        let mut step = every;
        let mut seen = load.served.get();
        let mut active = t;
        loop {
            glommio::timer::sleep(step).await;
            let now = Instant::now();
            let wall = now - t;
            load.observe(wall.saturating_sub(step), wall, &lim);
            metrics
                .counters
                .set_load(load.lag_us.get(), load.shed_fraction.get());
            t = now;
            let served = load.served.get();
            if served != seen {
                active = now;
            }
            let idle = now - active >= IDLE_AFTER && load.shed_fraction.get() <= 0.0;
            seen = served;
            step = if idle { IDLE_STEP } else { every };
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: LoadLimits = LoadLimits {
        max_lag: Duration::from_millis(20),
        standing_lag: Duration::from_millis(2),
        standing_window: Duration::from_millis(50),
        rise_per_s: 25.0,
        decay_per_s: 1.0,
    };
    const MS: Duration = Duration::from_millis(1);

    /// `n` samples 2 ms apart, each `lag` late.
    fn feed(load: &Load, n: usize, lag: Duration) {
        for _ in 0..n {
            load.observe(lag, 2 * MS, &LIM);
        }
    }

    #[test]
    fn a_long_queue_sheds() {
        let load = Load::default();
        feed(&load, 40, 30 * MS);
        assert!(load.lag_us.get() > 20_000.0);
        assert_eq!(load.shed_fraction.get(), 0.95, "capped below a blackout");
    }

    #[test]
    fn a_standing_short_queue_sheds_after_the_window() {
        // 256 connections of 50 us, always ready: 13 ms of lag, under max_lag.
        let load = Load::default();
        feed(&load, 24, 13 * MS);
        assert_eq!(load.shed_fraction.get(), 0.0, "48 ms: not yet standing");
        feed(&load, 1, 13 * MS);
        assert!(load.shed_fraction.get() > 0.0, "50 ms: standing");
        feed(&load, 40, 13 * MS);
        assert_eq!(load.shed_fraction.get(), 0.95);
    }

    #[test]
    fn a_queue_that_empties_does_not_shed() {
        // The same lag, but one sample in twenty finds the loop empty.
        let load = Load::default();
        for _ in 0..50 {
            feed(&load, 19, 13 * MS);
            feed(&load, 1, Duration::ZERO);
        }
        assert_eq!(load.shed_fraction.get(), 0.0);
        // A few busy connections: always a queue, but under standing_lag.
        feed(&load, 500, MS);
        assert_eq!(load.shed_fraction.get(), 0.0);
    }

    #[test]
    fn shedding_decays_slowly_when_load_falls() {
        let load = Load::default();
        feed(&load, 100, 13 * MS);
        assert_eq!(load.shed_fraction.get(), 0.95);
        feed(&load, 100, Duration::ZERO);
        let f = load.shed_fraction.get();
        assert!((f - 0.75).abs() < 1e-9, "200 ms later: {f}");
        feed(&load, 400, Duration::ZERO);
        assert_eq!(load.shed_fraction.get(), 0.0);
        assert!(!load.should_shed());
    }

    #[test]
    fn sheds_the_fraction_asked() {
        let load = Load::default();
        load.shed_fraction.set(0.3);
        let shed = (0..10_000).filter(|_| load.should_shed()).count();
        assert!((2_900..=3_100).contains(&shed), "{shed}");
    }
}
