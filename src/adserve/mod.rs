//! Decisions: everything between a decoded request and its answer,
//! synchronous and pure over its inputs. `decide(&Index, &mut ShardState,
//! &BidRequest, cfg, now)` returns a [`Decision`]: the winner of each
//! impression (campaign, creative, price), the events to emit and the
//! no-bid reasons. No awaits, no sockets, no database.
//!
//! - [`state`](ShardState): the shard's budget slices, pacing and
//!   frequency caps.
//! - `targeting`: which campaigns may bid (bitsets, then per-campaign state).
//! - `auction`: channels and valuation (CTR model for CPC); `winner`: the
//!   winner priced and recorded as a bid; `creative`: which creative an
//!   impression can show.
//! - [`response`]: the bid response rendered once from the winners; `/ad`
//!   renders its own answer from the same winners.
//! - [`markup`]: banner HTML and the markup of each format, notice URLs;
//!   [`native`] fills a native request's assets, [`vast`] writes VAST/DAAST.
//! - [`notices`](notice): wins, bills, losses, impressions and clicks.

mod auction;
mod creative;
pub mod dedupe;
pub mod fleet;
pub mod markup;
pub mod native;
mod notices;
mod plan;
pub mod response;
pub mod signing;
pub mod spend;
mod state;
mod targeting;
pub mod vast;
mod winner;

pub use crate::config::BidderConfig;
pub use notices::{notice, Notice, NoticeError, NoticeKind, NoticeOutcome, Reason};
pub use response::bid_response;
pub use state::ShardState;

use crate::events::Event;
use crate::index::Index;
use crate::openrtb::BidRequest;
use crate::scoring::CtrModel;
use targeting::{targeting, Ctx};

/// Why an impression got no bid (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBid {
    /// No campaign targets it.
    NoCandidate,
    /// Candidates, but none passed floors, budgets, caps or blocks.
    Filtered,
    /// `tmax` below what we can meet.
    Tmax,
    /// The floor's currency or the response currency is unknown.
    Currency,
    /// A secure impression, and no https base for our URLs
    /// (`bidder.secure_url`).
    Insecure,
    /// The request is invalid traffic (see `quality`; the response's `nbr`
    /// names the kind).
    Ivt,
}

impl NoBid {
    /// Every reason, in the order of [`NoBid::index`].
    pub const ALL: [NoBid; 6] = [
        NoBid::NoCandidate,
        NoBid::Filtered,
        NoBid::Tmax,
        NoBid::Currency,
        NoBid::Insecure,
        NoBid::Ivt,
    ];

    /// The reason's metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            NoBid::NoCandidate => "no_candidate",
            NoBid::Filtered => "filtered",
            NoBid::Tmax => "tmax",
            NoBid::Currency => "currency",
            NoBid::Insecure => "insecure",
            NoBid::Ivt => "ivt",
        }
    }

    /// Position in [`NoBid::ALL`] (indexes per-reason counters).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The OpenRTB no-bid reason code (2.6 list "No-Bid Reason Codes"; 500+
    /// are ours): 1 technical error (we cannot answer within `tmax`), 2
    /// invalid request (a currency we do not know), 500 no campaign
    /// targets it, 501 none passed floors, budgets, caps or blocks, 502 a
    /// secure impression we cannot serve over https.
    pub const fn nbr(self) -> u16 {
        match self {
            NoBid::Tmax => 1,
            NoBid::Currency => 2,
            NoBid::NoCandidate => 500,
            NoBid::Filtered => 501,
            NoBid::Insecure => 502,
            NoBid::Ivt => 4,
        }
    }

    /// The reason a whole request goes without a bid, from its
    /// impressions' (the most telling first); none (every impression was
    /// dropped): 2, invalid request.
    pub fn of_request(why: &[NoBid]) -> u16 {
        [
            NoBid::Ivt,
            NoBid::Tmax,
            NoBid::Currency,
            NoBid::Insecure,
            NoBid::Filtered,
            NoBid::NoCandidate,
        ]
        .into_iter()
        .find(|r| why.contains(r))
        .map_or(2, NoBid::nbr)
    }
}

/// The winner of one impression's auction. Positions refer to the index
/// the decision was made on.
#[derive(Debug, Clone, PartialEq)]
pub struct Winner {
    /// Index of the impression in the request's `imp`.
    pub imp: usize,
    /// Position of the campaign in the index.
    pub campaign: usize,
    /// Index of the creative in the campaign's `creatives`.
    pub creative: usize,
    /// Index of the deal in the impression's `pmp.deals`; `None`: open auction.
    pub deal: Option<usize>,
    /// Bid price, CPM in the response currency (4 decimals).
    pub price: f64,
    /// Bid price, CPM USD.
    pub price_usd: f64,
    /// USD per unit of the response currency, as the bid used it.
    pub fx: f64,
    /// When the bid was made, Unix seconds (signed into its notice URLs).
    pub issued: u64,
    /// Width and height served.
    pub w: Option<u32>,
    /// See `w`.
    pub h: Option<u32>,
    /// Our id of the bid.
    pub bid_id: String,
}

/// The outcome of one request.
#[derive(Debug, Default)]
pub struct Decision {
    /// One per impression bid on; empty: no bid (204).
    pub winners: Vec<Winner>,
    /// Response currency.
    pub cur: String,
    /// Our id of the response (set when there are winners).
    pub bidid: String,
    /// Events to hand to the sink.
    pub events: Vec<Event>,
    /// Per-impression no-bid reasons.
    pub no_bids: Vec<NoBid>,
    /// The privacy signal that made this a contextual-only decision.
    pub contextual: Option<crate::openrtb::Contextual>,
    /// Candidates scored by the CTR model.
    pub scored: u32,
    /// Model runs that failed (rule-based values were used instead).
    pub score_failures: u32,
    /// Frequency entries evicted to make room (the table was full).
    pub freq_evictions: u32,
    /// Impressions of a batch decided afresh because a campaign they
    /// counted on bid in the batch meanwhile (see [`decide_batch`]).
    pub redecided: u32,
}

/// Wall-clock now, split as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Unix seconds.
    pub secs: u64,
    /// Unix microseconds.
    pub micros: i64,
}

impl Now {
    /// The current time.
    pub fn wall() -> Now {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Now {
            secs: d.as_secs(),
            micros: d.as_micros() as i64,
        }
    }
    /// From Unix seconds (tests).
    pub fn at(secs: u64) -> Now {
        Now {
            secs,
            micros: secs as i64 * 1_000_000,
        }
    }
    pub(super) fn day(self) -> u64 {
        self.secs / 86400
    }
    pub(super) fn sec_of_day(self) -> u64 {
        self.secs % 86400
    }
    /// 0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday).
    pub(super) fn weekday(self) -> u8 {
        ((self.day() + 3) % 7) as u8
    }
}

/// Decides one bid request.
pub fn decide(
    ix: &Index,
    st: &mut ShardState,
    req: &BidRequest<'_>,
    cfg: &BidderConfig,
    now: Now,
) -> Decision {
    decide_with(ix, st, req, cfg, now, None)
}

/// Decides one bid request, scoring CPC candidates with `model` when given
/// (one batched prediction per impression; [`decide_batch`] makes one for
/// a batch of requests); without a model, or if it
/// fails, CPC campaigns are priced with their `expected_ctr`.
pub fn decide_with(
    ix: &Index,
    st: &mut ShardState,
    req: &BidRequest<'_>,
    cfg: &BidderConfig,
    now: Now,
    model: Option<&mut dyn CtrModel>,
) -> Decision {
    decide_inner(ix, st, req, cfg, now, model, false)
}

/// [`decide_with`] visiting every candidate: the reference that the
/// best-first early exit is tested against (same answers, more work).
#[doc(hidden)]
pub fn decide_exhaustive(
    ix: &Index,
    st: &mut ShardState,
    req: &BidRequest<'_>,
    cfg: &BidderConfig,
    now: Now,
    model: Option<&mut dyn CtrModel>,
) -> Decision {
    decide_inner(ix, st, req, cfg, now, model, true)
}

fn decide_inner(
    ix: &Index,
    st: &mut ShardState,
    req: &BidRequest<'_>,
    cfg: &BidderConfig,
    now: Now,
    mut model: Option<&mut dyn CtrModel>,
    exhaustive: bool,
) -> Decision {
    st.lapse(ix, now);
    let evictions = st.freq_evictions;
    let mut s = match start(ix, req, cfg, now, exhaustive) {
        Ok(s) => s,
        Err(d) => return *d,
    };
    for i in 0..req.imp.len() {
        if s.insecure(i) {
            s.d.no_bids.push(NoBid::Insecure);
            continue;
        }
        let mark = s.plan.mark();
        let out = auction::bid_imp(&s.ctx, st, i, &mut s.plan, &mut model, &mut s.d);
        s.plan.reset(mark);
        s.push(out);
    }
    s.conclude(st, evictions)
}

/// Decides a batch of bid requests, with one model run for the CPC
/// candidates of them all: the answers [`decide_with`] gives deciding them
/// one after the other, all at `now`. Each impression is gathered first
/// (gathering reads the shard's state, never changes it), then the rows of
/// every impression are scored at once, then the impressions are finished
/// in order. Finishing changes state only for the campaign that bids (its
/// hold, its frequency count): so an impression is finished from its
/// gathering when no campaign it kept has bid since in this batch, or
/// still may, and when its winner is still eligible; otherwise (and when
/// the frequency table evicted an entry meanwhile) it is decided afresh.
pub fn decide_batch(
    ix: &Index,
    st: &mut ShardState,
    reqs: &[&BidRequest<'_>],
    cfg: &BidderConfig,
    now: Now,
    mut model: Option<&mut dyn CtrModel>,
) -> Vec<Decision> {
    st.lapse(ix, now);
    let has_model = model.is_some();
    let (mut rows, mut preds) = std::mem::take(&mut st.scratch);
    rows.clear();
    // Gather every impression; rows[from..from + p.rows()] are its rows.
    let mut started = Vec::with_capacity(reqs.len());
    for req in reqs {
        let s = start(ix, req, cfg, now, false).map(|mut s| {
            let pending: Vec<_> = (0..req.imp.len())
                .map(|i| {
                    if s.insecure(i) {
                        return Err(NoBid::Insecure);
                    }
                    let mark = s.plan.mark();
                    let from = rows.len();
                    let p = auction::gather_imp(&s.ctx, st, i, &mut s.plan, has_model, &mut rows);
                    s.plan.reset(mark);
                    p.map(|p| (p, from))
                })
                .collect();
            (s, pending)
        });
        started.push(s);
    }
    preds.clear();
    let (ok, base_rate) = match model.as_mut() {
        Some(m) if !rows.is_empty() => (m.predict(&rows, &mut preds), m.base_rate()),
        _ => (true, f64::NAN),
    };
    // Finish them in order.
    let evicted = st.freq_evictions;
    let mut touched = Touched::default();
    let mut out = Vec::with_capacity(reqs.len());
    for s in started {
        let (mut s, pending) = match s {
            Ok(x) => x,
            Err(d) => {
                out.push(*d);
                continue;
            }
        };
        let evictions = st.freq_evictions;
        for (i, p) in pending.into_iter().enumerate() {
            let res = match p {
                Err(why) => Err(why),
                Ok((p, from)) => {
                    let fresh = st.freq_evictions == evicted
                        && p.still_eligible(&s.ctx, st, |pos| touched.has(pos));
                    let preds = ok.then(|| &preds[from..from + p.rows()]);
                    match fresh
                        .then(|| auction::finish_imp(&s.ctx, st, i, p, preds, base_rate, &mut s.d))
                    {
                        Some(Some(r)) => r,
                        // Something it counted on changed: decide it afresh.
                        _ => {
                            s.d.redecided += 1;
                            let mark = s.plan.mark();
                            let r =
                                auction::bid_imp(&s.ctx, st, i, &mut s.plan, &mut model, &mut s.d);
                            s.plan.reset(mark);
                            r
                        }
                    }
                }
            };
            if let Ok((w, _)) = &res {
                touched.add(w.campaign);
            }
            s.push(res);
        }
        out.push(s.conclude(st, evictions));
    }
    st.scratch = (rows, preds);
    out
}

/// Campaign positions that bid in a batch so far.
#[derive(Debug, Default)]
struct Touched {
    /// Bit `pos % 64` of each: most positions are answered here.
    mask: u64,
    all: Vec<usize>,
}

impl Touched {
    fn add(&mut self, pos: usize) {
        self.mask |= 1 << (pos % 64);
        self.all.push(pos);
    }

    fn has(&self, pos: usize) -> bool {
        self.mask & (1 << (pos % 64)) != 0 && self.all.contains(&pos)
    }
}

/// A decision under way: its context, the request-wide targeting plan, and
/// what it has decided so far.
struct Start<'a, 'r> {
    ctx: Ctx<'a, 'r>,
    plan: plan::Plan<'a>,
    cur: String,
    d: Decision,
}

/// Starts deciding `req`: the context and plan of its auctions, or the
/// whole decision when it cannot be bid on (`tmax` too short, a currency
/// we do not know).
fn start<'a, 'r>(
    ix: &'a Index,
    req: &'r BidRequest<'r>,
    cfg: &'a BidderConfig,
    now: Now,
    exhaustive: bool,
) -> Result<Start<'a, 'r>, Box<Decision>> {
    let mut d = Decision::default();
    if req.tmax.is_some_and(|t| t < cfg.min_tmax_ms) {
        d.no_bids = vec![NoBid::Tmax; req.imp.len()];
        return Err(Box::new(d));
    }
    let Some(cur) = response_currency(ix, req) else {
        d.no_bids = vec![NoBid::Currency; req.imp.len()];
        return Err(Box::new(d));
    };
    let usd_per_cur = ix.currencies.get(&cur).copied().unwrap_or(1.0);
    // COPPA, GDPR without our vendor's consent, a US Privacy or GPP opt-out,
    // lmt or dnt: contextual only (no user id for caps or events, no segments).
    d.contextual = req.contextual(cfg.tcf_vendor_id);
    let contextual = d.contextual.is_some();
    let user = req.user.as_ref().and_then(|u| {
        let id = if u.id.is_empty() { &u.buyeruid } else { &u.id };
        (!id.is_empty() && !contextual).then(|| xxhash_rust::xxh3::xxh3_64(id.as_bytes()))
    });
    let ctx = Ctx {
        ix,
        cfg,
        req,
        now,
        user,
        first_price: req.at == 1,
        usd_per_cur,
        exhaustive,
    };
    let plan = targeting(ix, req, contextual);
    Ok(Start { ctx, plan, cur, d })
}

impl Start<'_, '_> {
    /// A secure impression we have no https base for.
    fn insecure(&self, i: usize) -> bool {
        self.ctx.req.imp[i].is_secure() && self.ctx.cfg.secure_base().is_none()
    }

    /// Records an impression's outcome.
    fn push(&mut self, out: Result<(Winner, Event), NoBid>) {
        match out {
            Ok((w, ev)) => {
                self.d.winners.push(w);
                self.d.events.push(ev);
            }
            Err(why) => self.d.no_bids.push(why),
        }
    }

    /// The decision, once every impression is decided (`evictions`: the
    /// shard's frequency evictions when it started).
    fn conclude(mut self, st: &mut ShardState, evictions: u64) -> Decision {
        if !self.d.winners.is_empty() {
            self.d.cur = self.cur;
            self.d.bidid = st.next_id();
        }
        self.d.freq_evictions = (st.freq_evictions - evictions) as u32;
        self.d
    }
}

/// The response currency: USD unless the exchange lists others only, then
/// the first listed one we have a rate for; `None` when there is none.
fn response_currency(ix: &Index, req: &BidRequest<'_>) -> Option<String> {
    if req.cur.is_empty() || req.cur.iter().any(|c| c == "USD") {
        return Some("USD".to_string());
    }
    req.cur
        .iter()
        .find(|c| ix.currencies.contains_key(c.as_ref()))
        .map(|c| c.to_string())
}

/// Unique event id: time (64 bits), a random process id (16), shard (12)
/// and per-shard sequence (36). The process id keeps two servers' shards
/// apart when they write to one database.
pub fn event_id(shard: u16, seq: u64, now: Now) -> u128 {
    (u128::from(now.micros as u64) << 64)
        | (u128::from(process_tag()) << 48)
        | (u128::from(shard & 0xfff) << 36)
        | u128::from(seq & 0xf_ffff_ffff)
}

fn process_tag() -> u16 {
    node_id() as u16
}

/// 64 random bits drawn once per process: with the shard and a sequence
/// they make bid ids unique across restarts and across a fleet.
pub fn node_id() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        signing::random::<8>().map_or_else(
            |_| {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new()
                    .hash_one((std::process::id(), std::time::SystemTime::now()))
            },
            u64::from_le_bytes,
        )
    })
}

#[cfg(test)]
mod money_tests;
#[cfg(test)]
mod privacy_tests;
#[cfg(test)]
mod supply_tests;
#[cfg(test)]
mod tests;
