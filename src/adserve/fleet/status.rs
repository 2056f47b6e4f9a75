//! What `/metrics` and the admin listener show of the fleet: live nodes,
//! sync lag and errors, global spend and this node's slice.

use super::unix_ms;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};

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
