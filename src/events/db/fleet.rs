//! Fleet queries: node heartbeats, the fleet's spend by day and in total,
//! and each node's spend caps (see `adserve::fleet`); and the paged row
//! reader the other readers share.

use super::client::{bucket, SPEND_BUCKETS, SPEND_GROUP};
use super::{cql_date, Db, DbError};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{Counter, CqlTimestamp};

/// Fleet queries: heartbeats and global spend (see `adserve::fleet`).
impl Db {
    /// Records `node` (with `shards` shards) as seen at `seen_ms` (Unix
    /// milliseconds); the row expires after `ttl_secs` unless renewed.
    pub async fn heartbeat(
        &self,
        node: &str,
        shards: u16,
        seen_ms: i64,
        ttl_secs: i32,
    ) -> Result<(), DbError> {
        let now = CqlTimestamp(seen_ms);
        self.session
            .execute_unpaged(&self.heartbeat, (node, i32::from(shards), now, ttl_secs))
            .await
            .map(|_| ())
            .map_err(|e| DbError::Write(e.to_string()))
    }

    /// Every heartbeat row: node id and the Unix milliseconds it was last seen.
    pub async fn nodes(&self) -> Result<Vec<(String, i64)>, DbError> {
        self.rows::<(String, CqlTimestamp)>(&self.nodes, ())
            .await
            .map(|v| v.into_iter().map(|(n, t)| (n, t.0)).collect())
    }

    /// Global spend of every campaign that has spent: micro-USD on UTC day
    /// `day` (days since the epoch) and in all.
    pub async fn global_spend(
        &self,
        day: i64,
    ) -> Result<std::collections::HashMap<u64, (i64, i64)>, DbError> {
        use futures::future::try_join_all;
        let d = cql_date(day);
        // The 32 partitions at once: the fleet's sync waits on the slowest,
        // not on their sum.
        let (days, totals) = futures::try_join!(
            try_join_all(
                (0..SPEND_BUCKETS).map(|b| self.rows::<(i64, Counter)>(&self.day_spend, (d, b)))
            ),
            try_join_all(
                (0..SPEND_BUCKETS).map(|b| self.rows::<(i64, Counter)>(&self.total_spend, (b,)))
            ),
        )?;
        let mut out = std::collections::HashMap::new();
        for (c, Counter(v)) in days.into_iter().flatten() {
            out.entry(c as u64).or_insert((0, 0)).0 = v;
        }
        for (c, Counter(v)) in totals.into_iter().flatten() {
            out.entry(c as u64).or_insert((0, 0)).1 = v;
        }
        Ok(out)
    }

    /// Publishes this node's spend and caps (micro-USD) on UTC day `day`:
    /// `(campaign, today, cap today, total, cap total)`, one unlogged batch
    /// per rollup bucket; rows expire after `ttl_secs`.
    pub async fn put_caps(
        &self,
        day: i64,
        node: &str,
        rows: &[(u64, i64, i64, i64, i64)],
        ttl_secs: i32,
    ) -> Result<(), DbError> {
        let d = cql_date(day);
        let mut batches = Vec::new();
        for b in 0..SPEND_BUCKETS {
            let part: Vec<_> = rows.iter().filter(|r| bucket(r.0) == b).collect();
            for chunk in part.chunks(SPEND_GROUP) {
                let mut batch = Batch::new(BatchType::Unlogged);
                for _ in chunk {
                    batch.append_statement(self.put_cap.clone());
                }
                let values: Vec<_> = chunk
                    .iter()
                    .map(|&&(c, t, ct, a, ca)| (d, b, c as i64, node, t, ct, a, ca, ttl_secs))
                    .collect();
                batches.push((batch, values));
            }
        }
        // Every batch at once (each is one partition's).
        futures::future::try_join_all(batches.iter().map(|(batch, values)| async move {
            self.session
                .batch(batch, values)
                .await
                .map_err(|e| DbError::Write(e.to_string()))
        }))
        .await?;
        Ok(())
    }

    /// Every node's published spend and caps on UTC day `day`:
    /// `(campaign, node, today, cap today, total, cap total)`.
    pub async fn caps(&self, day: i64) -> Result<Vec<(u64, String, i64, i64, i64, i64)>, DbError> {
        let d = cql_date(day);
        let parts = futures::future::try_join_all(
            (0..SPEND_BUCKETS)
                .map(|b| self.rows::<(i64, String, i64, i64, i64, i64)>(&self.caps, (d, b))),
        )
        .await?;
        Ok(parts
            .into_iter()
            .flatten()
            .map(|(c, n, t, ct, a, ca)| (c as u64, n, t, ct, a, ca))
            .collect())
    }

    pub(super) async fn rows<T>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<T>, DbError>
    where
        T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        use futures_lite::StreamExt;
        let r = |e: String| DbError::Read(e);
        let mut stream = self
            .session
            .execute_iter(st.clone(), values)
            .await
            .map_err(|e| r(e.to_string()))?
            .rows_stream::<T>()
            .map_err(|e| r(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(row) = stream.next().await {
            out.push(row.map_err(|e| r(e.to_string()))?);
        }
        Ok(out)
    }
}
