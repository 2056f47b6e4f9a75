//! A lock-free "seen before?" table shared by all shards, for idempotent
//! notices (win, bill, impression, click may arrive more than once and on any
//! shard). Open addressing over `AtomicU64` slots: each slot holds a 48-bit
//! key fingerprint and the 16-bit UTC day it was stored. Entries older than
//! yesterday are reused, so the table never needs clearing. If a probe run is
//! full the insert is treated as new and counted as an overflow.

use std::sync::atomic::{AtomicU64, Ordering};

/// Probe run length before giving up.
const PROBES: usize = 16;

/// The table. One per server; lives as long as the server.
#[derive(Debug)]
pub struct Dedupe {
    slots: Box<[AtomicU64]>,
    mask: usize,
    overflows: AtomicU64,
}

impl Dedupe {
    /// A table with at least `capacity` slots (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.max(PROBES).next_power_of_two();
        Dedupe {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
            overflows: AtomicU64::new(0),
        }
    }

    /// Records `key` for `day`; true if it was not seen today or yesterday.
    pub fn first_time(&self, key: u64, day: u64) -> bool {
        let day = (day & 0xffff) as u16;
        let fp = (key & !0xffff) | u64::from(day);
        let fp = if fp >> 16 == 0 { fp | 1 << 16 } else { fp };
        let start = (key as usize) & self.mask;
        for k in 0..PROBES {
            let slot = &self.slots[(start + k) & self.mask];
            let mut v = slot.load(Ordering::Acquire);
            loop {
                if v != 0 && v >> 16 == fp >> 16 && fresh(v as u16, day) {
                    return false;
                }
                if v == 0 || !fresh(v as u16, day) {
                    match slot.compare_exchange(v, fp, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return true,
                        Err(now) => {
                            v = now;
                            continue;
                        }
                    }
                }
                break;
            }
        }
        self.overflows.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Inserts that found no free slot (possible double counting).
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }
}

impl Dedupe {
    /// The table's families on the `/metrics` page.
    pub fn render(&self, out: &mut String) {
        crate::prom::single(
            out,
            "adshard_dedupe_overflows_total",
            "counter",
            "Notice de-duplication inserts that found no free slot.",
            self.overflows(),
        );
    }
}

/// Stored today or yesterday (16-bit day arithmetic wraps).
fn fresh(stored: u16, today: u16) -> bool {
    today.wrapping_sub(stored) <= 1
}

/// Hash of a notice key: kind, auction id, impression id.
pub fn key(kind: &str, auction: &str, imp: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(kind.as_bytes());
    h.update(&[0]);
    h.update(auction.as_bytes());
    h.update(&[0]);
    h.update(imp.as_bytes());
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_once_per_key_and_expires() {
        let d = Dedupe::new(1024);
        let k = key("win", "a1", "1");
        assert!(d.first_time(k, 100));
        assert!(!d.first_time(k, 100));
        assert!(!d.first_time(k, 101), "still remembered the next day");
        assert!(d.first_time(k, 103), "forgotten after two days");
        assert!(d.first_time(key("win", "a1", "2"), 100));
        assert!(d.first_time(key("bill", "a1", "1"), 100));
    }

    #[test]
    fn concurrent_inserts_count_once() {
        let d = std::sync::Arc::new(Dedupe::new(1 << 16));
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let d = d.clone();
                    s.spawn(move || {
                        (0..5000)
                            .filter(|i| d.first_time(key("w", &i.to_string(), "1"), 7))
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 5000);
        assert_eq!(d.overflows(), 0);
    }
}
