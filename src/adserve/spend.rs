//! Spend per campaign, in micro-USD: each shard owns a [`SpendTable`] (its
//! slice of every campaign's spend today and in total, and the prices of
//! its bids still awaiting a notice, aligned with the index it bids on) and
//! publishes it on the [`SpendBoard`], from which the admin listener sums a
//! campaign's spend across shards. The shard is the only writer of its
//! table; readers on other threads load atomics.

use arc_swap::ArcSwap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

/// One campaign's spend on one shard.
#[derive(Debug, Default)]
pub struct SpendRow {
    /// Campaign id.
    pub id: u64,
    day: AtomicU64,
    today: AtomicI64,
    total: AtomicI64,
    /// Prices of this shard's bids awaiting a notice (see `ShardState::hold`).
    held: AtomicI64,
}

impl SpendRow {
    /// A row for campaign `id`, carrying `from`'s figures.
    fn carried(id: u64, from: Option<&SpendRow>) -> SpendRow {
        let r = SpendRow {
            id,
            ..Default::default()
        };
        if let Some(f) = from {
            r.day.store(f.day.load(Relaxed), Relaxed);
            r.today.store(f.today.load(Relaxed), Relaxed);
            r.total.store(f.total.load(Relaxed), Relaxed);
            r.held.store(f.held.load(Relaxed), Relaxed);
        }
        r
    }

    /// A row restored at start-up: `today` micro-USD spent on UTC day
    /// `day`, `total` in all.
    pub fn restored(id: u64, day: u64, today: i64, total: i64) -> SpendRow {
        SpendRow {
            id,
            day: AtomicU64::new(day),
            today: AtomicI64::new(today),
            total: AtomicI64::new(total),
            held: AtomicI64::new(0),
        }
    }

    /// Micro-USD of bids awaiting a notice.
    pub fn held(&self) -> i64 {
        self.held.load(Relaxed)
    }

    /// Holds (positive) or releases (negative) `micros` (the owning shard only).
    pub(super) fn hold(&self, micros: i64) {
        self.held.fetch_add(micros, Relaxed);
    }

    /// Micro-USD spent on UTC day `day`, and in total.
    pub fn get(&self, day: u64) -> (i64, i64) {
        let today = if self.day.load(Relaxed) == day {
            self.today.load(Relaxed)
        } else {
            0
        };
        (today, self.total.load(Relaxed))
    }

    /// Adds `micros` (the owning shard only).
    pub(super) fn add(&self, micros: i64, day: u64) {
        if self.day.load(Relaxed) != day {
            self.today.store(0, Relaxed);
            self.day.store(day, Relaxed);
        }
        self.today.fetch_add(micros, Relaxed);
        self.total.fetch_add(micros, Relaxed);
    }
}

/// One shard's spend, row `p` for the campaign at index position `p`.
#[derive(Debug, Default)]
pub struct SpendTable {
    /// The index version the rows follow.
    pub version: u64,
    /// Rows in index order.
    pub rows: Vec<SpendRow>,
}

impl SpendTable {
    /// A table for `ids` (index order) carrying the figures of `old` by id.
    pub fn follow(old: &SpendTable, version: u64, ids: impl Iterator<Item = u64>) -> SpendTable {
        let by_id: std::collections::HashMap<u64, &SpendRow> =
            old.rows.iter().map(|r| (r.id, r)).collect();
        SpendTable {
            version,
            rows: ids
                .map(|id| SpendRow::carried(id, by_id.get(&id).copied()))
                .collect(),
        }
    }
}

/// Every shard's published table.
#[derive(Debug)]
pub struct SpendBoard {
    shards: Vec<ArcSwap<SpendTable>>,
}

/// A campaign's spend summed over shards, micro-USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CampaignSpend {
    /// Campaign id.
    pub campaign: u64,
    /// Spent today (UTC).
    pub today_micros: i64,
    /// Spent in total.
    pub lifetime_micros: i64,
    /// Held for bids awaiting a notice (counted against both budgets).
    pub held_micros: i64,
}

impl SpendBoard {
    /// A board for `shards` shards.
    pub fn new(shards: usize) -> Self {
        SpendBoard {
            shards: (0..shards).map(|_| ArcSwap::default()).collect(),
        }
    }

    /// Publishes shard `shard`'s current table.
    pub fn publish(&self, shard: usize, t: Arc<SpendTable>) {
        if let Some(s) = self.shards.get(shard) {
            s.store(t);
        }
    }

    /// Number of shards on the board.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// True when the board has no shards.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Shard `shard`'s spend by campaign id: (today, in all), micro-USD.
    pub fn of_shard(&self, shard: usize, day: u64) -> std::collections::HashMap<u64, (i64, i64)> {
        self.shards.get(shard).map_or_else(Default::default, |s| {
            s.load().rows.iter().map(|r| (r.id, r.get(day))).collect()
        })
    }

    /// Every campaign's spend summed over shards, by campaign id.
    pub fn totals(&self, day: u64) -> Vec<CampaignSpend> {
        let mut m: std::collections::BTreeMap<u64, CampaignSpend> = Default::default();
        for s in &self.shards {
            for r in &s.load().rows {
                let (today, total) = r.get(day);
                let e = m.entry(r.id).or_insert(CampaignSpend {
                    campaign: r.id,
                    ..Default::default()
                });
                e.today_micros += today;
                e.lifetime_micros += total;
                e.held_micros += r.held();
            }
        }
        m.into_values().collect()
    }
}
