//! Index order and value bounds: campaigns are laid out best-first (by the
//! most each can bid), and every word of 64 positions knows the most any
//! campaign at or after it can bid. An auction visits candidates a word at
//! a time in that order and stops once the bound falls below the floor or
//! the best value found: the campaigns it skips could not have won.

use super::{BidModel, Campaign};

/// The most a campaign can bid, CPM USD, in two parts: `fixed` (a CPM
/// bid, or a CPC campaign's `max_cpm`) and `rule` (a CPC campaign without
/// `max_cpm`: expected_ctr x CPC x 1000, which the auction caps at
/// `cpc_cap_multiple` times that). Its bound is `max(fixed, multiple x rule)`.
pub fn parts(c: &Campaign) -> (f64, f64) {
    let b = &c.bid;
    match (b.model, b.max_cpm) {
        (BidModel::Cpm, m) => (m.map_or(b.amount, |m| b.amount.min(m)), 0.0),
        (BidModel::Cpc, Some(m)) => (m, 0.0),
        (BidModel::Cpc, None) => (0.0, b.expected_ctr * b.amount * 1000.0),
    }
}

/// The index order: for each campaign (in file order) its position, and
/// where the second region starts. Campaigns with a `fixed` bound come
/// first, best-first by it; then CPC campaigns without `max_cpm`, by their
/// rule value (their prior: the model's cap is a fixed multiple of it).
/// Equal bounds go by id (the auction breaks ties by lowest id, so a later
/// position never wins a tie). Each region is visited with its own bound.
/// Campaigns themselves stay where the file put them: moving them would
/// scatter their heap data across positions.
pub fn positions(campaigns: &[Campaign]) -> (Vec<u32>, usize) {
    let mut order: Vec<(bool, f64, u64, u32)> = campaigns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (f, r) = parts(c);
            let rule = r > 0.0 && f == 0.0;
            (rule, if rule { r } else { f }, c.id, i as u32)
        })
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut pos = vec![0u32; campaigns.len()];
    for (p, &(_, _, _, i)) in order.iter().enumerate() {
        pos[i as usize] = p as u32;
    }
    let rule_start = order.iter().take_while(|o| !o.0).count();
    (pos, rule_start)
}

/// Per word of 64 positions: the largest `fixed` and `rule` part of any
/// campaign at or after it (suffix maxima, so exact in any order).
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    fixed: Vec<f64>,
    rule: Vec<f64>,
}

impl Bounds {
    /// Bounds of campaigns whose [`parts`] are `by_pos`, in index order.
    pub fn of(by_pos: &[(f64, f64)]) -> Bounds {
        let words = by_pos.len().div_ceil(64);
        let mut b = Bounds {
            fixed: vec![0.0; words + 1],
            rule: vec![0.0; words + 1],
        };
        for w in (0..words).rev() {
            let (mut f, mut r) = (b.fixed[w + 1], b.rule[w + 1]);
            for &(cf, cr) in &by_pos[w * 64..((w + 1) * 64).min(by_pos.len())] {
                f = f.max(cf);
                r = r.max(cr);
            }
            b.fixed[w] = f;
            b.rule[w] = r;
        }
        b
    }

    /// The largest `fixed` and `rule` parts at or after word `w` (zero past
    /// the end).
    #[inline]
    pub fn parts_at(&self, w: usize) -> (f64, f64) {
        match (self.fixed.get(w), self.rule.get(w)) {
            (Some(&f), Some(&r)) => (f, r),
            _ => (0.0, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::synth;

    #[test]
    fn bounds_cover_every_campaign_after_them() {
        let mut cs = synth::campaigns(1000, 3).campaign;
        cs[700].bid.model = BidModel::Cpc;
        cs[700].bid.max_cpm = Some(99.0);
        cs[900].bid = crate::index::BidSpec {
            model: BidModel::Cpc,
            amount: 50.0,
            expected_ctr: 0.5,
            max_cpm: None,
        };
        // The most any campaign at or after word `w` can bid at multiple `m`.
        let at = |b: &Bounds, w: usize, m: f64| {
            let (f, r) = b.parts_at(w);
            f.max(m * r)
        };
        for sorted in [false, true] {
            // In file order, or best-first: the bounds hold either way.
            let by_pos: Vec<&Campaign> = if sorted {
                let (pos, rule_start) = positions(&cs);
                assert!(cs.iter().enumerate().all(|(i, c)| {
                    let (f, r) = parts(c);
                    (pos[i] as usize >= rule_start) == (r > 0.0 && f == 0.0)
                }));
                let mut v = vec![&cs[0]; cs.len()];
                for (i, c) in cs.iter().enumerate() {
                    v[pos[i] as usize] = c;
                }
                v
            } else {
                cs.iter().collect()
            };
            let b = Bounds::of(&by_pos.iter().map(|c| parts(c)).collect::<Vec<_>>());
            for m in [1.0, 3.0, 7.5] {
                for (pos, c) in by_pos.iter().enumerate() {
                    let (f, r) = parts(c);
                    let most = f.max(m * r);
                    for w in 0..=pos / 64 {
                        assert!(at(&b, w, m) >= most, "word {w}, position {pos}");
                    }
                }
            }
            assert_eq!(at(&b, cs.len().div_ceil(64), 3.0), 0.0, "past the end");
            if sorted {
                let (_, rule_start) = positions(&cs);
                assert_eq!(
                    by_pos[rule_start].id, 901,
                    "the 50 CPC x 0.5 CTR campaign first of its region"
                );
                assert_eq!(by_pos[0].id, 701, "the 99 max_cpm campaign first");
                assert!((0..15).all(|w| at(&b, w, 3.0) >= at(&b, w + 1, 3.0)));
            }
        }
    }
}
