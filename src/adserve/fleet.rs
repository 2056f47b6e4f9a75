//! Budgets shared by a fleet of nodes through the event database.
//!
//! With `[events.db]`, one thread per node (its own tokio runtime and CQL
//! session) does, every `fleet.sync_interval_ms`:
//! 1. heartbeat: its row in `nodes` (TTL'd; renewed again half-way through
//!    the interval), and counts the nodes seen within one interval (itself
//!    included): `N`;
//! 2. reads the global spend of every campaign (today and in all) from the
//!    rollups the event writer keeps beside the ledger, and every live
//!    peer's last published spend and cap (`fleet_caps`): 32 + 16 queries,
//!    whatever the number of campaigns;
//! 3. per campaign, what is left: the daily budget (with even pacing, its
//!    elapsed share of the day plus an hour, as on one node) minus this
//!    node's own spend (exact, local), minus every peer's cap (what it
//!    may reach before its next sync: a reservation) while its heartbeat
//!    row stands (three intervals: a late heartbeat does not free it),
//!    minus what nodes no longer alive spent (the ledger beyond this node's spend and the live
//!    peers' caps); this node reserves up to 1/N of it: twice what it spent
//!    in the last interval, at least 1/16 of its 1/N (an idle node holds
//!    little, a busy one doubles its slice each sync): its slice. The same
//!    for the lifetime budget;
//! 4. writes its spend and cap (own spend + slice) to `fleet_caps`, then
//!    publishes to each shard a cap on the shard's own spend: its spend now
//!    plus its 1/S of the slice.
//!
//! The shards read the caps like the index (an `ArcSwap` load per request):
//! nothing on the request path waits on the database. A node spends at most
//! its cap, and a cap is at most its own spend plus 1/N of what the others'
//! caps leave, so the caps of live nodes never sum past the budget, even when
//! nodes sync at the same moment. Overspend is bounded by one charge per
//! shard (the bid that crosses its cap), plus, only when a node has died or
//! restarted, its spend that had not reached the ledger (its spool is
//! replayed when it restarts) and whatever of it live peers' unused
//! reservations hid. An idle node's reservation
//! is 1/16 of its 1/N, so busy nodes take nearly all of what is left.
//!
//! Database unreachable: each failed sync, a shard may spend its last slice
//! times `fallback_decay` raised to the number of failed syncs in a row
//! (default 0.5: at most twice its last slice in all while the database is
//! away), and `/metrics` says so. A node that has never read global spend
//! (the database was down at start) spends nothing on any campaign until it
//! has.

use super::spend::SpendBoard;
use crate::config::{DbConfig, FleetConfig};
use crate::events::db::Db;
use crate::index::Index;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

/// Per campaign and shard: the most the shard's own spend may reach.
#[derive(Debug, Default)]
pub struct Slices {
    /// Index version the caps are laid out for.
    pub version: u64,
    /// UTC day (days since the epoch) the daily caps are for.
    pub day: u64,
    shards: usize,
    /// `[position * shards + shard]`: (cap today, cap in all), micro-USD.
    caps: Vec<(i64, i64)>,
    /// Campaign id -> position, for a shard already on a newer index.
    pos: HashMap<u64, u32>,
}

impl Slices {
    /// Caps for every campaign of `ix` on UTC day `day`: each shard's spend
    /// now (`local[shard]`, by campaign id) plus its share of the campaign.
    fn build(
        ix: &Index,
        day: u64,
        local: &[HashMap<u64, (i64, i64)>],
        share: impl Fn(u64) -> Share,
    ) -> Slices {
        let mut caps = Vec::with_capacity(ix.len() * local.len());
        for h in &ix.hot {
            let s = share(h.id);
            for l in local {
                let (t, a) = l.get(&h.id).copied().unwrap_or_default();
                caps.push((t + s.today, a + s.total));
            }
        }
        Slices {
            version: ix.version,
            day,
            shards: local.len(),
            caps,
            pos: ix
                .hot
                .iter()
                .enumerate()
                .map(|(p, h)| (h.id, p as u32))
                .collect(),
        }
    }

    /// Shard `shard`'s caps for the campaign at `pos` in index `version`
    /// (`id` when the shard follows another version). None: no cap is known
    /// (a campaign the last sync did not see, or a new day): do not spend.
    pub fn cap(
        &self,
        version: u64,
        pos: usize,
        id: u64,
        shard: u16,
        day: u64,
    ) -> Option<(i64, i64)> {
        if day != self.day {
            return None;
        }
        let p = if version == self.version {
            pos
        } else {
            *self.pos.get(&id)? as usize
        };
        self.caps.get(p * self.shards + usize::from(shard)).copied()
    }
}

/// One campaign as the last sync saw it (admin `/admin/spend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetView {
    /// Global spend today (UTC), micro-USD, from the rollups.
    pub global_today_micros: i64,
    /// Global spend in all, micro-USD.
    pub global_lifetime_micros: i64,
    /// What this node may still spend today, micro-USD (all its shards).
    pub node_slice_micros: i64,
}

/// What `/metrics` and the admin listener show of the fleet.
#[derive(Debug, Default)]
pub struct FleetStatus {
    /// Live nodes at the last good sync (this one included).
    pub live_nodes: AtomicU64,
    /// Unix milliseconds of the last good sync (0: never).
    pub last_sync_ms: AtomicI64,
    /// Good syncs.
    pub syncs: AtomicU64,
    /// Failed syncs (database unreachable or erroring).
    pub sync_errors: AtomicU64,
    /// Failed syncs in a row now (0: caps are fresh).
    pub failing: AtomicU64,
    /// Per campaign id, as of the last good sync.
    pub view: ArcSwap<HashMap<u64, FleetView>>,
}

impl FleetStatus {
    /// The fleet's families on the `/metrics` page. Global vs local spend
    /// and the slice per campaign are on `/admin/spend` (one series per
    /// campaign would not scale to 10^5 campaigns); here, their sums.
    pub fn render(&self, out: &mut String) {
        use crate::prom::single;
        let last = self.last_sync_ms.load(Relaxed);
        let lag = if last == 0 {
            -1.0
        } else {
            (unix_ms() - last).max(0) as f64 / 1000.0
        };
        single(
            out,
            "adshard_fleet_live_nodes",
            "gauge",
            "Nodes sharing budgets at the last good sync, this one included.",
            self.live_nodes.load(Relaxed),
        );
        single(
            out,
            "adshard_fleet_sync_lag_seconds",
            "gauge",
            "Seconds since global spend was last read (-1: never).",
            lag,
        );
        single(
            out,
            "adshard_fleet_syncs_total",
            "counter",
            "Good syncs with the database (heartbeat, global spend, slices).",
            self.syncs.load(Relaxed),
        );
        single(
            out,
            "adshard_fleet_sync_errors_total",
            "counter",
            "Syncs that failed (database unreachable or erroring).",
            self.sync_errors.load(Relaxed),
        );
        single(
            out,
            "adshard_fleet_fallback",
            "gauge",
            "1 while slices come from the last good sync, decaying (the database cannot be read).",
            u8::from(self.failing.load(Relaxed) > 0),
        );
        let v = self.view.load();
        let (g, s) = v.values().fold((0i64, 0i64), |(g, s), c| {
            (g + c.global_today_micros, s + c.node_slice_micros)
        });
        single(
            out,
            "adshard_fleet_global_spend_today_micros",
            "gauge",
            "Global spend today (UTC) of every campaign, all nodes, at the last good sync.",
            g,
        );
        single(
            out,
            "adshard_fleet_node_slice_micros",
            "gauge",
            "What this node may still spend today, all campaigns, at the last good sync.",
            s,
        );
    }
}

/// The running fleet thread and what it publishes.
#[derive(Debug)]
pub struct Fleet {
    /// Caps the shards read.
    pub slices: Arc<ArcSwap<Slices>>,
    /// Status for `/metrics` and the admin listener.
    pub status: Arc<FleetStatus>,
    /// This node's id in `nodes`.
    pub node: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A campaign's remaining allowance at the last good sync, per shard.
#[derive(Debug, Clone, Copy)]
struct Share {
    today: i64,
    total: i64,
}

struct Syncer {
    db_cfg: DbConfig,
    cfg: FleetConfig,
    node: String,
    index: Arc<ArcSwap<Index>>,
    board: Arc<SpendBoard>,
    slices: Arc<ArcSwap<Slices>>,
    status: Arc<FleetStatus>,
    /// Per campaign id: the last good sync's per-shard shares.
    last: HashMap<u64, Share>,
    /// Per campaign id: this node's spend today at the last good sync.
    spent_then: HashMap<u64, i64>,
}

fn usd_micros(usd: f64) -> i64 {
    if usd.is_finite() {
        (usd * 1e6).round() as i64
    } else {
        i64::MAX / 4
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Fleet {
    /// Starts the fleet thread and waits (up to the database's connect
    /// timeout, twice) for its first sync, so that a node which can reach
    /// the database bids only once it knows global spend. `node` is this
    /// process's id (random per start).
    pub fn start(
        db: &DbConfig,
        cfg: &FleetConfig,
        node: String,
        index: Arc<ArcSwap<Index>>,
        board: Arc<SpendBoard>,
    ) -> std::io::Result<Fleet> {
        let slices = Arc::new(ArcSwap::from_pointee(Slices::default()));
        let status = Arc::new(FleetStatus::default());
        let stop = Arc::new(AtomicBool::new(false));
        let s = Syncer {
            db_cfg: db.clone(),
            cfg: cfg.clone(),
            node: node.clone(),
            index,
            board,
            slices: slices.clone(),
            status: status.clone(),
            last: HashMap::new(),
            spent_then: HashMap::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || rt.block_on(s.run(stop2, first_tx)))?;
        let wait =
            Duration::from_millis(db.connect_timeout_ms.saturating_mul(2) + cfg.sync_interval_ms);
        let _ = first_rx.recv_timeout(wait);
        Ok(Fleet {
            slices,
            status,
            node,
            stop,
            thread: Some(thread),
        })
    }
}

impl Syncer {
    async fn run(mut self, stop: Arc<AtomicBool>, first: std::sync::mpsc::Sender<()>) {
        let every = Duration::from_millis(self.cfg.sync_interval_ms);
        let mut db: Option<Db> = None;
        let mut first = Some(first);
        while !stop.load(Relaxed) {
            let t0 = tokio::time::Instant::now();
            if db.is_none() {
                match Db::connect(&self.db_cfg).await {
                    Ok(d) => db = Some(d),
                    Err(e) => tracing::warn!(error = %e, "fleet: database unavailable"),
                }
            }
            let ok = match &db {
                Some(d) => match self.sync(d).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "fleet: sync failed");
                        false
                    }
                },
                None => false,
            };
            if !ok {
                self.fall_back();
            }
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            // A second heartbeat half-way: a live node is never seen more
            // than half an interval (plus a sync's duration) ago, so one
            // unseen for a whole interval is gone, and its share is taken
            // up within two intervals of its death.
            nap(&stop, t0 + every / 2).await;
            if let Some(d) = &db {
                let _ = self.beat(d, unix_ms()).await;
            }
            nap(&stop, t0 + every).await;
        }
    }

    /// Heartbeat rows outlive three intervals (at least 2 s: CQL TTLs are
    /// whole seconds); liveness itself is judged by `seen`.
    fn ttl(&self) -> i32 {
        (3 * self.cfg.sync_interval_ms).div_ceil(1000).max(2) as i32
    }

    /// This node's heartbeat, seen at `now_ms`.
    async fn beat(&self, db: &Db, now_ms: i64) -> Result<(), crate::events::db::DbError> {
        let shards = self.board.len().max(1) as u16;
        db.heartbeat(&self.node, shards, now_ms, self.ttl()).await
    }

    /// One heartbeat, read, reservation and publish.
    async fn sync(&mut self, db: &Db) -> Result<(), crate::events::db::DbError> {
        let every = self.cfg.sync_interval_ms as i64;
        let shards = self.board.len().max(1);
        let ttl = self.ttl();
        let now = unix_ms();
        self.beat(db, now).await?;
        let fresh = now - every;
        let rows = db.nodes().await?;
        let live: std::collections::HashSet<String> = rows
            .iter()
            .filter(|(n, seen)| *seen >= fresh || *n == self.node)
            .map(|(n, _)| n.clone())
            .chain(std::iter::once(self.node.clone()))
            .collect();
        // Reservations stand while their heartbeat row does (three
        // intervals): a peer whose heartbeat is merely late (a busy host)
        // is not counted among the live, but may still spend up to its
        // cap, so its cap stays out of what this node may take.
        let holders: std::collections::HashSet<String> = rows.into_iter().map(|(n, _)| n).collect();
        let n = live.len() as i64;
        let now_s = (now / 1000) as u64;
        let day = now_s / 86400;
        let global = db.global_spend(day as i64).await?;
        // Peers' caps (their standing reservations), per campaign: (today,
        // in all).
        let mut peers: HashMap<u64, (i64, i64)> = HashMap::new();
        for (c, node, _, ct, _, ca) in db.caps(day as i64).await? {
            if node != self.node && holders.contains(&node) {
                let e = peers.entry(c).or_default();
                e.0 += ct;
                e.1 += ca;
            }
        }
        let ix = self.index.load_full();
        let local: Vec<_> = (0..shards).map(|s| self.board.of_shard(s, day)).collect();
        let frac = ((now_s % 86400 + 3600) as f64 / 86400.0).min(1.0);
        let mut rows = Vec::with_capacity(ix.len());
        let mut view = HashMap::with_capacity(ix.len());
        let mut last = HashMap::with_capacity(ix.len());
        let mut spent_now = HashMap::with_capacity(ix.len());
        for h in &ix.hot {
            let mine = local.iter().fold((0, 0), |(t, a), l| {
                let (x, y) = l.get(&h.id).copied().unwrap_or_default();
                (t + x, a + y)
            });
            let (p_ct, p_ca) = peers.get(&h.id).copied().unwrap_or_default();
            let (g_t, g_a) = global.get(&h.id).copied().unwrap_or_default();
            let daily = usd_micros(if h.even { h.daily * frac } else { h.daily });
            // What nodes no longer alive spent (earlier runs, the dead):
            // the ledger beyond this node's spend and live peers' caps (a
            // peer's spend, ledgered or not, is within its cap).
            let gone = ((g_t - mine.0 - p_ct).max(0), (g_a - mine.1 - p_ca).max(0));
            // What is left once peers' caps (their reservations) are taken
            // out; this node reserves its 1/N of it.
            let left_t = (daily - mine.0 - p_ct - gone.0).max(0) / n;
            let left_a = (usd_micros(h.lifetime) - mine.1 - p_ca - gone.1).max(0) / n;
            // Reserve what this node is spending (twice its last interval's
            // spend), at least 1/16 of its 1/N: a node without traffic for
            // a campaign holds almost nothing of it, and a node whose
            // traffic grows doubles its reservation every sync.
            let spent = mine.0 - self.spent_then.get(&h.id).copied().unwrap_or(mine.0);
            let want = |left: i64| left.min((2 * spent).max(left / 16));
            let (add_t, add_a) = (want(left_t), want(left_a));
            spent_now.insert(h.id, mine.0);
            rows.push((h.id, mine.0, mine.0 + add_t, mine.1, mine.1 + add_a));
            let share = Share {
                today: add_t / shards as i64,
                total: add_a / shards as i64,
            };
            last.insert(h.id, share);
            view.insert(
                h.id,
                FleetView {
                    global_today_micros: g_t,
                    global_lifetime_micros: g_a,
                    node_slice_micros: add_t.min(add_a),
                },
            );
        }
        // Peers must see the reservation before the shards spend it.
        db.put_caps(day as i64, &self.node, &rows, ttl).await?;
        self.slices
            .store(Arc::new(Slices::build(&ix, day, &local, |id| last[&id])));
        self.last = last;
        self.spent_then = spent_now;
        let st = &self.status;
        st.view.store(Arc::new(view));
        st.live_nodes.store(n as u64, Relaxed);
        st.last_sync_ms.store(now, Relaxed);
        st.syncs.fetch_add(1, Relaxed);
        st.failing.store(0, Relaxed);
        Ok(())
    }

    /// No sync this interval: caps from the last good shares, decayed.
    fn fall_back(&mut self) {
        let st = &self.status;
        st.sync_errors.fetch_add(1, Relaxed);
        let k = st.failing.fetch_add(1, Relaxed) + 1;
        let factor = self.cfg.fallback_decay.powi(k.min(1000) as i32);
        let shards = self.board.len().max(1);
        let now_s = (unix_ms() / 1000) as u64;
        let day = now_s / 86400;
        let ix = self.index.load_full();
        let local: Vec<_> = (0..shards).map(|s| self.board.of_shard(s, day)).collect();
        let scale = |v: i64| (v as f64 * factor) as i64;
        let last = &self.last;
        self.slices
            .store(Arc::new(Slices::build(&ix, day, &local, |id| {
                // No last share (never synced): spend nothing.
                last.get(&id)
                    .map_or(Share { today: 0, total: 0 }, |s| Share {
                        today: scale(s.today),
                        total: scale(s.total),
                    })
            })));
    }
}

/// Sleeps until `until`, waking every 50 ms to see a stop.
async fn nap(stop: &AtomicBool, until: tokio::time::Instant) {
    while !stop.load(Relaxed) {
        let now = tokio::time::Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(50))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_database_the_last_slice_decays_each_interval() {
        let ix = Index::build(crate::index::synth::campaigns(3, 1), 1).unwrap();
        let ids: Vec<u64> = ix.hot.iter().map(|h| h.id).collect();
        let mut s = Syncer {
            db_cfg: DbConfig::default(),
            cfg: FleetConfig::default(),
            node: "n".into(),
            index: Arc::new(ArcSwap::from_pointee(ix)),
            board: Arc::new(SpendBoard::new(2)),
            slices: Arc::new(ArcSwap::from_pointee(Slices::default())),
            status: Arc::new(FleetStatus::default()),
            last: [(
                ids[0],
                Share {
                    today: 8_000,
                    total: 40_000,
                },
            )]
            .into_iter()
            .collect(),
            spent_then: HashMap::new(),
        };
        let day = (unix_ms() / 1000) as u64 / 86400;
        let cap = |s: &Syncer, pos: usize, shard: u16| {
            let sl = s.slices.load();
            sl.cap(sl.version, pos, ids[pos], shard, day)
        };
        s.fall_back();
        assert_eq!(cap(&s, 0, 1), Some((4_000, 20_000)), "half the last share");
        assert_eq!(cap(&s, 1, 0), Some((0, 0)), "no last share: spend nothing");
        s.fall_back();
        assert_eq!(cap(&s, 0, 0), Some((2_000, 10_000)), "a quarter");
        assert_eq!(s.status.failing.load(Relaxed), 2);
        let mut page = String::new();
        s.status.render(&mut page);
        assert!(page.contains("adshard_fleet_fallback 1"), "{page}");
        assert!(page.contains("adshard_fleet_sync_errors_total 2"), "{page}");
        assert!(page.contains("adshard_fleet_sync_lag_seconds -1"), "{page}");
    }

    #[test]
    fn caps_follow_the_version_or_the_id_and_lapse_at_midnight() {
        let s = Slices {
            version: 7,
            day: 100,
            shards: 2,
            caps: vec![(1, 2), (3, 4), (5, 6), (7, 8)],
            pos: [(11, 0), (22, 1)].into_iter().collect(),
        };
        assert_eq!(s.cap(7, 1, 22, 1, 100), Some((7, 8)));
        assert_eq!(
            s.cap(8, 0, 22, 0, 100),
            Some((5, 6)),
            "by id on another version"
        );
        assert_eq!(
            s.cap(8, 0, 33, 0, 100),
            None,
            "a campaign the sync has not seen"
        );
        assert_eq!(s.cap(7, 0, 11, 0, 101), None, "a new day");
    }
}
