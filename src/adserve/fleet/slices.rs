//! The caps the fleet thread publishes to the shards: per campaign and
//! shard, the most the shard's own spend may reach, under a lease.

use crate::index::Index;
use std::collections::HashMap;

use super::sync::Share;

/// Per campaign and shard: the most the shard's own spend may reach.
#[derive(Debug, Default)]
pub struct Slices {
    /// Index version the caps are laid out for.
    pub version: u64,
    /// UTC day (days since the epoch) the daily caps are for.
    pub day: u64,
    /// Unix microseconds when the caps lapse: before this node's rows in
    /// the database can have expired (after that, peers may take up what
    /// they reserved). `i64::MAX` while the database cannot be reached.
    pub until: i64,
    shards: usize,
    /// `[position * shards + shard]`: (cap today, cap in all), micro-USD.
    caps: Vec<(i64, i64)>,
    /// Campaign id -> position, for a shard already on a newer index.
    pos: HashMap<u64, u32>,
}

impl Slices {
    /// Caps for every campaign of `ix` on UTC day `day`: each shard's spend
    /// now (`local[shard]`, by campaign id) plus its share of the campaign.
    pub(super) fn build(
        ix: &Index,
        day: u64,
        until: i64,
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
            until,
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
    /// (`id` when the shard follows another version) at `now`. None: no cap
    /// is known (a campaign the last sync did not see, a new day, or caps
    /// whose lease ran out): do not spend.
    pub fn cap(
        &self,
        version: u64,
        pos: usize,
        id: u64,
        shard: u16,
        now: crate::adserve::Now,
    ) -> Option<(i64, i64)> {
        if now.day() != self.day || now.micros >= self.until {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_version_or_the_id_and_lapse_at_midnight_or_their_lease() {
        use crate::adserve::Now;
        let day = |d: u64| Now::at(d * 86400 + 60);
        let s = Slices {
            version: 7,
            day: 100,
            until: day(100).micros + 1_000_000,
            shards: 2,
            caps: vec![(1, 2), (3, 4), (5, 6), (7, 8)],
            pos: [(11, 0), (22, 1)].into_iter().collect(),
        };
        assert_eq!(s.cap(7, 1, 22, 1, day(100)), Some((7, 8)));
        assert_eq!(
            s.cap(8, 0, 22, 0, day(100)),
            Some((5, 6)),
            "by id on another version"
        );
        assert_eq!(
            s.cap(8, 0, 33, 0, day(100)),
            None,
            "a campaign the sync has not seen"
        );
        assert_eq!(s.cap(7, 0, 11, 0, day(101)), None, "a new day");
        assert_eq!(
            s.cap(7, 0, 11, 0, Now::at(100 * 86400 + 61)),
            None,
            "the lease ran out: the database may have let the claim go"
        );
    }
}
