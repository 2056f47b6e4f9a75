//! Hourly rollups of events per campaign and creative, so a report over
//! days never scans raw events. Each writer writes the absolute figures it
//! counted, under its own source: `live:<node>:<boot>` for the events this
//! process wrote as they came (rewritten as they grow), `seg:<node>:<file>`
//! for a replayed spool segment (its whole content, so replaying it again
//! writes the same row). A report sums the sources. An event is counted by
//! exactly one source: events that are also spooled (the durable ones:
//! every notice but losses) only by the replay of their segment,
//! the others by the live writer when their write succeeded (when it fails
//! they are spilled, and their segment counts them).

use super::{Db, DbError};
use crate::events::counts::{Counts, Key};
use crate::events::Event;
use futures::FutureExt;
use scylla::statement::prepared::PreparedStatement;
use std::collections::{HashMap, HashSet};

/// Partitions per day (`campaign_id % 16`).
pub const BUCKETS: i16 = 16;

/// Counts kept by one source.
#[derive(Debug, Default)]
pub struct Acc {
    rows: HashMap<Key, Counts>,
    dirty: HashSet<Key>,
}

impl Acc {
    /// Counts an event (test traffic counts nothing).
    pub fn count(&mut self, ev: &Event) {
        let Some(key) = Key::of(ev) else {
            return;
        };
        self.rows.entry(key.clone()).or_default().count(ev);
        self.dirty.insert(key);
    }

    /// The rows changed since the last call, with their whole figures.
    pub fn take_dirty(&mut self) -> Vec<(Key, Counts)> {
        let keys: Vec<Key> = self.dirty.drain().collect();
        keys.into_iter()
            .filter_map(|k| self.rows.get(&k).map(|c| (k, *c)))
            .collect()
    }

    /// Marks rows to be written again (their write failed).
    pub fn redo(&mut self, keys: impl IntoIterator<Item = Key>) {
        self.dirty.extend(keys);
    }

    /// Every row.
    pub fn all(&self) -> Vec<(Key, Counts)> {
        self.rows.iter().map(|(k, c)| (k.clone(), *c)).collect()
    }
}

/// The rollup statements of a keyspace.
#[derive(Debug)]
pub struct Statements {
    put: PreparedStatement,
    get: PreparedStatement,
    get_one: PreparedStatement,
}

/// campaign, hour, creative, bids, wins, impressions, clicks, invalid
/// clicks, spend, clearing.
type RollupRow = (i64, i16, String, i64, i64, i64, i64, i64, i64, i64);

impl Db {
    /// Prepares the rollup statements for keyspace `ks`.
    pub async fn rollup_statements(&self, ks: &str) -> Result<Statements, DbError> {
        let prep = |q: String| async move {
            self.session
                .prepare(q)
                .await
                .map_err(|e| DbError::Prepare(e.to_string()))
        };
        Ok(Statements {
            put: prep(format!(
                "INSERT INTO {ks}.report_hourly (day, bucket, campaign_id, hour, creative_id, source, \
                 bids, wins, impressions, clicks, invalid_clicks, spend_micros, clearing_micros) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            get: prep(format!(
                "SELECT campaign_id, hour, creative_id, bids, wins, impressions, clicks, \
                 invalid_clicks, spend_micros, clearing_micros FROM {ks}.report_hourly \
                 WHERE day = ? AND bucket = ?"
            ))
            .await?,
            get_one: prep(format!(
                "SELECT campaign_id, hour, creative_id, bids, wins, impressions, clicks, \
                 invalid_clicks, spend_micros, clearing_micros FROM {ks}.report_hourly \
                 WHERE day = ? AND bucket = ? AND campaign_id = ?"
            ))
            .await?,
        })
    }

    /// Writes `source`'s figures for `rows` (absolute: a rewrite is a no-op).
    pub async fn write_rollups(
        &self,
        st: &Statements,
        source: &str,
        rows: &[(Key, Counts)],
    ) -> Result<(), DbError> {
        let writes = rows.iter().map(|(k, c)| {
            let day = (k.hour / 24) as i32;
            let values = (
                day,
                (k.campaign % BUCKETS as u64) as i16,
                k.campaign as i64,
                (k.hour % 24) as i16,
                k.creative.as_str(),
                source,
                c.bids as i64,
                c.wins as i64,
                c.impressions as i64,
                c.clicks as i64,
                c.invalid_clicks as i64,
                c.spend_micros,
                c.clearing_micros,
            );
            async move {
                self.session
                    .execute_unpaged(&st.put, values)
                    .await
                    .map(|_| ())
                    .map_err(|e| DbError::Write(e.to_string()))
            }
        });
        super::client::bounded(writes.collect::<Vec<_>>(), 32).await
    }

    /// Every source's figures summed by key, for hours `from..to`, of one
    /// campaign or all.
    pub async fn read_rollups(
        &self,
        st: &Statements,
        from: u64,
        to: u64,
        campaign: Option<u64>,
    ) -> Result<HashMap<Key, Counts>, DbError> {
        let mut reads = Vec::new();
        for day in from / 24..=(to.saturating_sub(1)) / 24 {
            match campaign {
                Some(c) => reads.push((
                    day,
                    self.rows::<RollupRow>(
                        &st.get_one,
                        (day as i32, (c % BUCKETS as u64) as i16, c as i64),
                    )
                    .boxed(),
                )),
                None => {
                    for b in 0..BUCKETS {
                        reads.push((
                            day,
                            self.rows::<RollupRow>(&st.get, (day as i32, b)).boxed(),
                        ));
                    }
                }
            }
        }
        let parts = futures::future::try_join_all(
            reads
                .into_iter()
                .map(|(day, f)| async move { f.await.map(|rows| (day, rows)) }),
        )
        .await?;
        let mut out: HashMap<Key, Counts> = HashMap::new();
        for (day, rows) in parts {
            for (c, h, cr, bids, wins, imps, clicks, inv, spend, clearing) in rows {
                let hour = day * 24 + h.max(0) as u64;
                if !(from..to).contains(&hour) {
                    continue;
                }
                let k = Key {
                    hour,
                    campaign: c as u64,
                    creative: cr,
                };
                out.entry(k).or_default().add(&Counts {
                    bids: bids as u64,
                    wins: wins as u64,
                    impressions: imps as u64,
                    clicks: clicks as u64,
                    invalid_clicks: inv as u64,
                    spend_micros: spend,
                    clearing_micros: clearing,
                    ivt_requests: 0,
                });
            }
        }
        Ok(out)
    }
}
