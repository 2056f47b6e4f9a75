//! The auction for one impression: gather the eligible campaigns through
//! each channel (offered deals, then the open auction unless it is
//! private), value them (CPM campaigns by their bid, CPC campaigns by one
//! batched CTR model run, pCTR calibrated to the campaign's expected_ctr and
//! the value capped), keep the best, then price the winner (second
//! price bids value; first price shades, never below the floor) and pick
//! its creative (`winner`). In two halves, so that a batch of requests
//! shares one model run: `gather_imp`, then `finish_imp`.

use super::creative::pick_creative;
use super::plan::{span, Plan};
use super::targeting::{eligible, offered, Ctx};
use super::winner::{channel_floor, win};
use super::{Decision, NoBid, ShardState, Winner};
use crate::events::Event;
use crate::index::{FormatKey, Hot, Index};
use crate::openrtb::{Imp, Pmp};
use crate::scoring::{calibrate, CtrModel};

/// The best channel so far.
#[derive(Debug, Clone, Copy)]
pub(super) struct Best {
    /// Value, CPM USD.
    pub(super) value: f64,
    /// Campaign position in the index.
    pub(super) pos: usize,
    /// Deal index in the impression's `pmp.deals`; `None`: open auction.
    pub(super) deal: Option<usize>,
}

/// A CPC candidate waiting for the batched model run.
#[derive(Debug, Clone, Copy)]
struct Cpc {
    pos: usize,
    deal: Option<usize>,
    /// Floor of its channel, CPM USD.
    floor: f64,
}

/// What the gathering found for one impression.
struct Gathered<'c, 'a> {
    ctx: &'c Ctx<'a, 'c>,
    pmp: Option<&'c Pmp<'c>>,
    has_model: bool,
    best: Option<Best>,
    /// Some campaign targeted the impression (a no-bid is then "filtered").
    any: bool,
    scored: Vec<Cpc>,
    /// Visit every candidate (the reference the early exit is checked against).
    exhaustive: bool,
    /// The best `max_scored` CPC candidates kept whose cap is their rule
    /// value x the multiple (no `max_cpm`), best first: (prior, id, position).
    top: Vec<(f64, u64, usize)>,
    /// Every campaign kept (scored or the best at some point): what a
    /// batched decision checks again before it finishes (see `decide_batch`).
    seen: Vec<usize>,
}

impl Gathered<'_, '_> {
    /// The `max_scored`-th best of `top` once there are that many.
    fn kth(&self) -> Option<(f64, u64, usize)> {
        let k = self.ctx.cfg.max_scored.max(1);
        (self.top.len() >= k).then(|| self.top[k - 1])
    }

    /// Whether a CPC candidate without `max_cpm` (prior `prior`, id `id`)
    /// can no longer be among the `max_scored` sent to the model: that many
    /// such candidates rank before it (a higher prior, or the same and a
    /// lower id, as the selection orders them), and each survives whenever
    /// it would (its cap, a fixed multiple of its prior, is no lower).
    fn outranked(&self, prior: f64, id: u64) -> bool {
        self.kth()
            .is_some_and(|(p, i, _)| prior < p || (prior == p && id > i))
    }

    /// The same for every such candidate at or after position `from`, whose
    /// priors are at most `rule`: positions run by bound, then id, so one
    /// after the `max_scored`-th with its prior has a higher id.
    fn outranked_from(&self, rule: f64, from: usize) -> bool {
        self.kth()
            .is_some_and(|(p, _, pos)| rule < p || (rule == p && from > pos))
    }

    /// Keeps `top` to the best `max_scored`.
    fn rank(&mut self, prior: f64, id: u64, pos: usize) {
        let k = self.ctx.cfg.max_scored.max(1);
        let at = self
            .top
            .partition_point(|&(p, i, _)| p > prior || (p == prior && i < id));
        if at < k {
            self.top.insert(at, (prior, id, pos));
            self.top.truncate(k);
        }
    }

    /// Weighs campaign `pos` through channel `deal` with floor `floor`.
    fn consider(&mut self, pos: usize, deal: Option<usize>, floor: f64, st: &ShardState) {
        let ix = self.ctx.ix;
        self.any = true;
        if let (true, Some(cpc)) = (self.has_model, ix.hot[pos].cpc) {
            // Worth at most its cap: one that cannot reach the floor or the
            // best bid so far would not be scored (the same test as
            // `score`'s, against a best that can only rise): skip the
            // per-campaign checks.
            let h = &ix.hot[pos];
            let cap = cpc_cap(h, cpc, self.ctx.cfg.cpc_cap_multiple);
            let rule = !h.max_cpm.is_finite();
            if !self.exhaustive
                && (cap < floor
                    || self.best.is_some_and(|b| cap < b.value)
                    || (rule && self.outranked(h.value_cpm, h.id)))
            {
                return;
            }
            if eligible(self.ctx, pos, st) && deal_allows(ix, pos, deal, self.pmp) {
                if self.scored.capacity() == 0 {
                    // Room for the usual count at once rather than growing
                    // through 4, 8, 16 (a large index fills `max_scored`).
                    let k = self.ctx.cfg.max_scored.max(1) + 1;
                    self.scored.reserve(k);
                    self.seen.reserve(k);
                    self.top.reserve(k);
                }
                self.seen.push(pos);
                self.scored.push(Cpc { pos, deal, floor });
                if rule {
                    self.rank(h.value_cpm, h.id, pos);
                }
            }
            return;
        }
        let v = ix.hot[pos].value_cpm;
        // Cheapest test first: most candidates fall below the floor or the best so far.
        if !(v.is_finite() && v >= floor && v > 0.0) {
            return;
        }
        if let Some(b) = self.best {
            if v < b.value || (v == b.value && ix.hot[pos].id > ix.hot[b.pos].id) {
                return;
            }
        }
        if !eligible(self.ctx, pos, st) || !deal_allows(ix, pos, deal, self.pmp) {
            return;
        }
        self.seen.push(pos);
        self.best = Some(Best {
            value: v,
            pos,
            deal,
        });
    }

    /// The CPC candidates worth a model row, and their rows (appended to
    /// `rows`): those whose cap reaches their floor and the best CPM bid
    /// (exact), then the top `max_scored` by prior (expected CTR x CPC x
    /// 1000, lowest id first on ties), each with the creative it would show.
    fn prepare_rows(
        &mut self,
        imp: &Imp<'_>,
        fmts: &[FormatKey],
        rows: &mut Vec<[i64; crate::scoring::FEATURES]>,
    ) -> Vec<Cpc> {
        let (ix, now) = (self.ctx.ix, self.ctx.now);
        let multiple = self.ctx.cfg.cpc_cap_multiple;
        let best = self.best.map(|b| b.value);
        self.scored.retain(|c| {
            let cap = most_cpm(&ix.hot[c.pos], multiple);
            cap >= c.floor && best.is_none_or(|b| cap >= b)
        });
        let k = self.ctx.cfg.max_scored.max(1);
        if self.scored.len() > k {
            let prior = |c: &Cpc| (ix.hot[c.pos].value_cpm, ix.hot[c.pos].id);
            self.scored.select_nth_unstable_by(k - 1, |a, b| {
                let (va, ia) = prior(a);
                let (vb, ib) = prior(b);
                vb.total_cmp(&va).then(ia.cmp(&ib))
            });
            self.scored.truncate(k);
        }
        let mut keep = Vec::with_capacity(self.scored.len());
        if self.scored.is_empty() {
            return keep;
        }
        let base = crate::scoring::request_row(self.ctx.req, imp, (now.sec_of_day() / 3600) as u32);
        for &cand in &self.scored {
            if let Some((ci, _)) = pick_creative(ix, cand.pos, imp, fmts) {
                let ad = ix.briefs.at(cand.pos)[ci].buckets;
                rows.push(crate::scoring::with_ad_buckets(base, ad));
                keep.push(cand);
            }
        }
        keep
    }

    /// Values the candidates of `keep` by their predictions `p` (one per
    /// candidate; `None`: the model failed, rule values) and keeps the best.
    fn apply_scores(&mut self, keep: &[Cpc], p: Option<&[f32]>, base_rate: f64) {
        let ix = self.ctx.ix;
        let multiple = self.ctx.cfg.cpc_cap_multiple;
        for (k, cand) in keep.iter().enumerate() {
            let h = &ix.hot[cand.pos];
            let v = match (p, h.cpc) {
                (Some(p), Some(cpc)) => {
                    let ctr = calibrate(f64::from(p[k]), base_rate, h.expected_ctr);
                    (ctr * cpc * 1000.0).min(cpc_cap(h, cpc, multiple))
                }
                _ => h.value_cpm,
            };
            let better = match self.best {
                None => true,
                Some(b) => v > b.value || (v == b.value && h.id < ix.hot[b.pos].id),
            };
            if v.is_finite() && v > 0.0 && v >= cand.floor && better {
                self.best = Some(Best {
                    value: v,
                    pos: cand.pos,
                    deal: cand.deal,
                });
            }
        }
    }
}

/// One impression's gathering, waiting for its candidates' predictions:
/// what [`finish_imp`] needs to value them and bid.
#[derive(Debug)]
pub(super) struct Pending {
    best: Option<Best>,
    any: bool,
    /// The CPC candidates with a row, in row order.
    keep: Vec<Cpc>,
    seen: Vec<usize>,
    imp_floor: f64,
    fmts: Vec<FormatKey>,
}

impl Pending {
    /// Rows this impression sent to the model.
    pub(super) fn rows(&self) -> usize {
        self.keep.len()
    }

    /// Whether every campaign it kept is still eligible, checking only
    /// those `touched` says changed since.
    pub(super) fn still_eligible(
        &self,
        ctx: &Ctx<'_, '_>,
        st: &ShardState,
        touched: impl Fn(usize) -> bool,
    ) -> bool {
        self.seen
            .iter()
            .all(|&p| !touched(p) || eligible(ctx, p, st))
    }
}

/// Runs the auction for impression `imp_ix` of the request: its winner and
/// the bid event, or why there is none. `plan` holds the request-wide
/// targeting; this impression's formats and channels go on it (the caller
/// resets it to its mark afterwards).
pub(super) fn bid_imp<'a>(
    ctx: &Ctx<'a, '_>,
    st: &mut ShardState,
    imp_ix: usize,
    plan: &mut Plan<'a>,
    model: &mut Option<&mut dyn CtrModel>,
    d: &mut Decision,
) -> Result<(Winner, Event), NoBid> {
    let mut rows = Vec::new();
    let p = gather_imp(ctx, st, imp_ix, plan, model.is_some(), &mut rows)?;
    let mut preds = Vec::with_capacity(rows.len());
    let (ok, base_rate) = match model.as_mut() {
        Some(m) if !rows.is_empty() => (m.predict(&rows, &mut preds), m.base_rate()),
        _ => (true, f64::NAN),
    };
    // Nothing changed between the two halves: the winner is still eligible.
    finish_imp(ctx, st, imp_ix, p, ok.then_some(&preds[..]), base_rate, d)
        .unwrap_or(Err(NoBid::Filtered))
}

/// The first half of an impression's auction: gathers its candidates
/// (reading the shard's state, changing nothing) and appends the rows of
/// the CPC candidates to score to `rows` (when there is a model).
pub(super) fn gather_imp<'a>(
    ctx: &Ctx<'a, '_>,
    st: &ShardState,
    imp_ix: usize,
    plan: &mut Plan<'a>,
    has_model: bool,
    rows: &mut Vec<[i64; crate::scoring::FEATURES]>,
) -> Result<Pending, NoBid> {
    let ix = ctx.ix;
    let imp = &ctx.req.imp[imp_ix];
    // Targeted campaigns with a creative for a format the impression offers.
    let mut fmts = Vec::new();
    offered(imp, &mut fmts);
    plan.any_of(fmts.iter().filter_map(|f| ix.format_sets.get(f)));
    // An empty currency (a request built without one) means USD.
    let floor_cur = if imp.bidfloorcur.is_empty() {
        "USD"
    } else {
        imp.bidfloorcur.as_ref()
    };
    let Some(imp_floor) = ix.to_usd(imp.bidfloor, floor_cur) else {
        // No candidate at all says more than an unknown currency.
        return Err(if plan.any_in(0, ix.len()) {
            NoBid::Currency
        } else {
            NoBid::NoCandidate
        });
    };
    let mut g = Gathered {
        ctx,
        pmp: imp.pmp.as_ref(),
        has_model,
        best: None,
        any: false,
        scored: Vec::new(),
        exhaustive: ctx.exhaustive,
        top: Vec::new(),
        seen: Vec::new(),
    };
    g.gather(st, plan, imp_floor);
    let keep = if has_model && !g.scored.is_empty() {
        g.prepare_rows(imp, &fmts, rows)
    } else {
        Vec::new()
    };
    Ok(Pending {
        best: g.best,
        any: g.any,
        keep,
        seen: g.seen,
        imp_floor,
        fmts,
    })
}

/// The second half: values the scored candidates by `preds` (`None`: the
/// model failed; rule values), then prices the best and bids. `None`: the
/// best is no longer eligible (the state changed since the gathering; the
/// caller decides the impression afresh).
pub(super) fn finish_imp(
    ctx: &Ctx<'_, '_>,
    st: &mut ShardState,
    imp_ix: usize,
    p: Pending,
    preds: Option<&[f32]>,
    base_rate: f64,
    d: &mut Decision,
) -> Option<Result<(Winner, Event), NoBid>> {
    let imp = &ctx.req.imp[imp_ix];
    let mut g = Gathered {
        ctx,
        pmp: imp.pmp.as_ref(),
        has_model: true,
        best: p.best,
        any: p.any,
        scored: Vec::new(),
        exhaustive: ctx.exhaustive,
        top: Vec::new(),
        seen: Vec::new(),
    };
    g.apply_scores(&p.keep, preds, base_rate);
    let Some(best) = g.best else {
        return Some(Err(if g.any {
            NoBid::Filtered
        } else {
            NoBid::NoCandidate
        }));
    };
    if !eligible(ctx, best.pos, st) {
        return None;
    }
    if !p.keep.is_empty() {
        d.scored += p.keep.len() as u32;
        if preds.is_none() {
            d.score_failures += 1;
        }
    }
    let floor = channel_floor(ctx.ix, imp.pmp.as_ref(), best.deal, p.imp_floor);
    Some(win(ctx, st, imp_ix, &p.fmts, best, floor))
}

impl<'a> Gathered<'_, 'a> {
    /// Weighs the candidates through every channel the impression offers:
    /// each deal we know (at the deal's floor), then the open auction unless
    /// the auction is private.
    fn gather(&mut self, st: &ShardState, plan: &mut Plan<'a>, imp_floor: f64) {
        let ix = self.ctx.ix;
        if let Some(p) = self.pmp {
            for (di, dl) in p.deals.iter().enumerate() {
                let Some(set) = ix.deals.get(dl.id.as_ref()) else {
                    continue;
                };
                let f = if dl.bidfloor > 0.0 {
                    ix.to_usd(dl.bidfloor, &dl.bidfloorcur)
                } else {
                    Some(imp_floor)
                };
                let Some(f) = f else { continue };
                let m = plan.mark();
                plan.and(set);
                self.visit(st, plan, Some(di), f);
                plan.reset(m);
            }
        }
        if self.pmp.is_none_or(|p| p.private_auction != 1) {
            let m = plan.mark();
            plan.and(&ix.open);
            self.visit(st, plan, None, imp_floor);
            plan.reset(m);
        }
    }

    /// Visits the plan's campaigns best-first, a word at a time, until the
    /// most any campaign left can bid is below the floor or the best value
    /// so far: those could not win (and a CPC one would not be scored).
    fn visit(&mut self, st: &ShardState, plan: &Plan<'_>, deal: Option<usize>, floor: f64) {
        let ix = self.ctx.ix;
        if plan.is_empty() {
            return;
        }
        let words = ix.len().div_ceil(64);
        // Without a model a CPC campaign bids its rule value (at most);
        // with one, up to the multiple of it.
        let multiple = if self.has_model {
            self.ctx.cfg.cpc_cap_multiple
        } else {
            1.0
        };
        if self.exhaustive {
            for w in 0..words {
                self.consider_word(w, plan.word(w), deal, floor, st);
            }
            return;
        }
        // Campaigns with a fixed bound first (the best CPM bid raises the
        // bar), then CPC campaigns without max_cpm, each region best-first
        // with its own bound.
        let split = ix.rule_start;
        let fixed_end = self.visit_region(st, plan, deal, floor, 0..split, |_, w| {
            ix.bounds.parts_at(w).0
        });
        let rule_end = self.visit_region(st, plan, deal, floor, split..ix.len(), |g, w| {
            let rule = ix.bounds.parts_at(w).1;
            // CPC campaigns whose prior is below the max_scored-th kept
            // could not be scored: they bound nothing.
            if g.has_model && g.outranked_from(rule, w * 64) {
                0.0
            } else {
                multiple.max(1.0) * rule
            }
        });
        // Whether anything was targeted still decides the reason.
        for (stop, end) in [(fixed_end, split), (rule_end, ix.len())] {
            if let Some(from) = stop {
                self.any = self.any || plan.any_in(from, end);
            }
        }
    }

    /// Visits the plan's campaigns at positions `range` a word at a time
    /// until `bound` (the most any campaign left in the region can bid)
    /// falls below the floor or the best value so far. Returns the position
    /// it stopped at, if it stopped early.
    fn visit_region(
        &mut self,
        st: &ShardState,
        plan: &Plan<'_>,
        deal: Option<usize>,
        floor: f64,
        range: std::ops::Range<usize>,
        bound: impl Fn(&Self, usize) -> f64,
    ) -> Option<usize> {
        if range.is_empty() {
            return None;
        }
        let mut stopped = None;
        let words = range.end.div_ceil(64);
        plan.words_from(range.start / 64, words, |w| {
            let bar = self.best.map_or(floor, |b| b.value.max(floor));
            if bound(self, w) < bar {
                stopped = Some((w * 64).max(range.start));
                return false;
            }
            self.consider_word(w, plan.word(w) & span(w, &range), deal, floor, st);
            true
        });
        stopped
    }

    /// Weighs the campaigns of word `w` in `bits`.
    fn consider_word(
        &mut self,
        w: usize,
        mut bits: u64,
        deal: Option<usize>,
        floor: f64,
        st: &ShardState,
    ) {
        while bits != 0 {
            let pos = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.consider(pos, deal, floor, st);
        }
    }
}

/// The most any campaign bids: its rule value (a CPM campaign's bid), or a
/// CPC campaign's cap.
pub(super) fn most_cpm(h: &Hot, multiple: f64) -> f64 {
    h.cpc.map_or(h.value_cpm, |cpc| cpc_cap(h, cpc, multiple))
}

/// The most a CPC campaign bids: its `max_cpm`, or where unset `multiple`
/// x its rule-based value (expected_ctr x CPC x 1000).
pub(super) fn cpc_cap(h: &Hot, cpc: f64, multiple: f64) -> f64 {
    if h.max_cpm.is_finite() {
        h.max_cpm
    } else {
        multiple * h.expected_ctr * cpc * 1000.0
    }
}

/// Whether a deal (if bidding through one) admits the campaign's seat and domains.
fn deal_allows(ix: &Index, pos: usize, deal: Option<usize>, pmp: Option<&Pmp<'_>>) -> bool {
    let Some(dl) = deal.and_then(|di| pmp.map(|p| &p.deals[di])) else {
        return true;
    };
    let c = ix.at(pos);
    (dl.wseat.is_empty() || dl.wseat.iter().any(|s| s == &c.seat))
        && (dl.wadomain.is_empty() || c.adomain.iter().any(|a| dl.wadomain.iter().any(|w| w == a)))
}
