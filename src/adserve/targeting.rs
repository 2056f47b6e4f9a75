//! Targeting: which campaigns may bid on a request. Request-wide rules
//! (geography, device, site or app, content categories, audience segments,
//! COPPA, blocked categories, advertisers, apps and seats) become a
//! [`Plan`] over the index's posting lists, evaluated word by word by the
//! auction; per-campaign state (day-parting, budget and pacing, frequency
//! caps) is checked per candidate.

use super::plan::Plan;
use super::{BidderConfig, Now, ShardState};
use crate::index::{Bitset, Campaign, Dim, FormatKey, Index};
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
    /// Visit every candidate (no best-first early exit): the reference.
    pub(super) exhaustive: bool,
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
    if imp.audio.is_some() {
        out.push(FormatKey::Audio);
    }
}

/// The plan of the campaigns whose request-wide targeting matches, less
/// those the request's blocks exclude (nothing is evaluated yet).
pub(super) fn targeting<'a>(
    ix: &'a Index,
    st: &mut ShardState,
    req: &BidRequest<'_>,
    contextual: bool,
) -> Plan<'a> {
    let mut plan = Plan::default();
    plan.and(if req.app.is_some() {
        &ix.on_app
    } else {
        &ix.on_site
    });
    restrict_place(ix, st, req, &mut plan);
    restrict_content(ix, st, req, contextual, &mut plan);
    apply_blocks(ix, req, &mut plan);
    plan
}

/// `plan &= (dim.any | dim.by[k] for each k)`; nothing when no campaign
/// targets the dimension.
fn restrict<'a, 'k>(dim: &'a Dim, keys: impl IntoIterator<Item = &'k str>, plan: &mut Plan<'a>) {
    if dim.untargeted() {
        return;
    }
    plan.any_of(std::iter::once(dim.any()).chain(keys.into_iter().filter_map(|k| dim.by(k))));
}

/// Where the ad would show: geography, device type, OS, site domain or app bundle.
fn restrict_place<'a>(
    ix: &'a Index,
    st: &mut ShardState,
    req: &BidRequest<'_>,
    plan: &mut Plan<'a>,
) {
    let keys = &mut st.keys;
    let dev = req.device.as_ref();
    let geo = dev
        .and_then(|d| d.geo.as_ref())
        .or(req.user.as_ref().and_then(|u| u.geo.as_ref()));
    let one = |keys: &mut Vec<String>, v: Option<String>| {
        keys.clear();
        keys.extend(v.filter(|s| !s.is_empty()));
    };
    one(keys, geo.map(|g| g.country.to_ascii_uppercase()));
    restrict(&ix.country, keys.iter().map(String::as_str), plan);
    one(keys, geo.map(|g| g.region.to_ascii_uppercase()));
    restrict(&ix.region, keys.iter().map(String::as_str), plan);
    one(keys, dev.and_then(|d| d.devicetype).map(|t| t.to_string()));
    restrict(&ix.device_type, keys.iter().map(String::as_str), plan);
    one(keys, dev.map(|d| d.os.to_ascii_lowercase()));
    restrict(&ix.os, keys.iter().map(String::as_str), plan);
    match (&req.site, &req.app) {
        (_, Some(app)) => {
            one(keys, Some(app.bundle.to_ascii_lowercase()));
            restrict(&ix.bundle, keys.iter().map(String::as_str), plan);
            restrict(&ix.domain, [], plan);
        }
        (site, None) => {
            one(
                keys,
                site.as_ref().map(|s| crate::index::norm_domain(&s.domain)),
            );
            restrict(&ix.domain, keys.iter().map(String::as_str), plan);
            restrict(&ix.bundle, [], plan);
        }
    }
}

/// What it would show beside, and to whom: content categories (a
/// subcategory also matches its parent) and audience segments; when the
/// request is contextual only (COPPA, GDPR, a privacy opt-out) no segment
/// is used and segment-targeted campaigns sit out.
fn restrict_content<'a>(
    ix: &'a Index,
    st: &mut ShardState,
    req: &BidRequest<'_>,
    contextual: bool,
    plan: &mut Plan<'a>,
) {
    let keys = &mut st.keys;
    keys.clear();
    for c in req.content_cats() {
        keys.push(c.to_string());
        if let Some((parent, _)) = c.split_once('-') {
            keys.push(parent.to_string());
        }
    }
    restrict(&ix.category, keys.iter().map(String::as_str), plan);
    keys.clear();
    if !contextual {
        if let Some(u) = &req.user {
            keys.extend(
                u.data
                    .iter()
                    .flat_map(|d| d.segment.iter().map(|s| s.id.to_string())),
            );
        }
    }
    restrict(&ix.segment, keys.iter().map(String::as_str), plan);
    if contextual {
        // No behavioural targeting, so segment-targeted campaigns sit out.
        plan.and(&ix.no_segments);
    }
}

/// The request's blocks (categories, advertiser domains, apps, seats) and
/// its seat allow-list.
fn apply_blocks<'a>(ix: &'a Index, req: &BidRequest<'_>, plan: &mut Plan<'a>) {
    let block = |m: &'a std::collections::HashMap<String, Bitset>,
                 keys: &mut dyn Iterator<Item = String>,
                 plan: &mut Plan<'a>| {
        for k in keys {
            if let Some(b) = m.get(&k) {
                plan.and_not(b);
            }
        }
    };
    if !req.bcat.is_empty() {
        // Categories in another taxonomy cannot be checked: those campaigns stay out.
        match ix.cattax.get(&req.cattax.unwrap_or(1)) {
            Some(same) => plan.and(same),
            None => plan.none(),
        }
        block(
            &ix.cat_block,
            &mut req.bcat.iter().map(|c| c.to_string()),
            plan,
        );
    }
    block(
        &ix.adomain,
        &mut req.badv.iter().map(|d| d.to_ascii_lowercase()),
        plan,
    );
    block(
        &ix.app_bundle,
        &mut req.bapp.iter().map(|b| b.to_string()),
        plan,
    );
    block(&ix.seat, &mut req.bseat.iter().map(|b| b.to_string()), plan);
    apply_schain(ix, req, plan);
    if !req.wseat.is_empty() {
        plan.any_of(req.wseat.iter().filter_map(|w| ix.seat.get(w.as_ref())));
    }
}

/// The supply chain: campaigns needing a complete one sit out without it;
/// a blocked seller or seller domain anywhere in it blocks its campaigns.
fn apply_schain<'a>(ix: &'a Index, req: &BidRequest<'_>, plan: &mut Plan<'a>) {
    let chain = req.schain();
    if let Some(need) = &ix.schain_required {
        if !chain.is_some_and(|c| c.is_complete()) {
            plan.and_not(need);
        }
    }
    let Some(chain) = chain else { return };
    for n in &chain.nodes {
        if !ix.seller_block.is_empty() && !n.sid.is_empty() {
            let key = crate::index::seller_key(&format!("{}:{}", n.asi, n.sid));
            if let Some(b) = ix.seller_block.get(&key) {
                plan.and_not(b);
            }
        }
        if !ix.seller_domain_block.is_empty() {
            for d in [&n.asi, &n.domain] {
                if let Some(b) = ix.seller_domain_block.get(&crate::index::norm_domain(d)) {
                    plan.and_not(b);
                }
            }
        }
    }
}

/// Per-campaign state checks (request-wide blocks are bitset work in
/// [`targeting`]): day-parting, budget and pacing, frequency cap.
pub(super) fn eligible(ctx: &Ctx<'_, '_>, pos: usize, st: &ShardState) -> bool {
    let (ix, now) = (ctx.ix, ctx.now);
    let h = &ix.hot[pos];
    (!h.dayparts || daypart_ok(ix.at(pos), now))
        && st.budget_ok(h, pos, now)
        && st.freq_ok(h, ctx.user, now)
}
