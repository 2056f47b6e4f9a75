//! Click validation. A click counts only when its bid's impression was
//! recorded (in the notice de-duplication table, shared by all shards and
//! restored at start-up), when it comes at least `ivt.min_click_delay_ms`
//! after that impression, and the first time; otherwise it is an invalid
//! click: recorded as such (never charged, never a click in reports) and
//! counted by reason.
//!
//! Impression times live in [`ImpTimes`], a lock-free table shared by all
//! shards: four slots per bucket, each a 24-bit fingerprint of the bid id
//! and the time in deciseconds; a full bucket gives up its oldest entry. An
//! impression whose time was lost (evicted, or recorded before a restart)
//! is still an impression: only the delay goes unchecked.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a click is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidClick {
    /// No impression was recorded for its bid.
    NoImpression,
    /// Sooner after the impression than `ivt.min_click_delay_ms`.
    TooFast,
    /// The bid's click was already recorded.
    Repeated,
}

impl InvalidClick {
    /// Every reason, in `/metrics` order.
    pub const ALL: [InvalidClick; 3] = [
        InvalidClick::NoImpression,
        InvalidClick::TooFast,
        InvalidClick::Repeated,
    ];

    /// The reason's metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            InvalidClick::NoImpression => "no_impression",
            InvalidClick::TooFast => "too_fast",
            InvalidClick::Repeated => "repeated",
        }
    }
}

const WAYS: usize = 4;
const TIME_BITS: u32 = 40;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// Impression times by bid, shared by all shards.
#[derive(Debug)]
pub struct ImpTimes {
    slots: Box<[AtomicU64]>,
    mask: usize,
    /// Minimum delay from impression to click, deciseconds.
    min_delay_ds: u64,
}

fn split(key: u64) -> (usize, u64) {
    let fp = (key >> TIME_BITS) & 0xff_ffff;
    (key as usize, if fp == 0 { 1 } else { fp })
}

impl ImpTimes {
    /// A table of at least `capacity` slots; clicks sooner than
    /// `min_delay_ms` after their impression are too fast.
    pub fn new(capacity: usize, min_delay_ms: u64) -> ImpTimes {
        let n = capacity.max(WAYS).next_power_of_two();
        ImpTimes {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: (n - 1) & !(WAYS - 1),
            min_delay_ds: min_delay_ms.div_ceil(100),
        }
    }

    /// Records the impression of the bid hashed to `key` at `now_ms`.
    pub fn record(&self, key: u64, now_ms: u64) {
        let (h, fp) = split(key);
        let base = h & self.mask;
        let t = (now_ms / 100) & TIME_MASK;
        let value = fp << TIME_BITS | t;
        let mut oldest = (base, u64::MAX);
        for i in base..base + WAYS {
            let v = self.slots[i].load(Ordering::Acquire);
            if v == 0 || v >> TIME_BITS == fp {
                self.slots[i].store(value, Ordering::Release);
                return;
            }
            if v & TIME_MASK < oldest.1 {
                oldest = (i, v & TIME_MASK);
            }
        }
        self.slots[oldest.0].store(value, Ordering::Release);
    }

    /// When the impression of the bid hashed to `key` was recorded (ms,
    /// decisecond precision), if the table still knows.
    pub fn get(&self, key: u64) -> Option<u64> {
        let (h, fp) = split(key);
        let base = h & self.mask;
        (base..base + WAYS).find_map(|i| {
            let v = self.slots[i].load(Ordering::Acquire);
            (v != 0 && v >> TIME_BITS == fp).then_some((v & TIME_MASK) * 100)
        })
    }

    /// Whether a click at `now_ms` on an impression recorded at `imp_ms`
    /// comes too soon.
    pub fn too_fast(&self, imp_ms: u64, now_ms: u64) -> bool {
        (now_ms / 100).saturating_sub(imp_ms / 100) < self.min_delay_ds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impression_times_are_kept_per_bid() {
        let t = ImpTimes::new(1024, 1000);
        t.record(0xabc0_0000_0000_0001, 5_000_123);
        assert_eq!(t.get(0xabc0_0000_0000_0001), Some(5_000_100));
        assert_eq!(t.get(0xabd0_0000_0000_0001), None, "another fingerprint");
        assert!(t.too_fast(5_000_100, 5_001_000));
        assert!(!t.too_fast(5_000_100, 5_001_100));
        // A full bucket gives up its oldest entry.
        for k in 1..=5u64 {
            t.record(k << 40 | 8, 1_000 * k);
        }
        assert_eq!(t.get(1 << 40 | 8), None);
        assert_eq!(t.get(5 << 40 | 8), Some(5_000));
        assert_eq!(t.get(2 << 40 | 8), Some(2_000));
    }
}
