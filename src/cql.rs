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
//! writers to seal their segments and replays every sealed segment, deleting
//! it once all its events are stored; a segment with a torn tail (a crash
//! mid-write) is kept, renamed `.torn`, after its whole events are stored.
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

use crate::config::DbConfig;
use crate::events::{Event, Kind};
use crate::store::{list_segments, read_spool, WriterCtl};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{Counter, CqlDate, CqlTimestamp, CqlValue};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

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
}

/// The CQL statements that create the keyspace and tables for `cfg`
/// (deploy/cql/schema.cql is this, for the default configuration).
pub fn schema(cfg: &DbConfig) -> Vec<String> {
    let ks = &cfg.keyspace;
    let ttl = u64::from(cfg.ttl_days) * 86_400;
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks}\n  WITH replication = {}",
            cfg.replication
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.events (\n  \
             minute int,          -- minutes since the Unix epoch of ts\n  \
             shard smallint,\n  \
             id uuid,\n  \
             kind text,           -- bid, win, bill, loss, impression, click\n  \
             ts timestamp,\n  \
             auction_id text,\n  \
             imp_id text,\n  \
             campaign_id bigint,\n  \
             creative_id text,\n  \
             price_micros bigint, -- CPM for bids, clearing price for notices\n  \
             spend_micros bigint, -- spend this event charged\n  \
             currency text,\n  \
             PRIMARY KEY ((minute, shard), id)\n\
             ) WITH default_time_to_live = {ttl}\n  \
             AND compaction = {{'class': 'TimeWindowCompactionStrategy', \
             'compaction_window_unit': 'HOURS', 'compaction_window_size': 1}}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.campaign_spend (\n  \
             campaign_id bigint,\n  \
             day date,\n  \
             spend_micros counter,\n  \
             PRIMARY KEY ((campaign_id), day)\n\
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.spend_applied (\n  \
             campaign_id bigint,\n  \
             day date,\n  \
             id uuid,\n  \
             spend_micros bigint,\n  \
             counted boolean,     -- false: claimed, not yet added\n  \
             PRIMARY KEY ((campaign_id, day), id)\n\
             ) WITH default_time_to_live = {ttl}"
        ),
    ]
}

/// The schema as one CQL script.
pub fn schema_script(cfg: &DbConfig) -> String {
    let mut s = String::from(
        "-- adshard event store (ScyllaDB or Cassandra). Generated by\n\
         -- `adshard cql-schema`; adshard applies it at start-up when\n\
         -- events.db.create_schema is true.\n\
         --\n\
         -- events: one row per event id; partitions are one minute of one\n\
         -- shard, so a replayed event lands on its own row again (idempotent)\n\
         -- and a partition holds at most a minute of one core's events.\n\
         -- Rows expire after events.db.ttl_days; TWCS drops whole windows.\n\
         -- campaign_spend: spend per campaign and UTC day (counters).\n\
         -- spend_applied: which events' spend is in campaign_spend, so a\n\
         -- replay does not add it twice.\n\n",
    );
    for st in schema(cfg) {
        s.push_str(&st);
        s.push_str(";\n\n");
    }
    s.pop();
    s
}

/// A connected session with its prepared statements.
#[derive(Debug)]
pub struct Db {
    session: Session,
    insert: PreparedStatement,
    guard: PreparedStatement,
    counted: PreparedStatement,
    add_spend: PreparedStatement,
    spend_stripes: Vec<tokio::sync::Mutex<()>>,
    retries: u32,
    backoff: Duration,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Bid => "bid",
        Kind::Win => "win",
        Kind::Bill => "bill",
        Kind::Loss => "loss",
        Kind::Impression => "impression",
        Kind::Click => "click",
    }
}

/// Partition of an event: (minute, shard).
pub fn partition(ev: &Event) -> (i32, i16) {
    (ev.ts_micros.div_euclid(60_000_000) as i32, ev.shard as i16)
}

fn day(ev: &Event) -> CqlDate {
    let days = ev.ts_micros.div_euclid(86_400_000_000);
    CqlDate(((1i64 << 31) + days) as u32)
}

type Row<'a> = (
    i32,
    i16,
    uuid::Uuid,
    &'static str,
    CqlTimestamp,
    &'a str,
    &'a str,
    i64,
    &'a str,
    i64,
    i64,
    &'a str,
);

fn row(ev: &Event) -> Row<'_> {
    let (minute, shard) = partition(ev);
    (
        minute,
        shard,
        uuid::Uuid::from_u128(ev.id),
        kind_name(ev.kind),
        CqlTimestamp(ev.ts_micros.div_euclid(1000)),
        &ev.auction_id,
        &ev.imp_id,
        ev.campaign_id as i64,
        &ev.creative_id,
        ev.price_micros,
        ev.spend_micros,
        &ev.currency,
    )
}

impl Db {
    /// Connects, creates the schema if configured, prepares the statements.
    pub async fn connect(cfg: &DbConfig) -> Result<Db, DbError> {
        let profile = ExecutionProfile::builder()
            .request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms)))
            .build();
        let connect = Duration::from_millis(cfg.connect_timeout_ms);
        let err = |message: String| DbError::Connect {
            nodes: cfg.nodes.clone(),
            message,
        };
        let session = tokio::time::timeout(
            connect * 2,
            SessionBuilder::new()
                .known_nodes(&cfg.nodes)
                .connection_timeout(connect)
                .default_execution_profile_handle(profile.into_handle())
                .build(),
        )
        .await
        .map_err(|_| err("timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
        if cfg.create_schema {
            for st in schema(cfg) {
                session
                    .query_unpaged(st, &[])
                    .await
                    .map_err(|e| DbError::Schema(e.to_string()))?;
            }
            session
                .await_schema_agreement()
                .await
                .map_err(|e| DbError::Schema(e.to_string()))?;
        }
        let ks = &cfg.keyspace;
        let prep = |q: String| {
            let session = &session;
            async move {
                session
                    .prepare(q)
                    .await
                    .map_err(|e| DbError::Prepare(e.to_string()))
            }
        };
        let insert = prep(format!(
            "INSERT INTO {ks}.events (minute, shard, id, kind, ts, auction_id, imp_id, \
             campaign_id, creative_id, price_micros, spend_micros, currency) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .await?;
        let guard = prep(format!(
            "INSERT INTO {ks}.spend_applied (campaign_id, day, id, spend_micros, counted) \
             VALUES (?, ?, ?, ?, false) IF NOT EXISTS"
        ))
        .await?;
        let counted = prep(format!(
            "UPDATE {ks}.spend_applied SET counted = true \
             WHERE campaign_id = ? AND day = ? AND id = ?"
        ))
        .await?;
        let add_spend = prep(format!(
            "UPDATE {ks}.campaign_spend SET spend_micros = spend_micros + ? \
             WHERE campaign_id = ? AND day = ?"
        ))
        .await?;
        Ok(Db {
            session,
            insert,
            guard,
            counted,
            add_spend,
            spend_stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            retries: cfg.retries,
            backoff: Duration::from_millis(cfg.retry_backoff_ms),
        })
    }

    /// True when the database answers.
    pub async fn probe(&self) -> bool {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .is_ok()
    }

    /// One attempt at the event rows: one unlogged batch (the events should
    /// share a partition).
    async fn write_events_once(&self, evs: &[Event]) -> Result<(), DbError> {
        let w = |e: scylla::errors::ExecutionError| DbError::Write(e.to_string());
        if let [one] = evs {
            self.session
                .execute_unpaged(&self.insert, row(one))
                .await
                .map_err(w)?;
        } else {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in evs {
                batch.append_statement(self.insert.clone());
            }
            let values: Vec<Row<'_>> = evs.iter().map(row).collect();
            self.session.batch(&batch, values).await.map_err(w)?;
        }
        Ok(())
    }

    /// One attempt at the spend of `evs` (those without spend are skipped):
    /// one claim batch, one increment and one marking batch per campaign,
    /// day and [`SPEND_GROUP`] events, up to `concurrency` groups at once.
    async fn add_spend(&self, evs: &[Event], concurrency: usize) -> Result<(), DbError> {
        let mut groups: Vec<Vec<&Event>> = Vec::new();
        for ev in evs.iter().filter(|e| e.spend_micros > 0) {
            let key = (ev.campaign_id, day(ev).0);
            match groups
                .iter_mut()
                .find(|g| g.len() < SPEND_GROUP && (g[0].campaign_id, day(g[0]).0) == key)
            {
                Some(g) => g.push(ev),
                None => groups.push(vec![ev]),
            }
        }
        let writes: Vec<_> = groups.iter().map(|g| self.add_spend_once(g)).collect();
        bounded(writes, concurrency).await
    }

    /// `f` until it succeeds or has failed `retries + 1` times, with
    /// doubling back-off.
    async fn retrying<'a, F, Fut>(&self, stats: &DbStats, f: F) -> Result<(), DbError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), DbError>> + 'a,
    {
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            match f().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    stats.write_errors.fetch_add(1, Relaxed);
                    if attempt >= self.retries {
                        return Err(e);
                    }
                    attempt += 1;
                    stats.retries.fetch_add(1, Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
            }
        }
    }

    /// Writes the event rows of `evs` (retrying), not their spend.
    pub async fn write_events(&self, evs: &[Event], stats: &DbStats) -> Result<(), DbError> {
        self.retrying(stats, || self.write_events_once(evs)).await?;
        stats.stored.fetch_add(evs.len() as u64, Relaxed);
        Ok(())
    }

    /// Adds the spend of `evs` to the counters (retrying), each charge once.
    pub async fn write_spend(&self, evs: &[Event], stats: &DbStats) -> Result<(), DbError> {
        self.retrying(stats, || self.add_spend(evs, SPEND_CONCURRENCY))
            .await
    }

    /// Adds the spend of `evs` (one campaign, one day) unless an earlier
    /// write added it: claims them all in one conditional batch (one Paxos
    /// round on the claims' partition); if any was claimed before (a
    /// replay), claims them one by one and adds only those not counted.
    async fn add_spend_once(&self, evs: &[&Event]) -> Result<(), DbError> {
        let w = |e: scylla::errors::ExecutionError| DbError::Write(e.to_string());
        let key = |ev: &Event| (ev.campaign_id as i64, day(ev));
        // One writer at a time per campaign and day (striped): concurrent
        // Paxos rounds and counter updates on one partition contend, time
        // out, and a timed-out increment may still have been applied.
        let stripe = (evs[0].campaign_id ^ u64::from(day(evs[0]).0).rotate_left(17))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            >> 58;
        let _turn = self.spend_stripes[stripe as usize].lock().await;
        let claim = |ev: &Event| {
            let (c, d) = key(ev);
            (c, d, uuid::Uuid::from_u128(ev.id), ev.spend_micros)
        };
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in evs {
            batch.append_statement(self.guard.clone());
        }
        let values: Vec<_> = evs.iter().map(|e| claim(e)).collect();
        let res = self.session.batch(&batch, values).await.map_err(w)?;
        let todo: Vec<&Event> = if claim_answer(res)?.0 {
            evs.to_vec()
        } else {
            let mut todo = Vec::new();
            for ev in evs {
                let res = self
                    .session
                    .execute_unpaged(&self.guard, claim(ev))
                    .await
                    .map_err(w)?;
                let (applied, counted) = claim_answer(res)?;
                if applied || !counted {
                    todo.push(*ev);
                }
            }
            todo
        };
        let Some(first) = todo.first() else {
            return Ok(()); // All added by an earlier write.
        };
        let (campaign, d) = key(first);
        let sum: i64 = todo.iter().map(|e| e.spend_micros).sum();
        self.session
            .execute_unpaged(&self.add_spend, (Counter(sum), campaign, d))
            .await
            .map_err(w)?;
        let mut marks = Batch::new(BatchType::Unlogged);
        for _ in &todo {
            marks.append_statement(self.counted.clone());
        }
        let values: Vec<_> = todo
            .iter()
            .map(|e| (campaign, d, uuid::Uuid::from_u128(e.id)))
            .collect();
        self.session.batch(&marks, values).await.map_err(w)?;
        Ok(())
    }
}

/// From the answer to a claim (`INSERT ... IF NOT EXISTS`, alone or in a
/// conditional batch): whether it applied, and, when it did not, whether
/// the existing claim is marked counted.
fn claim_answer(res: scylla::response::query_result::QueryResult) -> Result<(bool, bool), DbError> {
    let bad = |m: String| DbError::Write(format!("unexpected answer to a spend claim: {m}"));
    let rows = res.into_rows_result().map_err(|e| bad(e.to_string()))?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let row = rows
        .first_row::<scylla::value::Row>()
        .map_err(|e| bad(e.to_string()))?;
    let col = |n: &str| {
        names
            .iter()
            .position(|x| x == n)
            .and_then(|i| row.columns.get(i).cloned().flatten())
    };
    let applied = matches!(col("[applied]"), Some(CqlValue::Boolean(true)));
    let counted = matches!(col("counted"), Some(CqlValue::Boolean(true)));
    Ok((applied, counted))
}

/// Runs the futures, up to `limit` at once on the current task (they may
/// borrow; nothing is spawned); stops at the first error.
async fn bounded<F>(futs: impl IntoIterator<Item = F>, limit: usize) -> Result<(), DbError>
where
    F: std::future::Future<Output = Result<(), DbError>>,
{
    let mut pending = futs.into_iter();
    let mut slots: Vec<std::pin::Pin<Box<F>>> = Vec::new();
    loop {
        while slots.len() < limit.max(1) {
            match pending.next() {
                Some(f) => slots.push(Box::pin(f)),
                None => break,
            }
        }
        if slots.is_empty() {
            return Ok(());
        }
        let (res, i) = std::future::poll_fn(|cx| {
            for (i, f) in slots.iter_mut().enumerate() {
                if let std::task::Poll::Ready(r) = f.as_mut().poll(cx) {
                    return std::task::Poll::Ready((r, i));
                }
            }
            std::task::Poll::Pending
        })
        .await;
        drop(slots.swap_remove(i));
        res?;
    }
}

/// Splits events into runs of one partition, at most `max` long, in order.
pub fn chunks(mut evs: Vec<Event>, max: usize) -> Vec<Vec<Event>> {
    evs.sort_by_key(partition);
    let mut out: Vec<Vec<Event>> = Vec::new();
    for ev in evs {
        match out.last_mut() {
            Some(last) if last.len() < max && partition(&last[0]) == partition(&ev) => {
                last.push(ev)
            }
            _ => out.push(vec![ev]),
        }
    }
    out
}

/// What one replayed segment held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Events stored.
    pub events: u64,
    /// Bytes of a torn tail after the last whole event.
    pub torn_bytes: usize,
}

/// Why a segment was not replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds a frame that is not an event.
    #[error("{path}: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: crate::events::EventError,
    },
    /// The database refused a batch after every retry.
    #[error("{path}: {source}")]
    Db {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: DbError,
    },
}

/// Stores every whole event of the spool file at `path`, up to
/// `concurrency` batches at a time. The file is left as it is.
pub async fn replay_file(
    db: &Db,
    path: &Path,
    batch_size: usize,
    concurrency: usize,
    stats: &DbStats,
) -> Result<Replayed, ReplayError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| ReplayError::Read {
            path: path.into(),
            source,
        })?;
    let (evs, torn_bytes) = read_spool(&bytes).map_err(|source| ReplayError::Decode {
        path: path.into(),
        source,
    })?;
    let n = evs.len() as u64;
    let spend: Vec<Event> = evs.iter().filter(|e| e.spend_micros > 0).cloned().collect();
    let db_err = |source| ReplayError::Db {
        path: path.into(),
        source,
    };
    // Rows first, then the spend of the whole file in rounds of one claim
    // batch per campaign and day (far fewer conditional writes than per
    // batch of rows).
    let writes: Vec<_> = chunks(evs, batch_size)
        .into_iter()
        .map(|chunk| async move { db.write_events(&chunk, stats).await })
        .collect();
    bounded(writes, concurrency).await.map_err(db_err)?;
    db.retrying(stats, || db.add_spend(&spend, concurrency))
        .await
        .map_err(db_err)?;
    stats.replayed.fetch_add(n, Relaxed);
    Ok(Replayed {
        events: n,
        torn_bytes,
    })
}

/// Starts the database writer thread.
pub(crate) fn spawn(
    cfg: DbConfig,
    queues: Vec<Receiver<Event>>,
    spool: Vec<SyncSender<Event>>,
    ctls: Vec<Arc<WriterCtl>>,
    dir: PathBuf,
    stats: Arc<DbStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("db-writer".into())
        .spawn(move || {
            let w = Writer {
                cfg,
                spool,
                ctls,
                dir,
                stats,
                down: AtomicBool::new(true),
            };
            rt.block_on(w.run(queues));
        })
}

struct Writer {
    cfg: DbConfig,
    spool: Vec<SyncSender<Event>>,
    ctls: Vec<Arc<WriterCtl>>,
    dir: PathBuf,
    stats: Arc<DbStats>,
    down: AtomicBool,
}

/// A connected database and the spend task that goes with it.
struct Live {
    db: Arc<Db>,
    spend: tokio::sync::mpsc::Sender<Event>,
    spend_task: tokio::task::JoinHandle<()>,
}

/// Most charges in one claim batch (Cassandra refuses batches over 50 KB).
const SPEND_GROUP: usize = 64;

/// Most claim groups written at once by a spend round.
const SPEND_CONCURRENCY: usize = 16;

/// How long spend waits to gather more charges before a round of claims.
const SPEND_ROUND: Duration = Duration::from_millis(20);

/// Charges waiting for the spend task before they are spilled instead.
const SPEND_BACKLOG: usize = 65_536;

/// How long an idle database writer sleeps between polls of the queues.
const POLL: Duration = Duration::from_millis(1);

impl Writer {
    fn set_down(&self, down: bool) {
        let was = self.down.swap(down, Relaxed);
        self.stats.up.store(u64::from(!down), Relaxed);
        if was != down {
            if down {
                tracing::warn!("event database down: events go to the spool until it is back");
            } else {
                tracing::info!("event database up");
            }
        }
    }

    /// Sends events to their shards' spool writers (the writer thread may
    /// wait here; shards never do).
    fn spill(&self, evs: Vec<Event>, counter: &AtomicU64) {
        counter.fetch_add(evs.len() as u64, Relaxed);
        for ev in evs {
            let tx = &self.spool[usize::from(ev.shard) % self.spool.len()];
            let res = match tx.try_send(ev) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(ev)) => tx.send(ev).map_err(|_| ()),
                Err(TrySendError::Disconnected(_)) => Err(()),
            };
            if res.is_err() {
                self.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Connects and starts the spend task that goes with the connection.
    async fn connect(self: &Arc<Self>) -> Option<Live> {
        match Db::connect(&self.cfg).await {
            Ok(db) => {
                self.set_down(false);
                let db = Arc::new(db);
                let (spend, rx) = tokio::sync::mpsc::channel(SPEND_BACKLOG);
                let spend_task = tokio::task::spawn(self.clone().spend_loop(db.clone(), rx));
                Some(Live {
                    db,
                    spend,
                    spend_task,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "event database unavailable");
                self.set_down(true);
                None
            }
        }
    }

    /// Adds spend in rounds: waits [`SPEND_ROUND`] after a charge arrives so
    /// that one claim batch per campaign and day carries many charges.
    /// Charges whose round fails are spilled with their events (the replay
    /// rewrites the rows and adds what is not counted).
    async fn spend_loop(self: Arc<Self>, db: Arc<Db>, mut rx: tokio::sync::mpsc::Receiver<Event>) {
        while let Some(first) = rx.recv().await {
            tokio::time::sleep(SPEND_ROUND).await;
            let mut round = vec![first];
            while round.len() < SPEND_BACKLOG {
                match rx.try_recv() {
                    Ok(ev) => round.push(ev),
                    Err(_) => break,
                }
            }
            if self.down.load(Relaxed) {
                self.spill(round, &self.stats.spilled_down);
            } else if db.write_spend(&round, &self.stats).await.is_err() {
                self.set_down(true);
                self.spill(round, &self.stats.spilled_failed);
            }
        }
    }

    async fn run(self, queues: Vec<Receiver<Event>>) {
        let this = Arc::new(self);
        let mut live = this.connect().await;
        let limit = this.cfg.max_in_flight;
        let sem = Arc::new(tokio::sync::Semaphore::new(limit));
        let probe_every = Duration::from_millis(this.cfg.probe_interval_ms);
        let mut next_probe = tokio::time::Instant::now() + probe_every;
        let mut open = vec![true; queues.len()];
        let mut replay: Option<tokio::task::JoinHandle<()>> = None;
        let batch = this.cfg.batch_size;
        let linger = Duration::from_millis(this.cfg.linger_ms);
        // Per shard: events gathered, and when the oldest arrived. A shard's
        // events go out once a batch is full or the oldest has waited
        // `linger_ms` (fewer, fuller batches: less CPU here and there).
        let mut bufs: Vec<Vec<Event>> = queues.iter().map(|_| Vec::new()).collect();
        let mut since = vec![tokio::time::Instant::now(); queues.len()];
        loop {
            let mut got = 0;
            for (i, rx) in queues.iter().enumerate() {
                if !open[i] {
                    continue;
                }
                while bufs[i].len() < batch * 4 {
                    match rx.try_recv() {
                        Ok(ev) => {
                            if bufs[i].is_empty() {
                                since[i] = tokio::time::Instant::now();
                            }
                            bufs[i].push(ev);
                            got += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open[i] = false;
                            break;
                        }
                    }
                }
                let due = bufs[i].len() >= batch || since[i].elapsed() >= linger || !open[i];
                if bufs[i].is_empty() || !due {
                    continue;
                }
                let evs = std::mem::take(&mut bufs[i]);
                match &live {
                    Some(l) if !this.down.load(Relaxed) => {
                        for chunk in chunks(evs, batch) {
                            let Ok(permit) = sem.clone().acquire_owned().await else {
                                return;
                            };
                            let (d, w, spend_tx) = (l.db.clone(), this.clone(), l.spend.clone());
                            w.stats.in_flight.fetch_add(1, Relaxed);
                            tokio::task::spawn(async move {
                                if d.write_events(&chunk, &w.stats).await.is_err() {
                                    w.set_down(true);
                                    w.spill(chunk, &w.stats.spilled_failed);
                                } else {
                                    for ev in chunk.into_iter().filter(|e| e.spend_micros > 0) {
                                        if let Err(e) = spend_tx.try_send(ev) {
                                            let ev = match e {
                                                tokio::sync::mpsc::error::TrySendError::Full(
                                                    ev,
                                                )
                                                | tokio::sync::mpsc::error::TrySendError::Closed(
                                                    ev,
                                                ) => ev,
                                            };
                                            w.spill(vec![ev], &w.stats.spilled_failed);
                                        }
                                    }
                                }
                                w.stats.in_flight.fetch_sub(1, Relaxed);
                                drop(permit);
                            });
                        }
                    }
                    _ => this.spill(evs, &this.stats.spilled_down),
                }
            }
            if open.iter().all(|o| !o) {
                break;
            }
            if tokio::time::Instant::now() >= next_probe {
                next_probe = tokio::time::Instant::now() + probe_every;
                match &live {
                    None => live = this.connect().await,
                    Some(l) if this.down.load(Relaxed) => {
                        if l.db.probe().await {
                            this.set_down(false);
                        }
                    }
                    Some(_) => {}
                }
                if let Some(l) = &live {
                    if !this.down.load(Relaxed) && replay.as_ref().is_none_or(|h| h.is_finished()) {
                        let (d, w) = (l.db.clone(), this.clone());
                        replay = Some(tokio::task::spawn(async move { w.replay(&d).await }));
                    }
                }
            }
            if got == 0 {
                tokio::time::sleep(POLL).await;
            }
        }
        // Stopping: every batch in flight finishes (stored or spilled), then
        // the spend rounds it queued.
        let _ = sem.acquire_many(limit as u32).await;
        if let Some(l) = live {
            drop(l.spend);
            let _ = l.spend_task.await;
        }
        if let Some(h) = replay {
            // A segment cut off mid-replay stays on disk and is replayed in
            // full next time; rows already written are simply rewritten.
            h.abort();
            let _ = h.await;
        }
    }

    /// Seals the spool writers' open segments and stores every sealed one.
    async fn replay(&self, db: &Db) {
        for c in &self.ctls {
            c.rotate.store(true, Relaxed);
        }
        let segs = match list_segments(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot list the spool");
                return;
            }
        };
        for seg in segs {
            let active = self
                .ctls
                .get(seg.shard)
                .map_or(u64::MAX, |c| c.active_seq.load(Acquire));
            if seg.seq >= active {
                continue; // Still being written.
            }
            let conc = (self.cfg.max_in_flight / 2).max(1);
            match replay_file(db, &seg.path, self.cfg.batch_size, conc, &self.stats).await {
                Ok(r) => {
                    self.stats.replayed_segments.fetch_add(1, Relaxed);
                    let done = if r.torn_bytes > 0 {
                        tracing::warn!(path = %seg.path.display(), events = r.events, torn_bytes = r.torn_bytes, "replayed a segment with a torn tail; kept as .torn");
                        std::fs::rename(&seg.path, seg.path.with_extension("spool.torn"))
                    } else {
                        tracing::info!(path = %seg.path.display(), events = r.events, "replayed spool segment");
                        std::fs::remove_file(&seg.path)
                    };
                    if let Err(e) = done {
                        tracing::error!(path = %seg.path.display(), error = %e, "cannot remove a replayed segment");
                        self.stats.replay_errors.fetch_add(1, Relaxed);
                        return;
                    }
                }
                Err(ReplayError::Db { source, .. }) => {
                    tracing::warn!(path = %seg.path.display(), error = %source, "replay stopped");
                    self.set_down(true);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool segment unreadable; kept as .bad");
                    self.stats.replay_errors.fetch_add(1, Relaxed);
                    let _ = std::fs::rename(&seg.path, seg.path.with_extension("spool.bad"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let file = include_str!("../deploy/cql/schema.cql");
        assert_eq!(
            file,
            schema_script(&DbConfig::default()),
            "regenerate with `adshard cql-schema > deploy/cql/schema.cql`"
        );
    }
}
