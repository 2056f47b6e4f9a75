//! One shard's mutable bidding state: its slice (1/shards) of every
//! campaign's daily and lifetime budget, pacing, frequency caps, and the
//! scratch bitsets the auction reuses. Owned by the shard; lives as long
//! as it.

use super::{BidderConfig, Now};
use crate::index::{Bitset, Hot, Index};
use std::collections::HashMap;

/// Spend and day of one campaign on one shard.
#[derive(Debug, Clone, Default)]
struct Spend {
    id: u64,
    day: u64,
    today: f64,
    total: f64,
}

/// One shard's mutable bidding state. Owned by the shard; lives as long as it.
#[derive(Debug)]
pub struct ShardState {
    /// Shard number (stamped into ids and events).
    pub shard: u16,
    /// Shard count (budgets are split by it).
    pub shards: u16,
    pub(super) version: u64,
    spend: Vec<Spend>,
    /// (user hash ^ campaign id) -> (window start, bids in window).
    pub(super) freq: HashMap<u64, (u64, u32)>,
    pub(super) max_users: usize,
    pub(super) seq: u64,
    pub(super) base: Bitset,
    pub(super) cand: Bitset,
    pub(super) tmp: Bitset,
    pub(super) keys: Vec<String>,
    /// Frequency tables reset because they grew past `max_tracked_users`.
    pub freq_resets: u64,
}

impl ShardState {
    /// State for shard `shard` of `shards`.
    pub fn new(shard: u16, shards: u16, cfg: &BidderConfig) -> Self {
        ShardState {
            shard,
            shards: shards.max(1),
            version: u64::MAX,
            spend: Vec::new(),
            freq: HashMap::new(),
            max_users: cfg.max_tracked_users,
            seq: 0,
            base: Bitset::new(0),
            cand: Bitset::new(0),
            tmp: Bitset::new(0),
            keys: Vec::new(),
            freq_resets: 0,
        }
    }

    /// Follows a newly published index: carries spend over by campaign id.
    pub fn sync(&mut self, ix: &Index) {
        if self.version == ix.version {
            return;
        }
        let old: HashMap<u64, Spend> = self.spend.drain(..).map(|s| (s.id, s)).collect();
        self.spend = ix
            .campaigns
            .iter()
            .map(|c| {
                old.get(&c.id).cloned().unwrap_or(Spend {
                    id: c.id,
                    ..Default::default()
                })
            })
            .collect();
        let n = ix.len();
        self.base = Bitset::new(n);
        self.cand = Bitset::new(n);
        self.tmp = Bitset::new(n);
        self.version = ix.version;
    }

    /// A new id unique on this shard: `{shard}-{seq}`.
    pub fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}", self.shard, self.seq)
    }

    /// This shard's spend on campaign `id` today and in total (USD).
    pub fn spent(&self, ix: &Index, id: u64) -> Option<(f64, f64)> {
        ix.by_id
            .get(&id)
            .and_then(|&p| self.spend.get(p as usize))
            .map(|s| (s.today, s.total))
    }

    /// Deducts `usd` from this shard's slice of campaign `id`.
    pub fn charge(&mut self, ix: &Index, id: u64, usd: f64, now: Now) -> bool {
        self.sync(ix);
        let Some(&p) = ix.by_id.get(&id) else {
            return false;
        };
        let s = &mut self.spend[p as usize];
        if s.day != now.day() {
            s.day = now.day();
            s.today = 0.0;
        }
        s.today += usd;
        s.total += usd;
        true
    }

    pub(super) fn budget_ok(&self, h: &Hot, pos: usize, now: Now) -> bool {
        let s = &self.spend[pos];
        let shards = f64::from(self.shards);
        let today = if s.day == now.day() { s.today } else { 0.0 };
        let daily = h.daily / shards;
        // Even: the elapsed share of the day plus one hour of headroom.
        let allowed = if h.even {
            daily * ((now.sec_of_day() + 3600) as f64 / 86400.0).min(1.0)
        } else {
            daily
        };
        today < allowed && s.total < h.lifetime / shards
    }

    fn freq_key(user: u64, campaign: u64) -> u64 {
        user ^ campaign.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    pub(super) fn freq_ok(&self, h: &Hot, user: Option<u64>, now: Now) -> bool {
        let Some(cap) = h.cap else { return true };
        // A capped campaign cannot honour its cap for an unknown user.
        let Some(u) = user else { return false };
        match self.freq.get(&Self::freq_key(u, h.id)) {
            Some(&(start, n)) if now.secs < start + cap.window_secs => n < cap.max,
            _ => true,
        }
    }

    pub(super) fn freq_count(&mut self, h: &Hot, user: Option<u64>, now: Now) {
        let (Some(cap), Some(u)) = (h.cap, user) else {
            return;
        };
        if self.freq.len() >= self.max_users {
            self.freq.clear();
            self.freq_resets += 1;
        }
        let e = self
            .freq
            .entry(Self::freq_key(u, h.id))
            .or_insert((now.secs, 0));
        if now.secs >= e.0 + cap.window_secs {
            *e = (now.secs, 0);
        }
        e.1 += 1;
    }
}
