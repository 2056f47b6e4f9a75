//! Request rates per IP and per device id, per shard, over a sliding
//! window: an open-addressed table of counters for the current and the
//! previous window, the estimate being the current count plus the previous
//! one weighted by how much of it the sliding window still covers (the
//! usual two-bucket approximation). Owned by its shard; bounded: when a
//! key's probe run is full, the entry seen longest ago gives way (a key
//! evicted restarts at zero: the table errs towards letting traffic through).

/// Slots probed for a key.
const PROBES: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: u64,
    /// Window number of `cur`.
    window: u32,
    cur: u32,
    prev: u32,
}

/// The table.
#[derive(Debug)]
pub struct Rates {
    slots: Vec<Slot>,
    mask: usize,
    window_ms: u64,
}

impl Rates {
    /// A table of at least `capacity` slots counting over `window_ms`.
    pub fn new(capacity: usize, window_ms: u64) -> Rates {
        let n = capacity.max(PROBES).next_power_of_two();
        Rates {
            slots: vec![Slot::default(); n],
            mask: n - 1,
            window_ms: window_ms.max(1),
        }
    }

    /// Counts one request for `key` (non-zero) at `now_ms` and returns the
    /// sliding-window estimate of its requests, this one included.
    pub fn hit(&mut self, key: u64, now_ms: u64) -> u32 {
        let key = key.max(1);
        let window = (now_ms / self.window_ms) as u32;
        let into = (now_ms % self.window_ms) as f64 / self.window_ms as f64;
        let start = (key as usize) & self.mask;
        let mut victim = start;
        for k in 0..PROBES {
            let i = (start + k) & self.mask;
            let s = &self.slots[i];
            if s.key == key {
                victim = i;
                break;
            }
            if s.key == 0 || s.window < self.slots[victim].window {
                victim = i;
            }
            if s.key == 0 {
                break;
            }
        }
        let s = &mut self.slots[victim];
        if s.key != key {
            *s = Slot {
                key,
                window,
                cur: 0,
                prev: 0,
            };
        }
        if s.window != window {
            s.prev = if s.window.wrapping_add(1) == window {
                s.cur
            } else {
                0
            };
            s.cur = 0;
            s.window = window;
        }
        s.cur = s.cur.saturating_add(1);
        s.cur + (f64::from(s.prev) * (1.0 - into)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_over_a_sliding_window() {
        let mut r = Rates::new(1024, 60_000);
        let t0 = 600_000; // a window boundary
        for i in 1..=100 {
            assert_eq!(r.hit(7, t0 + i), i as u32);
        }
        assert_eq!(r.hit(8, t0), 1, "keys are apart");
        // Half way through the next window, half the last one still counts.
        assert_eq!(r.hit(7, t0 + 90_000), 1 + 50);
        // Two windows later, nothing of it.
        assert_eq!(r.hit(7, t0 + 200_000), 1);
    }

    #[test]
    fn a_full_table_forgets_the_stalest_key() {
        let mut r = Rates::new(8, 1000);
        for k in 1..=8u64 {
            r.hit(k << 32, k * 1000);
        }
        // Every key maps to slot 0's run; key 9 evicts the stalest (key 1).
        assert_eq!(r.hit(9 << 32, 9000), 1);
        // A live key keeps its count: last window's one, wholly in the
        // sliding window at its start, and this one.
        assert_eq!(r.hit(8 << 32, 9000), 2);
    }
}
