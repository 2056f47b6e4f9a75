//! Budgets shared by a fleet of nodes through the event database.
//!
//! With `[events.db]`, one thread per node (its own tokio runtime and CQL
//! session) does, every `fleet.sync_interval_ms`:
//! 1. heartbeat: its row in `nodes` (TTL'd; renewed again half-way through
//!    the interval), and counts the nodes seen within one interval (itself
//!    included): `N`;
//! 2. reads the global spend of every campaign (today and in all) from the
//!    rollups the event writer keeps beside the ledger, and every peer's
//!    standing reservation (its row in `fleet_caps`, TTL'd like the
//!    heartbeat): 32 + 16 queries, whatever the number of campaigns;
//! 3. per campaign, the room left: the daily budget (with even pacing, its
//!    elapsed share of the day plus an hour, as on one node) minus this
//!    node's own spend (exact, local), minus every peer's reservation,
//!    minus what nodes no longer alive spent (the ledger beyond this
//!    node's spend and the peers' reservations); this node wants its spend
//!    plus up to 1/N of the room: twice what it spent in the last interval
//!    (four times when it ran out of its grant), at least 1/16 of its 1/N
//!    (an idle node holds little, a busy one doubles its slice each sync).
//!    The same for the lifetime budget;
//! 4. claim, then check: a reservation smaller than the one the shards
//!    have is given to them at once; then the claim is written to
//!    `fleet_caps`, the peers' reservations are read again, and a larger
//!    one is granted as far as it fits beside them. Of two nodes growing
//!    at once, the one that reads second sees the other's claim (each
//!    writes before it reads, at LOCAL_QUORUM), so grants never sum past
//!    the budget however syncs interleave, and a node's row is never below
//!    what its shards may spend;
//! 5. publishes to each shard a cap on the shard's own spend: its spend
//!    now plus its 1/S of the grant beyond the node's spend, with a lease:
//!    the caps lapse (no bids) three intervals (at least 2 s) after the
//!    sync began, before
//!    its rows can have expired (their TTL is a second longer: CQL counts
//!    TTLs in whole seconds), so a node whose syncs stall stops spending
//!    before peers take up its share.
//!
//! The shards read the caps like the index (an `ArcSwap` load per request):
//! nothing on the request path waits on the database. A shard counts a
//! bid's price against its cap from the moment it bids (`bidder.hold_ms`,
//! see `ShardState::hold`), so wins whose notices are still on their way
//! cannot carry it past, and bids only while one more impression at its
//! most fits the cap. Overspend is bounded by wins notified later than
//! `hold_ms`, plus, only when a node has died or restarted, its spend that
//! had not reached the ledger (its spool is replayed when it restarts).
//!
//! Database unreachable: each failed sync, a shard may spend its last slice
//! times `fallback_decay` raised to the number of failed syncs in a row
//! (default 0.5: at most twice its last slice in all while the database is
//! away), and `/metrics` says so: the one case where peers may take up a
//! share this node still spends (its rows expire while it cannot renew
//! them). A node that has never read global spend (the database was down
//! at start) spends nothing on any campaign until it has.

mod slices;
mod status;
mod sync;

pub use slices::Slices;
pub use status::{FleetStatus, FleetView};

use super::spend::SpendBoard;
use crate::config::{DbConfig, FleetConfig};
use crate::index::Index;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use sync::Syncer;

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
            granted: HashMap::new(),
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

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
