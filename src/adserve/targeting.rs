//! Targeting: which campaigns may bid on a request. Request-wide rules
//! (geography, device, site or app, content categories, audience segments,
//! COPPA, blocked categories, advertisers, apps and seats) are bitset work
//! over the index's posting lists; per-campaign state (day-parting, budget
//! and pacing, frequency caps) is checked per candidate.

use super::{BidderConfig, Now, ShardState};
use crate::index::{Bitset, Campaign, FormatKey, Index};
use crate::openrtb::{BidRequest, Imp};

/// Request-wide facts every impression's auction reads.
pub(super) struct Ctx<'a, 'r> {
    pub(super) ix: &'a Index,
    pub(super) cfg: &'a BidderConfig,
    pub(super) req: &'r BidRequest<'r>,
    pub(super) now: Now,
    /// Hashed user id, for frequency caps (none under COPPA).
    pub(super) user: Option<u64>,
    pub(super) first_price: bool,
    /// USD per unit of the response currency.
    pub(super) usd_per_cur: f64,
}

pub(super) fn daypart_ok(c: &Campaign, now: Now) -> bool {
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
pub(super) fn offered(imp: &Imp<'_>, out: &mut Vec<FormatKey>) {
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

/// Restricts `st.base` to the campaigns whose request-wide targeting matches,
/// less those the request's blocks exclude.
pub(super) fn targeting(ix: &Index, st: &mut ShardState, req: &BidRequest<'_>, coppa: bool) {
    st.base.copy_from(if req.app.is_some() {
        &ix.on_app
    } else {
        &ix.on_site
    });
    restrict_place(ix, st, req);
    restrict_content(ix, st, req, coppa);
    apply_blocks(ix, st, req);
}

/// Where the ad would show: geography, device type, OS, site domain or app bundle.
fn restrict_place(ix: &Index, st: &mut ShardState, req: &BidRequest<'_>) {
    let ShardState {
        base, tmp, keys, ..
    } = st;
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
}

/// What it would show beside, and to whom: content categories (a
/// subcategory also matches its parent) and audience segments; under COPPA
/// no segment is used and segment-targeted campaigns sit out.
fn restrict_content(ix: &Index, st: &mut ShardState, req: &BidRequest<'_>, coppa: bool) {
    let ShardState {
        base, tmp, keys, ..
    } = st;
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
}

/// The request's blocks (categories, advertiser domains, apps, seats) and
/// its seat allow-list.
fn apply_blocks(ix: &Index, st: &mut ShardState, req: &BidRequest<'_>) {
    let ShardState { base, tmp, .. } = st;
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

/// Per-campaign state checks (request-wide blocks are bitset work in
/// [`targeting`]): day-parting, budget and pacing, frequency cap.
pub(super) fn eligible(ctx: &Ctx<'_, '_>, pos: usize, st: &ShardState) -> bool {
    let (ix, now) = (ctx.ix, ctx.now);
    let h = &ix.hot[pos];
    (!h.dayparts || daypart_ok(&ix.campaigns[pos], now))
        && st.budget_ok(h, pos, now)
        && st.freq_ok(h, ctx.user, now)
}
