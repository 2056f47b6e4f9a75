//! Write-behind of events to ScyllaDB (or Apache Cassandra: same protocol).
//!
//! One thread runs a current-thread tokio runtime and the `scylla` driver.
//! It polls the shards' queues (so a push never wakes a thread), groups each
//! shard's events into unlogged batches of one partition each, and writes
//! them with prepared statements, at most `max_in_flight` batches at once,
//! retrying a failed batch with doubling back-off. A batch that still fails
//! goes to its shard's spool and the database is marked down: from then on
//! events go straight to the spool, and the database is probed every
//! `probe_interval_ms`. While the database is up, the writer asks the spool
//! writers to seal their segments (at the next probe those holding spilled
//! events, every `seal_interval_ms` those holding only durable notices
//! (money, impressions, clicks), which are written both ways and need the
//! replay only for their report rollups: each replayed segment is a
//! rollup source of its own, so fewer segments keep reports small) and
//! replays every sealed segment, deleting it once all its events are
//! stored; a segment with a torn tail (a crash mid-write) is kept, renamed
//! `.torn`, after its whole events are stored.
//!
//! Spend is added apart from the event rows, so that slow conditional
//! writes never hold up the rows: once a batch's rows are stored, its
//! charges go to the spend task, which gathers them for [`SPEND_ROUND`] and
//! then writes one claim batch, one increment and one marking batch per
//! campaign and day. A failed round spills its charges' events; the replay
//! rewrites their rows (no change) and adds the spend not yet counted.
//!
//! Event ids are the primary key, so a replay writes the same rows again
//! and nothing is stored twice. Spend counters (CQL counters cannot be
//! written idempotently) are guarded per event by a lightweight transaction
//! on `spend_applied`: a writer claims the event (`INSERT ... IF NOT
//! EXISTS`, counted = false), adds the spend, then marks it counted; the
//! events of one campaign and day in a batch share one conditional batch,
//! one increment and one marking batch. A
//! writer that finds a claim not yet marked counted adds it (the earlier
//! writer failed in between), one that finds it counted skips it. So spend
//! is never lost; it can count twice only when an increment the database
//! applied was reported as failed (a timeout, a node killed mid-reply):
//! CQL counters are not idempotent. The events table stays exact.

mod client;
mod fleet;
mod frequency;
mod replay;
pub mod rollup;
mod schema;
mod writer;

pub use client::{Db, SPEND_BUCKETS};

/// An event on its way to the database writer, and whether it is also in
/// the spool (a durable event): such an event is counted in the report
/// rollups by its segment's replay, never by the live writer, and never
/// spilled again.
#[derive(Debug)]
pub struct ToDb {
    /// The event.
    pub ev: Event,
    /// Also written to the spool.
    pub spooled: bool,
}
pub use replay::{replay_file, replay_files, ReplayError, Replayed};
pub use schema::{schema, schema_script};
pub(crate) use writer::{spawn, SpoolHome};

use super::record::Event;
use scylla::value::CqlDate;
use std::sync::atomic::{AtomicI64, AtomicU64};

/// Counters of the database writer, read by `/metrics`.
#[derive(Debug, Default)]
pub struct DbStats {
    /// 1 while the database takes writes, 0 while it is down.
    pub up: AtomicU64,
    /// Events stored (first writes and replays).
    pub stored: AtomicU64,
    /// Events sent to the spool because the database was down.
    pub spilled_down: AtomicU64,
    /// Events sent to the spool because their batch failed every retry.
    pub spilled_failed: AtomicU64,
    /// Events lost: the spool queue was gone (only at shutdown, a bug).
    pub dropped: AtomicU64,
    /// Events replayed from spool segments.
    pub replayed: AtomicU64,
    /// Segments replayed (and deleted or kept as `.torn`).
    pub replayed_segments: AtomicU64,
    /// Segments that could not be read or decoded (renamed `.bad`).
    pub replay_errors: AtomicU64,
    /// Batch attempts that failed.
    pub write_errors: AtomicU64,
    /// Retried batch attempts.
    pub retries: AtomicU64,
    /// Batches in flight now.
    pub in_flight: AtomicI64,
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No session could be built.
    #[error("cannot connect to {nodes:?}: {message}")]
    Connect {
        /// Contact points.
        nodes: Vec<String>,
        /// Driver message.
        message: String,
    },
    /// A schema statement failed.
    #[error("cannot create the schema: {0}")]
    Schema(String),
    /// A statement could not be prepared.
    #[error("cannot prepare statements: {0}")]
    Prepare(String),
    /// A write failed.
    #[error("write failed: {0}")]
    Write(String),
    /// A read failed.
    #[error("read failed: {0}")]
    Read(String),
}

impl DbStats {
    /// The database writer's families on the `/metrics` page; `spool` are
    /// the shards' spool counters (their database-queue spills).
    pub fn render(&self, spool: &[std::sync::Arc<super::SpoolStats>], out: &mut String) {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let name = "adshard_events_spilled_total";
        crate::prom::family(
            out,
            name,
            "counter",
            "Events sent to the spool instead of the database, by reason.",
        );
        for (i, st) in spool.iter().enumerate() {
            let v = st.spilled_queue_full.load(Relaxed);
            let _ = writeln!(out, "{name}{{shard=\"{i}\",reason=\"queue_full\"}} {v}");
        }
        let _ = writeln!(
            out,
            "{name}{{reason=\"db_down\"}} {}",
            self.spilled_down.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "{name}{{reason=\"write_failed\"}} {}",
            self.spilled_failed.load(Relaxed)
        );
        for (name, kind, help, v) in [
            (
                "adshard_db_up",
                "gauge",
                "1 while the event database takes writes.",
                self.up.load(Relaxed) as i64,
            ),
            (
                "adshard_db_in_flight",
                "gauge",
                "Event batches being written now.",
                self.in_flight.load(Relaxed),
            ),
            (
                "adshard_db_events_stored_total",
                "counter",
                "Events stored in the database (first writes and replays).",
                self.stored.load(Relaxed) as i64,
            ),
            (
                "adshard_db_write_errors_total",
                "counter",
                "Failed batch attempts.",
                self.write_errors.load(Relaxed) as i64,
            ),
            (
                "adshard_db_retries_total",
                "counter",
                "Retried batch attempts.",
                self.retries.load(Relaxed) as i64,
            ),
            (
                "adshard_db_events_lost_total",
                "counter",
                "Events the database writer could neither store nor spool.",
                self.dropped.load(Relaxed) as i64,
            ),
            (
                "adshard_events_replayed_total",
                "counter",
                "Events replayed from spool segments into the database.",
                self.replayed.load(Relaxed) as i64,
            ),
            (
                "adshard_replay_segments_total",
                "counter",
                "Spool segments replayed.",
                self.replayed_segments.load(Relaxed) as i64,
            ),
            (
                "adshard_replay_errors_total",
                "counter",
                "Spool segments that could not be replayed (kept as .bad) or removed.",
                self.replay_errors.load(Relaxed) as i64,
            ),
        ] {
            crate::prom::single(out, name, kind, help, v);
        }
    }
}

/// What the database gives back at start-up ([`read_at_start`]).
#[derive(Debug)]
pub struct AtStart {
    /// The bids that counted a frequency cap under the owner whose window
    /// has not passed ([`Db::capped_bids`]).
    pub capped: Vec<crate::events::CappedBid>,
    /// When asked for: every campaign's global spend, micro-USD on the day
    /// asked and in all ([`Db::global_spend`]).
    pub spend: Option<std::collections::HashMap<u64, (i64, i64)>>,
}

/// Start-up reads, on a runtime of their own: `owner`'s capped bids and,
/// with `spend_day`, the spend rollups (creating the schema when
/// configured, as any connection does).
pub fn read_at_start(
    cfg: &crate::config::DbConfig,
    owner: &str,
    spend_day: Option<i64>,
) -> Result<AtStart, DbError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DbError::Connect {
            nodes: cfg.nodes.clone(),
            message: format!("cannot start a runtime: {e}"),
        })?;
    rt.block_on(async {
        let db = Db::connect(cfg).await?;
        let spend = match spend_day {
            Some(day) => Some(db.global_spend(day).await?),
            None => None,
        };
        Ok(AtStart {
            capped: db.capped_bids(owner).await?,
            spend,
        })
    })
}

/// Partition of an event: (minute, shard).
pub fn partition(ev: &Event) -> (i32, i16) {
    (ev.ts_micros.div_euclid(60_000_000) as i32, ev.shard as i16)
}

/// The UTC day of an event, as CQL stores dates.
pub(crate) fn day(ev: &Event) -> CqlDate {
    cql_date(ev.ts_micros.div_euclid(86_400_000_000))
}

/// Days since the Unix epoch as a CQL `date` (which counts from 2^31).
pub(crate) fn cql_date(days: i64) -> CqlDate {
    CqlDate(((1i64 << 31) + days) as u32)
}

/// Splits events into runs of one partition, at most `max` long, in order.
pub fn chunks(evs: Vec<Event>, max: usize) -> Vec<Vec<Event>> {
    chunks_by(evs, max, partition)
}

/// [`chunks`] of anything that carries an event (`part` finds its partition).
pub(crate) fn chunks_by<T, K: Ord + Copy>(
    mut items: Vec<T>,
    max: usize,
    part: impl Fn(&T) -> K,
) -> Vec<Vec<T>> {
    items.sort_by_key(&part);
    let mut out: Vec<Vec<T>> = Vec::new();
    for it in items {
        match out.last_mut() {
            Some(last) if last.len() < max && part(&last[0]) == part(&it) => last.push(it),
            _ => out.push(vec![it]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbConfig;
    use crate::events::Kind;

    fn ev(id: u128, shard: u16, ts_micros: i64) -> Event {
        Event {
            id,
            kind: Kind::Win,
            ts_micros,
            shard,
            auction_id: "a".into(),
            imp_id: "1".into(),
            campaign_id: 3,
            creative_id: "c".into(),
            price_micros: 1,
            currency: "USD".into(),
            spend_micros: 1,
            bid_id: String::new(),
            freq_key: 0,
            freq_window: 0,
            test: false,
        }
    }

    #[test]
    fn chunks_hold_one_partition_and_respect_the_size() {
        let m = 60_000_000;
        let evs = vec![
            ev(1, 0, 5),
            ev(2, 1, 5),
            ev(3, 0, m + 1),
            ev(4, 0, 6),
            ev(5, 0, 7),
            ev(6, 0, 8),
        ];
        let c = chunks(evs, 2);
        let ids: Vec<Vec<u128>> = c.iter().map(|c| c.iter().map(|e| e.id).collect()).collect();
        assert_eq!(ids, vec![vec![1, 4], vec![5, 6], vec![2], vec![3]]);
        for ch in &c {
            assert!(ch.iter().all(|e| partition(e) == partition(&ch[0])));
        }
    }

    #[test]
    fn partitions_and_days_are_utc_and_floor_before_the_epoch() {
        assert_eq!(partition(&ev(1, 2, 59_999_999)), (0, 2));
        assert_eq!(partition(&ev(1, 2, 60_000_000)), (1, 2));
        assert_eq!(partition(&ev(1, 2, -1)), (-1, 2));
        assert_eq!(day(&ev(1, 0, 86_400_000_000)).0, (1u32 << 31) + 1);
        assert_eq!(day(&ev(1, 0, -1)).0, (1u32 << 31) - 1);
    }

    #[test]
    fn deploy_schema_matches_the_default_config() {
        let file = include_str!("../../../deploy/cql/schema.cql");
        assert_eq!(
            file,
            schema_script(&DbConfig::default()),
            "regenerate with `adshard cql-schema > deploy/cql/schema.cql`"
        );
    }
}
