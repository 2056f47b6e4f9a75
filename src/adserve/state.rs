//! One shard's mutable bidding state: its slice (1/shards) of every
//! campaign's daily and lifetime budget, the bids it holds against them
//! until their notices come, pacing, frequency caps, and the scratch
//! bitsets the auction reuses. Owned by the shard; lives as long as it.

use super::fleet::Slices;
use super::spend::{SpendBoard, SpendTable};
use super::{BidderConfig, Now};
use crate::index::{Hot, Index};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// One shard's mutable bidding state. Owned by the shard; lives as long as it.
#[derive(Debug)]
pub struct ShardState {
    /// Shard number (stamped into ids and events).
    pub shard: u16,
    /// Shard count (budgets are split by it).
    pub shards: u16,
    pub(super) version: u64,
    spend: Arc<SpendTable>,
    board: Option<Arc<SpendBoard>>,
    /// The fleet's caps on this shard's spend (with `[events.db]`), and the
    /// ones this request reads.
    fleet: Option<arc_swap::Cache<Arc<arc_swap::ArcSwap<Slices>>, Arc<Slices>>>,
    slices: Option<Arc<Slices>>,
    /// (user hash ^ campaign id) -> (window start, bids in window).
    pub(super) freq: HashMap<u64, (u64, u32)>,
    /// The keys of `freq` in the order they were first counted: the oldest
    /// is evicted when the table is full.
    freq_order: VecDeque<u64>,
    pub(super) max_users: usize,
    /// Restored bids waiting for the first index (see `restore_freq`).
    freq_pending: Vec<(u64, u64, u64)>,
    pub(super) seq: u64,
    /// `{node}-{shard}-` of every id this shard makes.
    id_prefix: String,
    /// Frequency entries evicted (oldest first) to stay within
    /// `max_tracked_users`; the table is never wiped.
    pub freq_evictions: u64,
    /// Bids answered whose notice has not come back here, in `seq` order.
    holds: VecDeque<Hold>,
    hold_micros: i64,
    /// A batch's model rows and predictions, kept between batches so the
    /// buffers are grown once (see `decide_batch`).
    pub(super) scratch: (Vec<[i64; crate::scoring::FEATURES]>, Vec<f32>),
}

/// A bid's price held against its campaign's budget.
#[derive(Debug, Clone, Copy)]
struct Hold {
    seq: u64,
    campaign: u64,
    micros: i64,
    /// Unix microseconds when the hold lapses.
    until: i64,
}

impl ShardState {
    /// State for shard `shard` of `shards`.
    pub fn new(shard: u16, shards: u16, cfg: &BidderConfig) -> Self {
        ShardState {
            shard,
            shards: shards.max(1),
            version: u64::MAX,
            spend: Arc::default(),
            board: None,
            fleet: None,
            slices: None,
            freq: HashMap::new(),
            freq_order: VecDeque::new(),
            max_users: cfg.max_tracked_users,
            freq_pending: Vec::new(),
            seq: 0,
            id_prefix: {
                // Drawn afresh for every shard state (a server restarted in
                // the same process must not repeat its ids either).
                let mut node = [0u8; 8];
                let bits = super::signing::random::<6>().unwrap_or_else(|_| {
                    let b = super::node_id().to_le_bytes();
                    [b[0], b[1], b[2], b[3], b[4], b[5]]
                });
                super::signing::base64url(&bits, &mut node);
                format!("{}-{shard}-", String::from_utf8_lossy(&node))
            },
            freq_evictions: 0,
            holds: VecDeque::new(),
            hold_micros: i64::try_from(cfg.hold_ms.saturating_mul(1000)).unwrap_or(i64::MAX),
            scratch: Default::default(),
        }
    }

    /// Starts from spend recorded before a restart (rows by campaign id,
    /// carried onto the index at the first `sync`).
    pub fn restore_spend(&mut self, rows: Vec<super::spend::SpendRow>) {
        self.spend = Arc::new(SpendTable { version: 0, rows });
        self.version = u64::MAX;
    }

    /// Starts from frequency counts recorded before a restart: bids that
    /// counted a cap (campaign, key, Unix seconds; oldest first), counted
    /// again at the first `sync`, under the caps of the index then.
    pub fn restore_freq(&mut self, bids: Vec<(u64, u64, u64)>) {
        self.freq_pending = bids;
    }

    /// Publishes this shard's spend on `board` (for the admin listener).
    pub fn publish_on(&mut self, board: Arc<SpendBoard>) {
        board.publish(usize::from(self.shard), self.spend.clone());
        self.board = Some(board);
    }

    /// Takes budget caps from the fleet (nodes sharing `[events.db]`)
    /// instead of splitting each budget over this node's shards alone.
    pub fn follow_fleet(&mut self, slices: Arc<arc_swap::ArcSwap<Slices>>) {
        self.fleet = Some(arc_swap::Cache::new(slices));
    }

    /// Follows a newly published index (carries spend over by campaign id)
    /// and the fleet's latest caps.
    pub fn sync(&mut self, ix: &Index) {
        if let Some(c) = &mut self.fleet {
            let now = c.load();
            if !self.slices.as_ref().is_some_and(|s| Arc::ptr_eq(s, now)) {
                self.slices = Some(now.clone());
            }
        }
        if self.version == ix.version {
            return;
        }
        self.spend = Arc::new(SpendTable::follow(
            &self.spend,
            ix.version,
            ix.hot.iter().map(|h| h.id),
        ));
        if let Some(b) = &self.board {
            b.publish(usize::from(self.shard), self.spend.clone());
        }
        let now = super::Now::wall().secs;
        for (campaign, key, secs) in std::mem::take(&mut self.freq_pending) {
            let cap = ix
                .by_id
                .get(&campaign)
                .and_then(|&p| ix.hot[p as usize].cap);
            if let Some(cap) = cap.filter(|c| secs.saturating_add(c.window_secs) > now) {
                self.freq_add(key, cap.window_secs, secs);
            }
        }
        self.version = ix.version;
    }

    /// A new event id (see [`super::event_id`]).
    pub fn next_event_id(&mut self, now: super::Now) -> u128 {
        self.seq += 1;
        super::event_id(self.shard, self.seq, now)
    }

    /// A new id unique across shards, processes and restarts:
    /// `{node}-{shard}-{seq}`, `node` being 48 random bits drawn at start
    /// (8 base64url characters).
    pub fn next_id(&mut self) -> String {
        use std::fmt::Write as _;
        self.seq += 1;
        let mut id = String::with_capacity(24);
        id.push_str(&self.id_prefix);
        let _ = write!(id, "{}", self.seq);
        id
    }

    /// This shard's spend on campaign `id` today and in total (micro-USD).
    pub fn spent(&self, ix: &Index, id: u64, now: Now) -> Option<(i64, i64)> {
        self.row(ix, id).map(|s| s.get(now.day()))
    }

    /// Campaign `id`'s spend row, if this shard follows `ix` and it is there.
    fn row(&self, ix: &Index, id: u64) -> Option<&super::spend::SpendRow> {
        ix.by_id
            .get(&id)
            .filter(|_| self.spend.version == ix.version)
            .and_then(|&p| self.spend.rows.get(p as usize))
    }

    /// Deducts `micros` (micro-USD) from this shard's slice of campaign `id`.
    /// False if the campaign is not in the index (nothing to deduct from).
    pub fn charge(&mut self, ix: &Index, id: u64, micros: i64, now: Now) -> bool {
        self.sync(ix);
        let Some(&p) = ix.by_id.get(&id) else {
            return false;
        };
        self.spend.rows[p as usize].add(micros, now.day());
        true
    }

    /// Holds `micros` (micro-USD, the bid's price for one impression)
    /// against the budgets of the campaign at `pos` for the bid this shard
    /// just numbered (`seq`): until a notice for it comes here (`settle`)
    /// or `bidder.hold_ms` passes. A bid counts against its budget from the
    /// moment it is made, not only once it is won: a burst of bids never
    /// outruns the budget while their notices are on their way.
    pub(super) fn hold(&mut self, pos: usize, micros: i64, now: Now) {
        let Some(row) = self.spend.rows.get(pos) else {
            return;
        };
        row.hold(micros);
        self.holds.push_back(Hold {
            seq: self.seq,
            campaign: row.id,
            micros,
            until: now.micros.saturating_add(self.hold_micros),
        });
    }

    /// A notice came for bid `bid_id`: if this shard made the bid, its hold
    /// ends (the notice charged what it charges). Bids of other shards (or
    /// of an earlier run) are left to lapse where they were made.
    pub fn settle(&mut self, ix: &Index, bid_id: &str) {
        self.sync(ix);
        let Some(seq) = bid_id
            .strip_prefix(self.id_prefix.as_str())
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        let at = self.holds.partition_point(|h| h.seq < seq);
        if let Some(h) = self.holds.get_mut(at).filter(|h| h.seq == seq) {
            let (campaign, micros) = (h.campaign, std::mem::take(&mut h.micros));
            self.release(ix, campaign, micros);
        }
    }

    /// Ends the holds that lapsed by `now`.
    pub(super) fn lapse(&mut self, ix: &Index, now: Now) {
        self.sync(ix);
        while let Some(h) = self.holds.front().copied() {
            if h.until > now.micros {
                break;
            }
            self.holds.pop_front();
            self.release(ix, h.campaign, h.micros);
        }
    }

    fn release(&self, ix: &Index, campaign: u64, micros: i64) {
        if micros == 0 {
            return;
        }
        if let Some(row) = self.row(ix, campaign) {
            // Never below nothing (a campaign dropped and added back
            // starts its row afresh).
            row.hold(-micros.min(row.held()));
        }
    }

    /// Bids held now (awaiting a notice).
    pub fn holds(&self) -> usize {
        self.holds.len()
    }

    /// Whether the campaign at `pos` may bid `most_cpm` (USD, the most its
    /// bid can be): one impression at that price, on top of what it spent
    /// and what its bids awaiting a notice hold, stays within this shard's
    /// share of its daily (paced) and lifetime budgets. So a bid never
    /// starts below the budget and ends past it.
    pub(super) fn budget_ok(&self, h: &Hot, pos: usize, most_cpm: f64, now: Now) -> bool {
        let row = &self.spend.rows[pos];
        let (today, total) = row.get(now.day());
        // What the shard's bids awaiting a notice may still cost counts as
        // spent, and this bid's impression as well (micro-USD, rounded as
        // its hold will be).
        let cost = (most_cpm * 1000.0).round();
        if !(cost.is_finite() && cost >= 0.0) {
            return false;
        }
        let (today, total) = (today + row.held(), total + row.held());
        if let Some(s) = &self.slices {
            // A fleet: the caps already split what the fleet may still spend.
            let cost = cost as i64;
            return s
                .cap(self.version, pos, h.id, self.shard, now)
                .is_some_and(|(d, t)| {
                    today.saturating_add(cost) <= d && total.saturating_add(cost) <= t
                });
        }
        // In micro-USD, with one division (this runs for every candidate
        // the auction weighs).
        let (today, total) = (today as f64 + cost, total as f64 + cost);
        let share = 1e6 / f64::from(self.shards);
        let daily = h.daily * share;
        // Even: the elapsed share of the day plus one hour of headroom.
        let allowed = if h.even {
            daily * ((now.sec_of_day() + 3600) as f64 * (1.0 / 86400.0)).min(1.0)
        } else {
            daily
        };
        today <= allowed && total <= h.lifetime * share
    }

    fn freq_key(user: u64, campaign: u64) -> u64 {
        user ^ campaign.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    pub(super) fn freq_ok(&self, h: &Hot, user: Option<u64>, now: Now) -> bool {
        let Some(cap) = h.cap else { return true };
        // A capped campaign cannot honour its cap for an unknown user.
        let Some(u) = user else { return false };
        match self.freq.get(&Self::freq_key(u, h.id)) {
            Some(&(start, n)) if now.secs < start.saturating_add(cap.window_secs) => n < cap.max,
            _ => true,
        }
    }

    /// Counts a bid for the user's cap on `h`; the key counted and the
    /// cap's window, if any (stamped into the bid event, so a restart can
    /// restore the count).
    pub(super) fn freq_count(
        &mut self,
        h: &Hot,
        user: Option<u64>,
        now: Now,
    ) -> Option<(u64, u64)> {
        let (Some(cap), Some(u)) = (h.cap, user) else {
            return None;
        };
        let key = Self::freq_key(u, h.id);
        self.freq_add(key, cap.window_secs, now.secs);
        Some((key, cap.window_secs))
    }

    /// One bid counted under `key` at `secs`, in a window of `window` s.
    fn freq_add(&mut self, key: u64, window: u64, secs: u64) {
        if !self.freq.contains_key(&key) {
            // Full: forget the oldest users, never everyone (a wipe would let
            // anyone reset every cap by sending enough distinct user ids).
            while self.freq.len() >= self.max_users {
                let Some(old) = self.freq_order.pop_front() else {
                    break;
                };
                self.freq.remove(&old);
                self.freq_evictions += 1;
            }
            self.freq_order.push_back(key);
        }
        let e = self.freq.entry(key).or_insert((secs, 0));
        if secs >= e.0.saturating_add(window) {
            *e = (secs, 0);
        }
        e.1 += 1;
    }
}
