//! The `frequency` table: each bid that counted a frequency cap, under the
//! node id of the spool directory that made it (16 partitions per owner),
//! kept (CQL TTL) for the cap's window, so that a restart counts it again.

use super::client::{bounded, Db, SPEND_CONCURRENCY};
use super::DbError;
use crate::events::record::{CappedBid, Event};
use scylla::value::CqlTimestamp;

/// Partitions of one owner's `frequency` rows.
pub(super) const FREQ_BUCKETS: u64 = 16;

impl Db {
    /// The rows of the capped bids among `evs`, when this session has an
    /// owner: their own partitions, so one write each (idempotent: a retry
    /// or replay writes the same row).
    pub(super) async fn write_capped(&self, evs: &[Event]) -> Result<(), DbError> {
        let Some(owner) = self.owner.as_deref() else {
            return Ok(());
        };
        let rows: Vec<_> = evs
            .iter()
            .filter(|e| e.freq_key != 0)
            .map(|e| {
                (
                    owner,
                    (e.freq_key % FREQ_BUCKETS) as i16,
                    e.freq_key as i64,
                    uuid::Uuid::from_u128(e.id),
                    e.campaign_id as i64,
                    e.shard as i16,
                    CqlTimestamp(e.ts_micros.div_euclid(1000)),
                    // Cassandra's TTL limit is 20 years.
                    e.freq_window.clamp(1, 630_720_000) as i32,
                )
            })
            .collect();
        let capped: Vec<_> = rows
            .into_iter()
            .map(|values| async move {
                self.session
                    .execute_unpaged(&self.put_freq, values)
                    .await
                    .map(|_| ())
                    .map_err(|e| DbError::Write(e.to_string()))
            })
            .collect();
        bounded(capped, SPEND_CONCURRENCY).await
    }

    /// Every bid that counted a frequency cap under `owner` whose window
    /// has not passed (rows expire with it).
    pub async fn capped_bids(&self, owner: &str) -> Result<Vec<CappedBid>, DbError> {
        let mut out = Vec::new();
        for b in 0..FREQ_BUCKETS as i16 {
            for (key, id, campaign, shard, ts) in self
                .rows::<(i64, uuid::Uuid, i64, i16, CqlTimestamp)>(&self.get_freq, (owner, b))
                .await?
            {
                out.push(CappedBid {
                    id: id.as_u128(),
                    shard: shard as u16,
                    campaign: campaign as u64,
                    key: key as u64,
                    secs: (ts.0.max(0) / 1000) as u64,
                });
            }
        }
        Ok(out)
    }
}
