//! Reports: per campaign and creative, per hour, what was bid, won, shown,
//! clicked and spent. Each shard counts its own events in [`Hourly`] (no
//! shared state on the request path) and every few hundred milliseconds
//! puts the rows that changed on the [`Board`] (its work bounded by what
//! changed, not by the rows it holds); the
//! admin listener merges the shards' rows with the database's hourly
//! rollups of other processes and earlier runs (see `events::db`), so a
//! report never scans raw events.

pub use crate::events::counts::{Counts, Key};
use crate::events::Event;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Rows a shard changed since its last publish: the counts now, or `None`
/// for a row dropped (its hour fell out of [`KEEP_HOURS`]).
pub type Delta = Vec<(Key, Option<Counts>)>;

/// Hours a shard keeps in memory (older ones are the database's).
pub const KEEP_HOURS: u64 = 48;

/// Rows of expired hours dropped per publish: a shard's work per publish is
/// bounded by what changed, never by how many rows it holds (48 hours of a
/// large campaign set's creatives reach hundreds of thousands).
const DROP_PER_PUBLISH: usize = 1024;

/// A shard's hourly counters; owned by the shard.
#[derive(Debug, Default)]
pub struct Hourly {
    /// Counts, and whether the row is listed in `changed`.
    rows: HashMap<Key, (Counts, bool)>,
    /// Rows counted since the last [`Hourly::take_delta`], each once.
    changed: Vec<Key>,
    /// Rows by the hour they count, to drop them when it expires.
    by_hour: BTreeMap<u64, Vec<Key>>,
}

impl Hourly {
    /// Counts an event (test traffic counts nothing).
    pub fn event(&mut self, ev: &Event) {
        let Some(key) = Key::of(ev) else {
            return;
        };
        match self.rows.get_mut(&key) {
            Some((c, listed)) => {
                c.count(ev);
                if !*listed {
                    *listed = true;
                    self.changed.push(key);
                }
            }
            None => {
                let mut c = Counts::default();
                c.count(ev);
                self.by_hour.entry(key.hour).or_default().push(key.clone());
                self.rows.insert(key.clone(), (c, true));
                self.changed.push(key);
            }
        }
    }

    /// The rows changed since the last call, and up to [`DROP_PER_PUBLISH`]
    /// rows of hours older than [`KEEP_HOURS`] before `now_hour`, dropped.
    pub fn take_delta(&mut self, now_hour: u64) -> Delta {
        let mut out = Vec::with_capacity(self.changed.len());
        let mut budget = DROP_PER_PUBLISH;
        while budget > 0 {
            let Some(mut e) = self.by_hour.first_entry() else {
                break;
            };
            if *e.key() + KEEP_HOURS > now_hour {
                break;
            }
            let keys = e.get_mut();
            let n = keys.len().min(budget);
            for k in keys.drain(keys.len() - n..) {
                self.rows.remove(&k);
                out.push((k, None));
            }
            budget -= n;
            if keys.is_empty() {
                e.remove();
            }
        }
        for k in self.changed.drain(..) {
            // Gone when its hour expired after it was counted.
            if let Some((c, listed)) = self.rows.get_mut(&k) {
                *listed = false;
                out.push((k, Some(*c)));
            }
        }
        out
    }

    /// Takes the rows changed since the last publish and puts them on
    /// `board` as shard `i`'s, unless a reader holds the board: then they
    /// stay listed as changed until the next publish (the shard never waits).
    pub fn publish(&mut self, board: &Board, i: usize, now_hour: u64) {
        let Some(s) = board.shards.get(i) else {
            self.take_delta(now_hour);
            return;
        };
        let mut rows = match s.try_lock() {
            Ok(r) => r,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        for (k, v) in self.take_delta(now_hour) {
            match v {
                Some(c) => {
                    rows.insert(k, c);
                }
                None => {
                    rows.remove(&k);
                }
            }
        }
    }
}

/// Every shard's rows as last published. Each shard's map is written only
/// by its shard's publisher (with `try_lock`, so a reader never makes the
/// shard wait) and read by the admin listener.
#[derive(Debug)]
pub struct Board {
    shards: Vec<Mutex<HashMap<Key, Counts>>>,
}

impl Board {
    /// A board for `shards` shards.
    pub fn new(shards: usize) -> Board {
        Board {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    /// The shards' rows summed by key, for hours `from..to`.
    pub fn merged(&self, from: u64, to: u64) -> HashMap<Key, Counts> {
        let mut out: HashMap<Key, Counts> = HashMap::new();
        for s in &self.shards {
            let rows = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (k, c) in rows.iter() {
                if (from..to).contains(&k.hour) {
                    out.entry(k.clone()).or_default().add(c);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 493_000;

    /// A bid for `campaign` (creative `cr-<campaign>`) in `hour`.
    fn bid(campaign: u64, hour: u64) -> Event {
        Event {
            ts_micros: (hour * 3600 + 5) as i64 * 1_000_000,
            campaign_id: campaign,
            creative_id: format!("cr-{campaign}"),
            ..crate::testkit::events::bid(campaign)
        }
    }

    fn bids(board: &Board, campaign: u64) -> u64 {
        board
            .merged(0, u64::MAX)
            .iter()
            .filter(|(k, _)| k.campaign == campaign)
            .map(|(_, c)| c.bids)
            .sum()
    }

    #[test]
    fn a_publish_carries_only_the_rows_that_changed() {
        let mut h = Hourly::default();
        for c in 1..=3 {
            h.event(&bid(c, HOUR));
        }
        h.event(&bid(2, HOUR));
        let d = h.take_delta(HOUR);
        assert_eq!(d.len(), 3, "each changed row once");
        // One row changes: the next delta holds it alone, with its total.
        h.event(&bid(2, HOUR));
        let d = h.take_delta(HOUR);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0.campaign, 2);
        assert_eq!(d[0].1.map(|c| c.bids), Some(3));
        assert!(h.take_delta(HOUR).is_empty(), "nothing changed");
        assert_eq!(h.rows.len(), 3);
    }

    #[test]
    fn expired_hours_leave_the_shard_and_the_board_a_bounded_chunk_at_a_time() {
        let board = Board::new(1);
        let mut h = Hourly::default();
        let n = DROP_PER_PUBLISH as u64 + 10;
        for c in 0..n {
            h.event(&bid(c, HOUR));
        }
        h.event(&bid(7, HOUR + 1));
        h.publish(&board, 0, HOUR + 1);
        assert_eq!(board.merged(0, u64::MAX).len() as u64, n + 1);
        // HOUR expires: the first publish drops DROP_PER_PUBLISH rows, the
        // next the rest; the newer hour stays.
        let later = HOUR + KEEP_HOURS;
        h.publish(&board, 0, later);
        assert_eq!(h.rows.len() as u64, n + 1 - DROP_PER_PUBLISH as u64);
        h.publish(&board, 0, later);
        assert_eq!(h.rows.len(), 1);
        let left = board.merged(0, u64::MAX);
        assert_eq!(left.len(), 1);
        assert!(left.keys().all(|k| k.hour == HOUR + 1 && k.campaign == 7));
    }

    #[test]
    fn a_board_being_read_makes_the_shard_wait_for_nothing_and_lose_nothing() {
        let board = Board::new(1);
        let mut h = Hourly::default();
        h.event(&bid(1, HOUR));
        h.publish(&board, 0, HOUR);
        assert_eq!(bids(&board, 1), 1);
        {
            // A reader holds shard 0's rows: publishing keeps its changes.
            let _reading = board.shards[0].lock().unwrap();
            h.event(&bid(1, HOUR));
            h.event(&bid(2, HOUR));
            h.publish(&board, 0, HOUR);
            h.event(&bid(1, HOUR));
            h.publish(&board, 0, HOUR);
        }
        assert_eq!(bids(&board, 1), 1, "not applied while read");
        h.publish(&board, 0, HOUR);
        assert_eq!(bids(&board, 1), 3);
        assert_eq!(bids(&board, 2), 1);
    }
}
