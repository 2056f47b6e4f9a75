//! Reports: per campaign and creative, per hour, what was bid, won, shown,
//! clicked and spent. Each shard counts its own events in [`Hourly`] (no
//! shared state on the request path) and publishes a snapshot on the
//! [`Board`] every few hundred milliseconds when something changed; the
//! admin listener merges the shards' snapshots with the database's hourly
//! rollups of other processes and earlier runs (see `events::db`), so a
//! report never scans raw events.

pub use crate::events::counts::{Counts, Key};
use crate::events::Event;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// A shard's published rows.
pub type Snapshot = Vec<(Key, Counts)>;

/// Hours a shard keeps in memory (older ones are the database's).
pub const KEEP_HOURS: u64 = 48;

/// A shard's hourly counters; owned by the shard.
#[derive(Debug, Default)]
pub struct Hourly {
    rows: HashMap<Key, Counts>,
    dirty: bool,
}

impl Hourly {
    /// Counts an event (test traffic counts nothing).
    pub fn event(&mut self, ev: &Event) {
        let Some(key) = Key::of(ev) else {
            return;
        };
        self.rows.entry(key).or_default().count(ev);
        self.dirty = true;
    }

    /// The rows, if anything changed since the last call; hours older than
    /// [`KEEP_HOURS`] before `now_hour` are dropped.
    pub fn take_snapshot(&mut self, now_hour: u64) -> Option<Snapshot> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.rows.retain(|k, _| k.hour + KEEP_HOURS > now_hour);
        let mut v: Snapshot = self.rows.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Some(v)
    }
}

/// Every shard's last snapshot.
#[derive(Debug)]
pub struct Board {
    shards: Vec<ArcSwap<Snapshot>>,
}

impl Board {
    /// A board for `shards` shards.
    pub fn new(shards: usize) -> Board {
        Board {
            shards: (0..shards)
                .map(|_| ArcSwap::from_pointee(Vec::new()))
                .collect(),
        }
    }

    /// Publishes shard `i`'s rows.
    pub fn publish(&self, i: usize, rows: Snapshot) {
        if let Some(s) = self.shards.get(i) {
            s.store(Arc::new(rows));
        }
    }

    /// The shards' rows summed by key, for hours `from..to`.
    pub fn merged(&self, from: u64, to: u64) -> HashMap<Key, Counts> {
        let mut out: HashMap<Key, Counts> = HashMap::new();
        for s in &self.shards {
            for (k, c) in s.load().iter() {
                if (from..to).contains(&k.hour) {
                    out.entry(k.clone()).or_default().add(c);
                }
            }
        }
        out
    }
}
