//! Decisions: eligibility, pacing, budget, frequency caps, pricing, the
//! internal auction, markup and notices. Everything here is synchronous and
//! pure over its inputs: `decide(&Index, &mut ShardState, &BidRequest, now)`
//! returns a [`Decision`] (the response and the events to emit). No awaits, no
//! sockets, no database.
//!
//! Each shard owns one [`ShardState`]: its slice (1/shards) of every
//! campaign's daily and lifetime budget, its pacing and frequency-cap state.

pub mod dedupe;
pub mod markup;

use crate::events::{Event, Kind};
use crate::index::{Bitset, Campaign, CreativeFormat, FormatKey, Hot, Index};
use crate::openrtb::{Bid, BidRequest, BidResponse, Imp, SeatBid};
use crate::scoring::CtrModel;
use dedupe::Dedupe;
use std::collections::HashMap;

pub use crate::config::BidderConfig;

/// Spend and day of one campaign on one shard.
#[derive(Debug, Clone, Default)]
struct Spend {
    id: u64,
    day: u64,
    today: f64,
    total: f64,
}

/// One shard's mutable bidding state. Owned by the shard; lives as long as it.
#[derive(Debug)]
pub struct ShardState {
    /// Shard number (stamped into ids and events).
    pub shard: u16,
    /// Shard count (budgets are split by it).
    pub shards: u16,
    version: u64,
    spend: Vec<Spend>,
    /// (user hash ^ campaign id) -> (window start, bids in window).
    freq: HashMap<u64, (u64, u32)>,
    max_users: usize,
    seq: u64,
    base: Bitset,
    cand: Bitset,
    tmp: Bitset,
    keys: Vec<String>,
    /// Frequency tables reset because they grew past `max_tracked_users`.
    pub freq_resets: u64,
}

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
}

/// The outcome of one request.
#[derive(Debug, Default)]
pub struct Decision {
    /// The bid response, `None` for no bid (204).
    pub response: Option<BidResponse>,
    /// Events to hand to the sink.
    pub events: Vec<Event>,
    /// Per-impression no-bid reasons.
    pub no_bids: Vec<NoBid>,
    /// Candidates scored by the CTR model.
    pub scored: u32,
    /// Model runs that failed (rule-based values were used instead).
    pub score_failures: u32,
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
    fn day(self) -> u64 {
        self.secs / 86400
    }
    fn sec_of_day(self) -> u64 {
        self.secs % 86400
    }
    /// 0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday).
    fn weekday(self) -> u8 {
        ((self.day() + 3) % 7) as u8
    }
}

impl ShardState {
    /// State for shard `shard` of `shards`.
    pub fn new(shard: u16, shards: u16, cfg: &BidderConfig) -> Self {
        ShardState {
            shard,
            shards: shards.max(1),
            version: u64::MAX,
            spend: Vec::new(),
            freq: HashMap::new(),
            max_users: cfg.max_tracked_users,
            seq: 0,
            base: Bitset::new(0),
            cand: Bitset::new(0),
            tmp: Bitset::new(0),
            keys: Vec::new(),
            freq_resets: 0,
        }
    }

    /// Follows a newly published index: carries spend over by campaign id.
    pub fn sync(&mut self, ix: &Index) {
        if self.version == ix.version {
            return;
        }
        let old: HashMap<u64, Spend> = self.spend.drain(..).map(|s| (s.id, s)).collect();
        self.spend = ix
            .campaigns
            .iter()
            .map(|c| {
                old.get(&c.id).cloned().unwrap_or(Spend {
                    id: c.id,
                    ..Default::default()
                })
            })
            .collect();
        let n = ix.len();
        self.base = Bitset::new(n);
        self.cand = Bitset::new(n);
        self.tmp = Bitset::new(n);
        self.version = ix.version;
    }

    /// A new id unique on this shard: `{shard}-{seq}`.
    pub fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}", self.shard, self.seq)
    }

    /// This shard's spend on campaign `id` today and in total (USD).
    pub fn spent(&self, ix: &Index, id: u64) -> Option<(f64, f64)> {
        ix.by_id
            .get(&id)
            .and_then(|&p| self.spend.get(p as usize))
            .map(|s| (s.today, s.total))
    }

    /// Deducts `usd` from this shard's slice of campaign `id`.
    pub fn charge(&mut self, ix: &Index, id: u64, usd: f64, now: Now) -> bool {
        self.sync(ix);
        let Some(&p) = ix.by_id.get(&id) else {
            return false;
        };
        let s = &mut self.spend[p as usize];
        if s.day != now.day() {
            s.day = now.day();
            s.today = 0.0;
        }
        s.today += usd;
        s.total += usd;
        true
    }

    fn budget_ok(&self, h: &Hot, pos: usize, now: Now) -> bool {
        let s = &self.spend[pos];
        let shards = f64::from(self.shards);
        let today = if s.day == now.day() { s.today } else { 0.0 };
        let daily = h.daily / shards;
        // Even: the elapsed share of the day plus one hour of headroom.
        let allowed = if h.even {
            daily * ((now.sec_of_day() + 3600) as f64 / 86400.0).min(1.0)
        } else {
            daily
        };
        today < allowed && s.total < h.lifetime / shards
    }

    fn freq_key(user: u64, campaign: u64) -> u64 {
        user ^ campaign.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn freq_ok(&self, h: &Hot, user: Option<u64>, now: Now) -> bool {
        let Some(cap) = h.cap else { return true };
        // A capped campaign cannot honour its cap for an unknown user.
        let Some(u) = user else { return false };
        match self.freq.get(&Self::freq_key(u, h.id)) {
            Some(&(start, n)) if now.secs < start + cap.window_secs => n < cap.max,
            _ => true,
        }
    }

    fn freq_count(&mut self, h: &Hot, user: Option<u64>, now: Now) {
        let (Some(cap), Some(u)) = (h.cap, user) else {
            return;
        };
        if self.freq.len() >= self.max_users {
            self.freq.clear();
            self.freq_resets += 1;
        }
        let e = self
            .freq
            .entry(Self::freq_key(u, h.id))
            .or_insert((now.secs, 0));
        if now.secs >= e.0 + cap.window_secs {
            *e = (now.secs, 0);
        }
        e.1 += 1;
    }
}

fn daypart_ok(c: &Campaign, now: Now) -> bool {
    let parts = &c.targeting.dayparts;
    if parts.is_empty() {
        return true;
    }
    let (wd, hour) = (now.weekday(), (now.sec_of_day() / 3600) as u8);
    parts.iter().any(|d| {
        (d.days.is_empty() || d.days.contains(&wd)) && d.start_hour <= hour && hour < d.end_hour
    })
}

/// The format keys an impression offers.
fn offered(imp: &Imp<'_>, out: &mut Vec<FormatKey>) {
    out.clear();
    if let Some(b) = &imp.banner {
        if let (Some(w), Some(h)) = (b.w, b.h) {
            out.push(FormatKey::Banner(w, h));
        }
        for f in &b.format {
            out.push(FormatKey::Banner(f.w, f.h));
        }
    }
    if imp.video.is_some() {
        out.push(FormatKey::Video);
    }
    if imp.native.is_some() {
        out.push(FormatKey::Native);
    }
}

/// Request-wide facts used by every impression.
struct Ctx<'r> {
    user: Option<u64>,
    test: bool,
    first_price: bool,
    req: &'r BidRequest<'r>,
}

/// Restricts `st.base` to the campaigns whose request-wide targeting matches.
fn targeting(ix: &Index, st: &mut ShardState, req: &BidRequest<'_>, coppa: bool) {
    let ShardState {
        base, tmp, keys, ..
    } = st;
    base.copy_from(if req.app.is_some() {
        &ix.on_app
    } else {
        &ix.on_site
    });
    let dev = req.device.as_ref();
    let geo = dev
        .and_then(|d| d.geo.as_ref())
        .or(req.user.as_ref().and_then(|u| u.geo.as_ref()));
    let one = |keys: &mut Vec<String>, v: Option<String>| {
        keys.clear();
        keys.extend(v.filter(|s| !s.is_empty()));
    };
    one(keys, geo.map(|g| g.country.to_ascii_uppercase()));
    ix.country
        .restrict(keys.iter().map(String::as_str), base, tmp);
    one(keys, geo.map(|g| g.region.to_ascii_uppercase()));
    ix.region
        .restrict(keys.iter().map(String::as_str), base, tmp);
    one(keys, dev.and_then(|d| d.devicetype).map(|t| t.to_string()));
    ix.device_type
        .restrict(keys.iter().map(String::as_str), base, tmp);
    one(keys, dev.map(|d| d.os.to_ascii_lowercase()));
    ix.os.restrict(keys.iter().map(String::as_str), base, tmp);
    match (&req.site, &req.app) {
        (_, Some(app)) => {
            one(keys, Some(app.bundle.to_ascii_lowercase()));
            ix.bundle
                .restrict(keys.iter().map(String::as_str), base, tmp);
            one(keys, None);
            ix.domain
                .restrict(keys.iter().map(String::as_str), base, tmp);
        }
        (site, None) => {
            one(
                keys,
                site.as_ref().map(|s| crate::index::norm_domain(&s.domain)),
            );
            ix.domain
                .restrict(keys.iter().map(String::as_str), base, tmp);
            one(keys, None);
            ix.bundle
                .restrict(keys.iter().map(String::as_str), base, tmp);
        }
    }
    keys.clear();
    for c in req.content_cats() {
        keys.push(c.to_string());
        if let Some((parent, _)) = c.split_once('-') {
            keys.push(parent.to_string());
        }
    }
    ix.category
        .restrict(keys.iter().map(String::as_str), base, tmp);
    keys.clear();
    if !coppa {
        if let Some(u) = &req.user {
            keys.extend(
                u.data
                    .iter()
                    .flat_map(|d| d.segment.iter().map(|s| s.id.to_string())),
            );
        }
    }
    ix.segment
        .restrict(keys.iter().map(String::as_str), base, tmp);
    if coppa {
        // COPPA: no behavioural targeting, so segment-targeted campaigns sit out.
        base.and(&ix.no_segments);
    }
    // Request-wide blocks, as bitset work rather than per-candidate checks.
    let block = |m: &std::collections::HashMap<String, Bitset>,
                 keys: &mut dyn Iterator<Item = String>,
                 base: &mut Bitset| {
        for k in keys {
            if let Some(b) = m.get(&k) {
                base.and_not(b);
            }
        }
    };
    if !req.bcat.is_empty() {
        // Categories in another taxonomy cannot be checked: those campaigns stay out.
        match ix.cattax.get(&req.cattax.unwrap_or(1)) {
            Some(same) => base.and(same),
            None => base.clear(),
        }
        block(
            &ix.cat_block,
            &mut req.bcat.iter().map(|c| c.to_string()),
            base,
        );
    }
    block(
        &ix.adomain,
        &mut req.badv.iter().map(|d| d.to_ascii_lowercase()),
        base,
    );
    block(
        &ix.app_bundle,
        &mut req.bapp.iter().map(|b| b.to_string()),
        base,
    );
    block(&ix.seat, &mut req.bseat.iter().map(|b| b.to_string()), base);
    if !req.wseat.is_empty() {
        tmp.clear();
        for w in &req.wseat {
            if let Some(b) = ix.seat.get(w.as_ref()) {
                tmp.or(b);
            }
        }
        base.and(tmp);
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
/// (one batched prediction per impression); without a model, or if it
/// fails, CPC campaigns are priced with their `expected_ctr`.
pub fn decide_with(
    ix: &Index,
    st: &mut ShardState,
    req: &BidRequest<'_>,
    cfg: &BidderConfig,
    now: Now,
    mut model: Option<&mut dyn CtrModel>,
) -> Decision {
    st.sync(ix);
    let mut d = Decision::default();
    if req.tmax.is_some_and(|t| t < cfg.min_tmax_ms) {
        d.no_bids = vec![NoBid::Tmax; req.imp.len()];
        return d;
    }
    // Response currency: USD unless the exchange lists others only.
    let cur = if req.cur.is_empty() || req.cur.iter().any(|c| c == "USD") {
        "USD".to_string()
    } else {
        match req
            .cur
            .iter()
            .find(|c| ix.currencies.contains_key(c.as_ref()))
        {
            Some(c) => c.to_string(),
            None => {
                d.no_bids = vec![NoBid::Currency; req.imp.len()];
                return d;
            }
        }
    };
    let usd_per_cur = ix.currencies.get(&cur).copied().unwrap_or(1.0);
    let coppa = req.regs.is_some_and(|r| r.coppa == 1);
    let user = req.user.as_ref().and_then(|u| {
        let id = if u.id.is_empty() { &u.buyeruid } else { &u.id };
        (!id.is_empty() && !coppa).then(|| xxhash_rust::xxh3::xxh3_64(id.as_bytes()))
    });
    let ctx = Ctx {
        user,
        test: req.test == 1,
        first_price: req.at == 1,
        req,
    };
    targeting(ix, st, req, coppa);
    let mut bids: Vec<(String, Bid)> = Vec::new();
    let mut fmts = Vec::new();
    for imp in &req.imp {
        match bid_imp(
            ix,
            st,
            &ctx,
            imp,
            &mut fmts,
            cfg,
            now,
            usd_per_cur,
            &mut model,
            &mut d,
        ) {
            Ok((seat, bid, ev)) => {
                bids.push((seat, bid));
                d.events.push(ev);
            }
            Err(why) => d.no_bids.push(why),
        }
    }
    if bids.is_empty() {
        return d;
    }
    let mut seatbid: Vec<SeatBid> = Vec::new();
    for (seat, bid) in bids {
        match seatbid.iter_mut().find(|s| s.seat == seat) {
            Some(s) => s.bid.push(bid),
            None => seatbid.push(SeatBid {
                seat,
                bid: vec![bid],
            }),
        }
    }
    d.response = Some(BidResponse {
        id: req.id.to_string(),
        seatbid,
        bidid: st.next_id(),
        cur,
    });
    d
}

/// Picks the best eligible campaign and creative for one impression.
#[allow(clippy::too_many_arguments)]
fn bid_imp(
    ix: &Index,
    st: &mut ShardState,
    ctx: &Ctx<'_>,
    imp: &Imp<'_>,
    fmts: &mut Vec<FormatKey>,
    cfg: &BidderConfig,
    now: Now,
    usd_per_cur: f64,
    model: &mut Option<&mut dyn CtrModel>,
    d: &mut Decision,
) -> Result<(String, Bid, Event), NoBid> {
    let req = ctx.req;
    offered(imp, fmts);
    // Formats: campaigns with a creative for any offered format.
    st.tmp.clear();
    for f in fmts.iter() {
        if let Some(b) = ix.format_sets.get(f) {
            st.tmp.or(b);
        }
    }
    st.cand.copy_from(&st.base);
    st.cand.and(&st.tmp);
    if st.cand.is_empty() {
        return Err(NoBid::NoCandidate);
    }
    // An empty currency (a request built without one) means USD.
    let floor_cur = if imp.bidfloorcur.is_empty() {
        "USD"
    } else {
        imp.bidfloorcur.as_ref()
    };
    let imp_floor = ix.to_usd(imp.bidfloor, floor_cur).ok_or(NoBid::Currency)?;
    // Channels: the open auction (unless private) and each offered deal.
    let pmp = imp.pmp.as_ref();
    let private = pmp.is_some_and(|p| p.private_auction == 1);
    let mut best: Option<(f64, usize, Option<usize>)> = None; // (value, campaign pos, deal idx)
    let mut any = false;
    // CPC candidates waiting for one batched model run: (pos, deal, floor).
    let mut scored: Vec<(usize, Option<usize>, f64)> = Vec::new();
    let has_model = model.is_some();
    let mut consider = |pos: usize, deal: Option<usize>, floor: f64, st: &ShardState| {
        any = true;
        if has_model && ix.hot[pos].cpc.is_some() {
            if eligible(ix, pos, st, ctx, now) && deal_allows(ix, pos, deal, pmp) {
                scored.push((pos, deal, floor));
            }
            return;
        }
        let v = ix.hot[pos].value_cpm;
        // Cheapest test first: most candidates fall below the floor or the best so far.
        if !(v.is_finite() && v >= floor && v > 0.0) {
            return;
        }
        if let Some((bv, bp, _)) = best {
            if v < bv || (v == bv && ix.hot[pos].id > ix.hot[bp].id) {
                return;
            }
        }
        if !eligible(ix, pos, st, ctx, now) || !deal_allows(ix, pos, deal, pmp) {
            return;
        }
        best = Some((v, pos, deal));
    };
    let mut floors = Vec::new();
    if let Some(p) = pmp {
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
            floors.push(f);
            for pos in st.cand.iter().filter(|&p| set.get(p)) {
                consider(pos, Some(di), f, st);
            }
        }
    }
    if !private {
        for pos in st.cand.iter().filter(|&p| ix.open.get(p)) {
            consider(pos, None, imp_floor, st);
        }
    }
    if let (false, Some(m)) = (scored.is_empty(), model.as_mut()) {
        // One batched run for every CPC candidate of this impression.
        let base = crate::scoring::request_row(req, imp, (now.sec_of_day() / 3600) as u32);
        let mut rows = Vec::with_capacity(scored.len());
        let mut keep = Vec::with_capacity(scored.len());
        for &(pos, deal, floor) in &scored {
            let c = &ix.campaigns[pos];
            if let Some((ci, _)) = pick_creative(c, imp, fmts) {
                rows.push(crate::scoring::with_ad(base, c.id, &c.creatives[ci].id));
                keep.push((pos, deal, floor));
            }
        }
        let mut p = Vec::with_capacity(rows.len());
        let ok = m.predict(&rows, &mut p);
        d.scored += rows.len() as u32;
        if !ok {
            d.score_failures += 1;
        }
        for (k, &(pos, deal, floor)) in keep.iter().enumerate() {
            let h = &ix.hot[pos];
            let v = match (ok, h.cpc) {
                (true, Some(cpc)) => (f64::from(p[k]) * cpc * 1000.0).min(h.max_cpm),
                _ => h.value_cpm,
            };
            let better = match best {
                None => true,
                Some((bv, bp, _)) => v > bv || (v == bv && h.id < ix.hot[bp].id),
            };
            if v.is_finite() && v > 0.0 && v >= floor && better {
                best = Some((v, pos, deal));
            }
        }
    }
    let Some((value, pos, deal)) = best else {
        return Err(if any {
            NoBid::Filtered
        } else {
            NoBid::NoCandidate
        });
    };
    let c = &ix.campaigns[pos];
    let floor = match deal {
        Some(di) => {
            let dl = pmp.map(|p| &p.deals[di]);
            dl.and_then(|dl| {
                if dl.bidfloor > 0.0 {
                    ix.to_usd(dl.bidfloor, &dl.bidfloorcur)
                } else {
                    None
                }
            })
            .unwrap_or(imp_floor)
        }
        None => imp_floor,
    };
    let Some((ci, fmt)) = pick_creative(c, imp, fmts) else {
        return Err(NoBid::Filtered);
    };
    let cr = &c.creatives[ci];
    let price_usd = if ctx.first_price {
        (value * cfg.first_price_shade).max(floor)
    } else {
        value
    };
    let price = round4(price_usd / usd_per_cur);
    st.freq_count(&ix.hot[pos], ctx.user, now);
    let bid_id = st.next_id();
    let ids = markup::Ids {
        auction: &req.id,
        imp: &imp.id,
        campaign: c.id,
        creative: &cr.id,
        test: ctx.test,
    };
    let base = cfg.public_url.trim_end_matches('/');
    let (w, h) = match fmt {
        FormatKey::Banner(w, h) => (Some(w), Some(h)),
        _ => (cr.w, cr.h),
    };
    let dealid = deal.and_then(|di| pmp.map(|p| p.deals[di].id.to_string()));
    let bid = Bid {
        id: bid_id,
        impid: imp.id.to_string(),
        price,
        nurl: markup::notice_url(base, "win", &ids, "p=${AUCTION_PRICE}"),
        burl: markup::notice_url(base, "bill", &ids, "p=${AUCTION_PRICE}"),
        lurl: markup::notice_url(base, "loss", &ids, "r=${AUCTION_LOSS}"),
        adm: markup::adm(base, cr, &ids, w, h),
        adomain: c.adomain.clone(),
        cid: c.id.to_string(),
        crid: cr.id.clone(),
        cat: c.cat.clone(),
        cattax: Some(c.cattax),
        w,
        h,
        dealid,
        mtype: match cr.format {
            CreativeFormat::Banner => 1,
            CreativeFormat::Video => 2,
            CreativeFormat::Native => 4,
        },
    };
    let ev = Event {
        id: event_id(st.shard, st.seq, now),
        kind: Kind::Bid,
        ts_micros: now.micros,
        shard: st.shard,
        auction_id: req.id.to_string(),
        imp_id: imp.id.to_string(),
        campaign_id: c.id,
        creative_id: cr.id.clone(),
        price_micros: (price_usd * 1e6) as i64,
        currency: "USD".into(),
        spend_micros: 0,
    };
    Ok((c.seat.clone(), bid, ev))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
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
    static TAG: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(std::process::id()) as u16
    })
}

/// Whether a deal (if bidding through one) admits the campaign's seat and domains.
fn deal_allows(
    ix: &Index,
    pos: usize,
    deal: Option<usize>,
    pmp: Option<&crate::openrtb::Pmp<'_>>,
) -> bool {
    let Some(dl) = deal.and_then(|di| pmp.map(|p| &p.deals[di])) else {
        return true;
    };
    let c = &ix.campaigns[pos];
    (dl.wseat.is_empty() || dl.wseat.iter().any(|s| s == &c.seat))
        && (dl.wadomain.is_empty() || c.adomain.iter().any(|a| dl.wadomain.iter().any(|w| w == a)))
}

/// Per-campaign state checks (request-wide blocks are bitset work in
/// [`targeting`]): day-parting, budget and pacing, frequency cap.
fn eligible(ix: &Index, pos: usize, st: &ShardState, ctx: &Ctx<'_>, now: Now) -> bool {
    let h = &ix.hot[pos];
    (!h.dayparts || daypart_ok(&ix.campaigns[pos], now))
        && st.budget_ok(h, pos, now)
        && st.freq_ok(h, ctx.user, now)
}

/// First creative of `c` that fits an offered format and the imp's constraints.
fn pick_creative(c: &Campaign, imp: &Imp<'_>, fmts: &[FormatKey]) -> Option<(usize, FormatKey)> {
    c.creatives.iter().enumerate().find_map(|(i, cr)| {
        let key = cr.format_key();
        if !fmts.contains(&key) {
            return None;
        }
        if let (CreativeFormat::Video, Some(v)) = (cr.format, &imp.video) {
            let dur = cr.duration.unwrap_or(0);
            if v.minduration.is_some_and(|m| dur < m)
                || v.maxduration.is_some_and(|m| m > 0 && dur > m)
            {
                return None;
            }
            let mime = cr.mime.as_deref().unwrap_or("video/mp4");
            if !v.mimes.is_empty() && !v.mimes.iter().any(|m| m == mime) {
                return None;
            }
        }
        Some((i, key))
    })
}

/// Notices a shard receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// nurl: we won.
    Win,
    /// burl: the impression is billable.
    Bill,
    /// lurl: we lost.
    Loss,
    /// Impression beacon.
    Imp,
    /// Click.
    Click,
}

impl NoticeKind {
    fn label(self) -> &'static str {
        match self {
            NoticeKind::Win => "win",
            NoticeKind::Bill => "bill",
            NoticeKind::Loss => "loss",
            NoticeKind::Imp => "imp",
            NoticeKind::Click => "click",
        }
    }
    fn event(self) -> Kind {
        match self {
            NoticeKind::Win => Kind::Win,
            NoticeKind::Bill => Kind::Bill,
            NoticeKind::Loss => Kind::Loss,
            NoticeKind::Imp => Kind::Impression,
            NoticeKind::Click => Kind::Click,
        }
    }
}

/// A notice's parameters, from its query string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notice {
    /// Auction id (`a`).
    pub auction: String,
    /// Impression id (`i`).
    pub imp: String,
    /// Campaign id (`c`).
    pub campaign: u64,
    /// Creative id (`cr`).
    pub creative: String,
    /// Clearing or charged price, CPM USD (`p`).
    pub price: Option<f64>,
    /// Test traffic (`t=1`): never charged.
    pub test: bool,
    /// Served through `/ad` (`src=ad`): the impression itself is charged.
    pub direct: bool,
}

/// A notice that cannot be processed: the parameter and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {reason}")]
pub struct NoticeError {
    /// Query parameter.
    pub param: &'static str,
    /// What is wrong.
    pub reason: String,
    /// Status to answer with.
    pub status: u16,
}

fn nerr(param: &'static str, reason: impl Into<String>) -> NoticeError {
    NoticeError {
        param,
        reason: reason.into(),
        status: 400,
    }
}

impl Notice {
    /// Parses a notice query. `p` is required for win and bill.
    pub fn parse(kind: NoticeKind, query: Option<&str>) -> Result<Notice, NoticeError> {
        let mut n = Notice::default();
        let mut campaign = None;
        for (k, v) in crate::http::query::pairs(query.unwrap_or("")) {
            match k.as_ref() {
                "a" => n.auction = v.into_owned(),
                "i" => n.imp = v.into_owned(),
                "c" => {
                    campaign = Some(
                        v.parse::<u64>()
                            .map_err(|_| nerr("c", "not a campaign id"))?,
                    )
                }
                "cr" => n.creative = v.into_owned(),
                "p" => {
                    let p: f64 = v.parse().map_err(|_| {
                        nerr(
                            "p",
                            format!("not a price: {v:?} (was the macro substituted?)"),
                        )
                    })?;
                    if !(p.is_finite() && p >= 0.0) {
                        return Err(nerr("p", "must be a non-negative price"));
                    }
                    n.price = Some(p);
                }
                "t" => n.test = v == "1",
                "src" => n.direct = v == "ad",
                _ => {}
            }
        }
        if n.auction.is_empty() {
            return Err(nerr("a", "required"));
        }
        if n.imp.is_empty() {
            return Err(nerr("i", "required"));
        }
        n.campaign = campaign.ok_or_else(|| nerr("c", "required"))?;
        if matches!(kind, NoticeKind::Win | NoticeKind::Bill) && n.price.is_none() {
            return Err(nerr("p", "required"));
        }
        Ok(n)
    }
}

/// What a notice did.
#[derive(Debug, Default)]
pub struct NoticeOutcome {
    /// Already seen: nothing recorded or charged.
    pub duplicate: bool,
    /// USD charged to the campaign on this shard.
    pub charged: f64,
    /// Where a click goes.
    pub redirect: Option<String>,
    /// The event to emit.
    pub event: Option<Event>,
}

/// Records a notice: de-duplicates it, charges spend once per auction and
/// impression (whichever of win, bill or a direct impression comes first),
/// and finds a click's landing page.
pub fn notice(
    ix: &Index,
    st: &mut ShardState,
    dedupe: &Dedupe,
    kind: NoticeKind,
    n: &Notice,
    now: Now,
) -> Result<NoticeOutcome, NoticeError> {
    let c = ix.campaign(n.campaign).ok_or(NoticeError {
        param: "c",
        reason: "unknown campaign".into(),
        status: 404,
    })?;
    let mut out = NoticeOutcome::default();
    if kind == NoticeKind::Click {
        let cr = c
            .creatives
            .iter()
            .find(|cr| cr.id == n.creative)
            .ok_or(NoticeError {
                param: "cr",
                reason: "unknown creative".into(),
                status: 404,
            })?;
        out.redirect = Some(cr.landing_url.clone());
    }
    if !dedupe.first_time(dedupe::key(kind.label(), &n.auction, &n.imp), now.day()) {
        out.duplicate = true;
        return Ok(out);
    }
    let chargeable =
        matches!(kind, NoticeKind::Win | NoticeKind::Bill) || (kind == NoticeKind::Imp && n.direct);
    if chargeable && !n.test {
        if let Some(p) = n.price {
            if dedupe.first_time(dedupe::key("spend", &n.auction, &n.imp), now.day()) {
                let usd = p / 1000.0;
                st.charge(ix, n.campaign, usd, now);
                out.charged = usd;
            }
        }
    }
    st.seq += 1;
    out.event = Some(Event {
        id: event_id(st.shard, st.seq, now),
        kind: kind.event(),
        ts_micros: now.micros,
        shard: st.shard,
        auction_id: n.auction.clone(),
        imp_id: n.imp.clone(),
        campaign_id: n.campaign,
        creative_id: n.creative.clone(),
        price_micros: n.price.map_or(0, |p| (p * 1e6) as i64),
        currency: "USD".into(),
        spend_micros: (out.charged * 1e6).round() as i64,
    });
    Ok(out)
}

#[cfg(test)]
mod tests;
