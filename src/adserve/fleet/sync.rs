//! The fleet thread's sync: heartbeat, global spend, claim, check, grant
//! (the protocol is described in the module above).

use super::{unix_ms, FleetStatus, FleetView, Slices};
use crate::adserve::spend::SpendBoard;
use crate::config::{DbConfig, FleetConfig};
use crate::events::db::Db;
use crate::index::Index;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// A campaign's remaining allowance at the last good sync, per shard.
#[derive(Debug, Clone, Copy)]
pub(super) struct Share {
    pub(super) today: i64,
    pub(super) total: i64,
}

impl Share {
    /// Each of `shards` shards' part of a node's reservation `cap` beyond
    /// its spend `mine` (today, in all).
    fn of(cap: (i64, i64), mine: (i64, i64), shards: usize) -> Share {
        Share {
            today: (cap.0 - mine.0).max(0) / shards as i64,
            total: (cap.1 - mine.1).max(0) / shards as i64,
        }
    }
}

/// One campaign in a sync: figures as (today, in all), micro-USD.
struct Plan {
    id: u64,
    /// This node's spend.
    mine: (i64, i64),
    /// The budget (daily: its paced share so far).
    budget: (i64, i64),
    /// The ledger's spend (all nodes, from the rollups).
    global: (i64, i64),
    /// The reservation this node claims.
    want: (i64, i64),
    /// What it may take before its claim is checked.
    now_ok: (i64, i64),
    /// Whether that is less than it had.
    shrinks: bool,
}

/// What is left of `budget` for this node (spent `mine`) once peers'
/// reservations `peer` and what nodes no longer alive spent are taken out:
/// the ledger's spend (`global`) beyond this node's and the live peers'
/// (a live peer's spend, ledgered or not, is within its reservation).
fn room(budget: (i64, i64), mine: (i64, i64), peer: (i64, i64), global: (i64, i64)) -> (i64, i64) {
    let one = |b: i64, m: i64, p: i64, g: i64| b - m - p - (g - m - p).max(0);
    (
        one(budget.0, mine.0, peer.0, global.0),
        one(budget.1, mine.1, peer.1, global.1),
    )
}

pub(super) struct Syncer {
    pub(super) db_cfg: DbConfig,
    pub(super) cfg: FleetConfig,
    pub(super) node: String,
    pub(super) index: Arc<ArcSwap<Index>>,
    pub(super) board: Arc<SpendBoard>,
    pub(super) slices: Arc<ArcSwap<Slices>>,
    pub(super) status: Arc<FleetStatus>,
    /// Per campaign id: the last good sync's per-shard shares.
    pub(super) last: HashMap<u64, Share>,
    /// Per campaign id: this node's spend today at the last good sync.
    pub(super) spent_then: HashMap<u64, i64>,
    /// Per campaign id: the reservation the shards were last given (today,
    /// in all; this node's spend included).
    pub(super) granted: HashMap<u64, (i64, i64)>,
}

fn usd_micros(usd: f64) -> i64 {
    if usd.is_finite() {
        (usd * 1e6).round() as i64
    } else {
        i64::MAX / 4
    }
}

impl Syncer {
    pub(super) async fn run(mut self, stop: Arc<AtomicBool>, first: std::sync::mpsc::Sender<()>) {
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

    /// How long the shards may spend a sync's grant: three intervals, at
    /// least two seconds (a sync may take two intervals, or a second and
    /// more, on a busy host before its shards pause).
    fn lease_ms(&self) -> i64 {
        (3 * self.cfg.sync_interval_ms).max(2000) as i64
    }

    /// Heartbeat and claim rows outlive the lease by at least a second (CQL
    /// TTLs count whole seconds: a row may go up to 1 s early); liveness
    /// itself is judged by `seen`.
    fn ttl(&self) -> i32 {
        ((self.lease_ms() as u64).div_ceil(1000) + 1) as i32
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
        let n = live.len() as i64;
        let now_s = (now / 1000) as u64;
        let day = now_s / 86400;
        let global = db.global_spend(day as i64).await?;
        let peers = self.peer_caps(db, day).await?;
        let ix = self.index.load_full();
        let local: Vec<_> = (0..shards).map(|s| self.board.of_shard(s, day)).collect();
        let frac = ((now_s % 86400 + 3600) as f64 / 86400.0).min(1.0);
        // 1. What this node would reserve.
        let mut plans = Vec::with_capacity(ix.len());
        for h in &ix.hot {
            let mine = local.iter().fold((0, 0), |(t, a), l| {
                let (x, y) = l.get(&h.id).copied().unwrap_or_default();
                (t + x, a + y)
            });
            let budget = (
                usd_micros(if h.even { h.daily * frac } else { h.daily }),
                usd_micros(h.lifetime),
            );
            let global = global.get(&h.id).copied().unwrap_or_default();
            let peer = peers.get(&h.id).copied().unwrap_or_default();
            let room = room(budget, mine, peer, global);
            // This node's 1/N of the room, as much as it is spending (twice
            // its last interval's spend; four times when it ran out of its
            // grant, its demand being more than it could spend), at least
            // 1/16 of its 1/N: a node without traffic for a campaign holds
            // almost nothing of it, and a node whose traffic grows doubles
            // (or quadruples) its reservation every sync.
            let had = self.granted.get(&h.id).copied();
            let spent = mine.0 - self.spent_then.get(&h.id).copied().unwrap_or(mine.0);
            let ran_out = had.is_some_and(|g| spent > 0 && g.0 - mine.0 < spent / 4);
            let pace = if ran_out { 4 } else { 2 };
            let want = |room: i64| {
                let left = room.max(0) / n;
                left.min((pace * spent).max(left / 16))
            };
            let want = (mine.0 + want(room.0), mine.1 + want(room.1));
            // 2. Less than granted before is taken at once; more only once
            //    checked (3). Nothing granted yet: nothing beyond the spend.
            let had = had.unwrap_or(mine);
            let now_ok = (want.0.min(had.0.max(mine.0)), want.1.min(had.1.max(mine.1)));
            plans.push(Plan {
                id: h.id,
                mine,
                budget,
                global,
                want,
                now_ok,
                shrinks: now_ok.0 < had.0 || now_ok.1 < had.1,
            });
        }
        // A shrink reaches the shards before peers can read it.
        if plans.iter().any(|p| p.shrinks) {
            let at: HashMap<u64, Share> = plans
                .iter()
                .map(|p| (p.id, Share::of(p.now_ok, p.mine, shards)))
                .collect();
            let until = self.slices.load().until;
            self.slices
                .store(Arc::new(Slices::build(&ix, day, until, &local, |id| {
                    at[&id]
                })));
        }
        let rows: Vec<_> = plans
            .iter()
            .map(|p| (p.id, p.mine.0, p.want.0, p.mine.1, p.want.1))
            .collect();
        db.put_caps(day as i64, &self.node, &rows, ttl).await?;
        // 3. Peers' reservations read again, now that ours is visible: a
        //    growth is granted as far as it fits beside them. Of two nodes
        //    growing at once, the second to read sees the first's claim.
        let peers = self.peer_caps(db, day).await?;
        // The shards' lease: this sync's heartbeat and claims outlive it.
        let until = (now + self.lease_ms()) * 1000;
        let mut view = HashMap::with_capacity(ix.len());
        let mut last = HashMap::with_capacity(ix.len());
        let mut granted = HashMap::with_capacity(ix.len());
        let mut spent_now = HashMap::with_capacity(ix.len());
        for p in &plans {
            let peer = peers.get(&p.id).copied().unwrap_or_default();
            let room = room(p.budget, p.mine, peer, p.global);
            let fits = (p.mine.0 + room.0, p.mine.1 + room.1);
            let grant = (
                p.now_ok.0.max(p.want.0.min(fits.0)),
                p.now_ok.1.max(p.want.1.min(fits.1)),
            );
            tracing::debug!(
                campaign = p.id,
                n,
                mine = p.mine.0,
                peers = peer.0,
                global = p.global.0,
                want = p.want.0,
                grant = grant.0,
                "fleet: reserved"
            );
            granted.insert(p.id, grant);
            last.insert(p.id, Share::of(grant, p.mine, shards));
            spent_now.insert(p.id, p.mine.0);
            view.insert(
                p.id,
                FleetView {
                    global_today_micros: p.global.0,
                    global_lifetime_micros: p.global.1,
                    node_slice_micros: (grant.0 - p.mine.0).min(grant.1 - p.mine.1),
                },
            );
        }
        self.slices
            .store(Arc::new(Slices::build(&ix, day, until, &local, |id| {
                last[&id]
            })));
        self.last = last;
        self.granted = granted;
        self.spent_then = spent_now;
        let st = &self.status;
        st.view.store(Arc::new(view));
        st.live_nodes.store(n as u64, Relaxed);
        st.last_sync_ms.store(now, Relaxed);
        st.syncs.fetch_add(1, Relaxed);
        st.failing.store(0, Relaxed);
        Ok(())
    }

    /// Every peer's standing reservation (its claim row, while it lives),
    /// per campaign: (today, in all).
    async fn peer_caps(
        &self,
        db: &Db,
        day: u64,
    ) -> Result<HashMap<u64, (i64, i64)>, crate::events::db::DbError> {
        let mut peers: HashMap<u64, (i64, i64)> = HashMap::new();
        for (c, node, _, ct, _, ca) in db.caps(day as i64).await? {
            if node != self.node {
                let e = peers.entry(c).or_default();
                e.0 += ct;
                e.1 += ca;
            }
        }
        Ok(peers)
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
            .store(Arc::new(Slices::build(&ix, day, i64::MAX, &local, |id| {
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
            granted: HashMap::new(),
        };
        let now = crate::adserve::Now::wall();
        let cap = |s: &Syncer, pos: usize, shard: u16| {
            let sl = s.slices.load();
            sl.cap(sl.version, pos, ids[pos], shard, now)
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
}
