//! A lock-free "seen before?" table shared by all shards, for idempotent
//! notices (win, bill, impression, click may arrive more than once and on
//! any shard). Keys are hashes of (kind, our bid id); bid ids are unique
//! across processes and restarts, so two auctions that reuse a request id
//! never collide.
//!
//! Open addressing over `AtomicU64` slots: each slot holds a 48-bit key
//! fingerprint and the 16-bit hour (Unix hours, wrapping) until which it
//! must be remembered: the notice's issue time plus `notice_ttl`, after
//! which its signature no longer verifies and the slot may be reused. So
//! the memory bound follows from the TTL: a table of `S` slots (8 bytes
//! each) remembers at most `S` notices issued within one TTL.
//!
//! A claim scans its whole probe run for the key before taking the first
//! free slot, so a freed or expired slot early in a run never hides a live
//! entry later in it. When the run holds no free slot the claim is `Full`:
//! the caller refuses the notice (503, the exchange retries), never charges
//! it blind. A claim can be released (the event could not be recorded), so
//! the retry is not mistaken for a duplicate.

use std::sync::atomic::{AtomicU64, Ordering};

/// Probe run length: 64 slots (eight cache lines, read in order). With
/// random keys no claim is refused below 60% fill, and 1 in 2,600 between
/// 60% and 70% (simulated over 2^20 slots); with 16 it would be 1 in 700
/// between 40% and 50%.
const PROBES: usize = 64;

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: the slot now holds the key.
    New(Claim),
    /// Already remembered.
    Again,
    /// No free slot in the key's probe run.
    Full,
}

/// A slot taken by [`Dedupe::claim`], for [`Dedupe::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    slot: usize,
    value: u64,
}

/// The table. One per server; lives as long as the server.
#[derive(Debug)]
pub struct Dedupe {
    slots: Box<[AtomicU64]>,
    mask: usize,
    full: AtomicU64,
    claims: AtomicU64,
}

impl Dedupe {
    /// A table with at least `capacity` slots (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.max(PROBES).next_power_of_two();
        Dedupe {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
            full: AtomicU64::new(0),
            claims: AtomicU64::new(0),
        }
    }

    /// Slots in the table.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// A key's 48-bit fingerprint (never zero: zero is a free slot) and
    /// the first slot of its probe run.
    fn place(&self, key: u64) -> (u64, usize) {
        let fp = key & !0xffff;
        (
            if fp == 0 { 1 << 16 } else { fp },
            (key as usize) & self.mask,
        )
    }

    /// Remembers `key` until hour `until` (Unix hours), unless it is already
    /// remembered. `now` is the current Unix hour.
    pub fn claim(&self, key: u64, until: u64, now: u64) -> Seen {
        let now = now as u16;
        let (fp, start) = self.place(key);
        let value = fp | u64::from(until as u16);
        loop {
            let mut free = None;
            for k in 0..PROBES {
                let i = (start + k) & self.mask;
                let v = self.slots[i].load(Ordering::Acquire);
                let live = v != 0 && live(v as u16, now);
                if live && v & !0xffff == fp {
                    return Seen::Again;
                }
                if !live && free.is_none() {
                    free = Some((i, v));
                }
            }
            let Some((i, old)) = free else {
                self.full.fetch_add(1, Ordering::Relaxed);
                return Seen::Full;
            };
            if self.slots[i]
                .compare_exchange(old, value, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.claims.fetch_add(1, Ordering::Relaxed);
                return Seen::New(Claim { slot: i, value });
            }
            // Someone took the slot meanwhile (perhaps for this key): rescan.
        }
    }

    /// Whether `key` is remembered (claims nothing). `now` is the current
    /// Unix hour.
    pub fn contains(&self, key: u64, now: u64) -> bool {
        let now = now as u16;
        let (fp, start) = self.place(key);
        (0..PROBES).any(|k| {
            let v = self.slots[(start + k) & self.mask].load(Ordering::Acquire);
            v != 0 && live(v as u16, now) && v & !0xffff == fp
        })
    }

    /// Forgets a claim (its notice was not recorded and may be retried).
    pub fn release(&self, c: Claim) {
        let _ =
            self.slots[c.slot].compare_exchange(c.value, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Claims that found their probe run full (refused notices).
    pub fn full(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// The table's families on the `/metrics` page.
    pub fn render(&self, out: &mut String) {
        crate::prom::single(
            out,
            "adshard_dedupe_slots",
            "gauge",
            "Slots in the notice de-duplication table (8 bytes each).",
            self.slots() as u64,
        );
        crate::prom::single(
            out,
            "adshard_dedupe_claims_total",
            "counter",
            "Entries stored in the notice de-duplication table (each stays notice_ttl): its rate x the TTL is the fill to size dedupe_slots by.",
            self.claims.load(Ordering::Relaxed),
        );
        crate::prom::single(
            out,
            "adshard_dedupe_full_total",
            "counter",
            "Notices refused with 503 because their de-duplication probe run was full.",
            self.full(),
        );
    }
}

impl Dedupe {
    /// Remembers a notice event read back from the spool at start-up, so a
    /// notice answered before a restart is a duplicate after it. Kept for
    /// `ttl_secs` after the event (its bid was issued no later). Returns
    /// whether it was a notice to remember.
    pub fn remember(&self, ev: crate::events::NoticeRef<'_>, ttl_secs: u64, now_secs: u64) -> bool {
        if ev.kind == crate::events::Kind::Bid || ev.bid_id.is_empty() {
            return false;
        }
        let secs = (ev.ts_micros.max(0) as u64) / 1_000_000;
        let until = (secs + ttl_secs) / 3600 + 1;
        let now = now_secs / 3600;
        if until < now {
            return false;
        }
        let _ = self.claim(key(ev.kind.label(), ev.bid_id), until, now);
        if ev.spend_micros > 0 {
            let _ = self.claim(key("spend", ev.bid_id), until, now);
        }
        true
    }
}

/// Still to be remembered at hour `now` (16-bit hours wrap: 7 years).
fn live(until: u16, now: u16) -> bool {
    until.wrapping_sub(now) < 0x8000
}

/// Hash of a notice key: the event kind's label (`spend` for a bid's
/// charge) and our bid id.
pub fn key(kind: &str, bid: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(kind.as_bytes());
    h.update(&[0]);
    h.update(bid.as_bytes());
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(d: &Dedupe, k: u64, until: u64, now: u64) -> bool {
        matches!(d.claim(k, until, now), Seen::New(_))
    }

    #[test]
    fn remembered_until_its_hour_then_forgotten() {
        let d = Dedupe::new(1024);
        let k = key("win", "b1");
        assert!(new(&d, k, 172, 100));
        assert_eq!(d.claim(k, 172, 100), Seen::Again);
        assert_eq!(
            d.claim(k, 172, 172),
            Seen::Again,
            "kept through its last hour"
        );
        assert!(new(&d, k, 250, 173), "forgotten once expired");
        assert!(new(&d, key("win", "b2"), 172, 100));
        assert!(new(&d, key("bill", "b1"), 172, 100));
    }

    #[test]
    fn a_full_run_refuses_and_a_release_frees() {
        let d = Dedupe::new(PROBES);
        let claims: Vec<_> = (0..PROBES)
            .map(|i| match d.claim(key("win", &i.to_string()), 10, 1) {
                Seen::New(c) => c,
                other => panic!("{other:?}"),
            })
            .collect();
        let extra = key("win", "one too many");
        assert_eq!(d.claim(extra, 10, 1), Seen::Full);
        assert_eq!(d.full(), 1);
        d.release(claims[3]);
        assert!(new(&d, extra, 10, 1));
        // Expired entries make room.
        assert!(new(&d, key("win", "later"), 20, 11));
    }

    #[test]
    fn a_freed_slot_never_hides_a_later_entry() {
        let d = Dedupe::new(PROBES);
        let a = match d.claim(key("k", "a"), 10, 1) {
            Seen::New(c) => c,
            other => panic!("{other:?}"),
        };
        let b = key("k", "b");
        assert!(new(&d, b, 10, 1));
        d.release(a);
        assert_eq!(d.claim(b, 10, 1), Seen::Again);
    }

    #[test]
    fn concurrent_claims_count_once() {
        let d = std::sync::Arc::new(Dedupe::new(1 << 16));
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let d = d.clone();
                    s.spawn(move || {
                        (0..5000)
                            .filter(|i| new(&d, key("w", &i.to_string()), 80, 7))
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 5000);
        assert_eq!(d.full(), 0);
    }
}
