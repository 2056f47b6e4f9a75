//! A connected CQL session with its prepared statements: event rows,
//! spend claims and counters, retries with back-off, bounded concurrency.

use super::{day, partition, schema, DbError, DbStats};
use crate::config::DbConfig;
use crate::events::record::Event;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{Counter, CqlTimestamp, CqlValue};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Most charges in one claim batch (Cassandra refuses batches over 50 KB).
pub(crate) const SPEND_GROUP: usize = 64;

/// Most claim groups written at once by a spend round.
pub(crate) const SPEND_CONCURRENCY: usize = 16;

/// A connected session with its prepared statements.
#[derive(Debug)]
pub struct Db {
    pub(super) session: Session,
    insert: PreparedStatement,
    guard: PreparedStatement,
    counted: PreparedStatement,
    already: PreparedStatement,
    add_spend: PreparedStatement,
    add_day: PreparedStatement,
    add_total: PreparedStatement,
    pub(super) heartbeat: PreparedStatement,
    pub(super) nodes: PreparedStatement,
    pub(super) day_spend: PreparedStatement,
    pub(super) total_spend: PreparedStatement,
    pub(super) put_cap: PreparedStatement,
    pub(super) caps: PreparedStatement,
    pub(super) put_freq: PreparedStatement,
    pub(super) get_freq: PreparedStatement,
    /// Whose frequency rows this session writes (see [`Db::owned_by`]).
    pub(super) owner: Option<String>,
    spend_stripes: Vec<tokio::sync::Mutex<()>>,
    retries: u32,
    backoff: Duration,
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
    &'a str,
    bool,
);

fn row(ev: &Event) -> Row<'_> {
    let (minute, shard) = partition(ev);
    (
        minute,
        shard,
        uuid::Uuid::from_u128(ev.id),
        ev.kind.label(),
        CqlTimestamp(ev.ts_micros.div_euclid(1000)),
        &ev.auction_id,
        &ev.imp_id,
        ev.campaign_id as i64,
        &ev.creative_id,
        ev.price_micros,
        ev.spend_micros,
        &ev.currency,
        &ev.bid_id,
        ev.test,
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
            // DDL waits for the cluster to agree on the schema: seconds on a
            // busy node (two processes may create the same tables at once).
            let ddl_timeout =
                Duration::from_millis(cfg.request_timeout_ms * 5).max(Duration::from_secs(10));
            for st in schema(cfg) {
                let mut st = scylla::statement::Statement::new(st);
                st.set_request_timeout(Some(ddl_timeout));
                session
                    .query_unpaged(st, &[])
                    .await
                    .map_err(|e| DbError::Schema(e.to_string()))?;
            }
            // Keyspaces made before events carried a bid id or the test
            // flag: add the columns. Refused (harmlessly) where they exist.
            for col in ["bid_id text", "test boolean"] {
                let mut st = scylla::statement::Statement::new(format!(
                    "ALTER TABLE {}.events ADD {col}",
                    cfg.keyspace
                ));
                st.set_request_timeout(Some(ddl_timeout));
                let _ = session.query_unpaged(st, &[]).await;
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
             campaign_id, creative_id, price_micros, spend_micros, currency, bid_id, test) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        let already = prep(format!(
            "SELECT id FROM {ks}.spend_applied \
             WHERE campaign_id = ? AND day = ? AND id IN ? AND counted = true ALLOW FILTERING"
        ))
        .await?;
        let add_spend = prep(format!(
            "UPDATE {ks}.campaign_spend SET spend_micros = spend_micros + ? \
             WHERE campaign_id = ? AND day = ?"
        ))
        .await?;
        let add_day = prep(format!(
            "UPDATE {ks}.spend_by_day SET spend_micros = spend_micros + ? \
             WHERE day = ? AND bucket = ? AND campaign_id = ?"
        ))
        .await?;
        let add_total = prep(format!(
            "UPDATE {ks}.spend_total SET spend_micros = spend_micros + ? \
             WHERE bucket = ? AND campaign_id = ?"
        ))
        .await?;
        let heartbeat = prep(format!(
            "INSERT INTO {ks}.nodes (node, shards, seen) VALUES (?, ?, ?) USING TTL ?"
        ))
        .await?;
        let nodes = prep(format!("SELECT node, seen FROM {ks}.nodes")).await?;
        let day_spend = prep(format!(
            "SELECT campaign_id, spend_micros FROM {ks}.spend_by_day WHERE day = ? AND bucket = ?"
        ))
        .await?;
        let total_spend = prep(format!(
            "SELECT campaign_id, spend_micros FROM {ks}.spend_total WHERE bucket = ?"
        ))
        .await?;
        let put_cap = prep(format!(
            "INSERT INTO {ks}.fleet_caps (day, bucket, campaign_id, node, today, cap_today, \
             total, cap_total) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        ))
        .await?;
        let caps = prep(format!(
            "SELECT campaign_id, node, today, cap_today, total, cap_total FROM {ks}.fleet_caps \
             WHERE day = ? AND bucket = ?"
        ))
        .await?;
        let put_freq = prep(format!(
            "INSERT INTO {ks}.frequency (owner, bucket, key, id, campaign_id, shard, ts) \
             VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        ))
        .await?;
        let get_freq = prep(format!(
            "SELECT key, id, campaign_id, shard, ts FROM {ks}.frequency \
             WHERE owner = ? AND bucket = ?"
        ))
        .await?;
        Ok(Db {
            session,
            insert,
            guard,
            counted,
            already,
            add_spend,
            add_day,
            add_total,
            heartbeat,
            nodes,
            day_spend,
            total_spend,
            put_cap,
            caps,
            put_freq,
            get_freq,
            owner: None,
            spend_stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            retries: cfg.retries,
            backoff: Duration::from_millis(cfg.retry_backoff_ms),
        })
    }

    /// Writes, beside each bid that counted a frequency cap, a row in
    /// `frequency` under `owner` (the spool directory's node id), so the
    /// counts survive a restart. Without an owner no such rows are written.
    pub fn owned_by(mut self, owner: Option<String>) -> Db {
        self.owner = owner;
        self
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
    pub(crate) async fn write_events_once(&self, evs: &[Event]) -> Result<(), DbError> {
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
        self.write_capped(evs).await
    }

    /// One attempt at the spend of `evs` (those without spend are skipped):
    /// one claim batch, one increment and one marking batch per campaign,
    /// day and [`SPEND_GROUP`] events, up to `concurrency` groups at once.
    pub(crate) async fn add_spend(&self, evs: &[Event], concurrency: usize) -> Result<(), DbError> {
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
    pub(crate) async fn retrying<'a, F, Fut>(&self, stats: &DbStats, f: F) -> Result<(), DbError>
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
    pub(crate) async fn add_spend_once(&self, evs: &[&Event]) -> Result<(), DbError> {
        let w = |e: scylla::errors::ExecutionError| DbError::Write(e.to_string());
        let key = |ev: &Event| (ev.campaign_id as i64, day(ev));
        // One writer at a time per campaign and day (striped): concurrent
        // Paxos rounds and counter updates on one partition contend, time
        // out, and a timed-out increment may still have been applied.
        let stripe = (evs[0].campaign_id ^ u64::from(day(evs[0]).0).rotate_left(17))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            >> 58;
        let _turn = self.spend_stripes[stripe as usize].lock().await;
        // Charges already counted (a replay of what was stored before, e.g.
        // the durable notices every spool holds) are dropped by one plain
        // read, not one Paxos round each. A read that misses a claim just
        // made is harmless: the conditional claims below still decide.
        let (c0, d0) = key(evs[0]);
        let ids: Vec<uuid::Uuid> = evs.iter().map(|e| uuid::Uuid::from_u128(e.id)).collect();
        let done: std::collections::HashSet<u128> = self
            .session
            .execute_unpaged(&self.already, (c0, d0, ids))
            .await
            .map_err(w)?
            .into_rows_result()
            .map_err(|e| DbError::Read(e.to_string()))?
            .rows::<(uuid::Uuid,)>()
            .map_err(|e| DbError::Read(e.to_string()))?
            .filter_map(|r| r.ok().map(|(id,)| id.as_u128()))
            .collect();
        let fresh: Vec<&Event> = evs
            .iter()
            .copied()
            .filter(|e| !done.contains(&e.id))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let evs = &fresh[..];
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
        // The ledger's counter and its two rollups, in one counter batch.
        let bucket = bucket(first.campaign_id);
        let mut add = Batch::new(BatchType::Counter);
        add.append_statement(self.add_spend.clone());
        add.append_statement(self.add_day.clone());
        add.append_statement(self.add_total.clone());
        self.session
            .batch(
                &add,
                (
                    (Counter(sum), campaign, d),
                    (Counter(sum), d, bucket, campaign),
                    (Counter(sum), bucket, campaign),
                ),
            )
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

/// Rollup buckets: a day's spend of every campaign is read in this many
/// partitions.
pub const SPEND_BUCKETS: i16 = 16;

pub(super) fn bucket(campaign: u64) -> i16 {
    (campaign % SPEND_BUCKETS as u64) as i16
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
pub(crate) async fn bounded<F>(
    futs: impl IntoIterator<Item = F>,
    limit: usize,
) -> Result<(), DbError>
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
