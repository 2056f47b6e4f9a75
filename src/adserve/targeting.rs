//! Targeting: which campaigns may bid on a request. Request-wide rules
//! (geography, device, site or app, content categories, audience segments,
//! COPPA, blocked categories, advertisers, apps and seats) become a
//! [`Plan`] over the index's posting lists, evaluated word by word by the
//! auction; per-campaign state (day-parting, budget and pacing, frequency
//! caps) is checked per candidate.

use super::plan::Plan;
use super::{BidderConfig, Now, ShardState};
use crate::index::{norm_domain, norm_lower, norm_upper, Bitset, Campaign, Dim, FormatKey, Index};
use crate::openrtb::{BidRequest, Imp};
use std::borrow::Cow;

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
pub(super) fn targeting<'a>(ix: &'a Index, req: &BidRequest<'_>, contextual: bool) -> Plan<'a> {
    let mut plan = Plan::default();
    plan.and(if req.app.is_some() {
        &ix.on_app
    } else {
        &ix.on_site
    });
    restrict_place(ix, req, &mut plan);
    restrict_content(ix, req, contextual, &mut plan);
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
fn restrict_place<'a>(ix: &'a Index, req: &BidRequest<'_>, plan: &mut Plan<'a>) {
    let dev = req.device.as_ref();
    let geo = dev
        .and_then(|d| d.geo.as_ref())
        .or(req.user.as_ref().and_then(|u| u.geo.as_ref()));
    // Each key normalised as the index was (borrowed when already so: the
    // usual case allocates nothing); an empty value is no key.
    let country = nonempty(geo.map(|g| norm_upper(&g.country)));
    restrict(&ix.country, country.as_deref(), plan);
    let region = nonempty(geo.map(|g| norm_upper(&g.region)));
    restrict(&ix.region, region.as_deref(), plan);
    let mut digits = [0u8; 3];
    let device_type = dev
        .and_then(|d| d.devicetype)
        .map(|t| decimal(t, &mut digits));
    restrict(&ix.device_type, device_type, plan);
    let os = nonempty(dev.map(|d| norm_lower(&d.os)));
    restrict(&ix.os, os.as_deref(), plan);
    match (&req.site, &req.app) {
        (_, Some(app)) => {
            let bundle = nonempty(Some(norm_lower(&app.bundle)));
            restrict(&ix.bundle, bundle.as_deref(), plan);
            restrict(&ix.domain, [], plan);
        }
        (site, None) => {
            let domain = nonempty(site.as_ref().map(|s| norm_domain(&s.domain)));
            restrict(&ix.domain, domain.as_deref(), plan);
            restrict(&ix.bundle, [], plan);
        }
    }
}

/// An empty value is no key.
fn nonempty(v: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    v.filter(|s| !s.is_empty())
}

/// `v` in decimal, written into `buf` (the device type's index key).
pub(super) fn decimal(v: u8, buf: &mut [u8; 3]) -> &str {
    let mut at = buf.len();
    let mut v = v;
    loop {
        at -= 1;
        buf[at] = b'0' + v % 10;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// What it would show beside, and to whom: content categories (a
/// subcategory also matches its parent) and audience segments; when the
/// request is contextual only (COPPA, GDPR, a privacy opt-out) no segment
/// is used and segment-targeted campaigns sit out.
fn restrict_content<'a>(
    ix: &'a Index,
    req: &BidRequest<'_>,
    contextual: bool,
    plan: &mut Plan<'a>,
) {
    // A subcategory also matches its parent.
    let cats = req
        .content_cats()
        .iter()
        .flat_map(|c| std::iter::once(&**c).chain(c.split_once('-').map(|(parent, _)| parent)));
    restrict(&ix.category, cats, plan);
    let segments = req
        .user
        .as_ref()
        .filter(|_| !contextual)
        .into_iter()
        .flat_map(|u| u.data.iter().flat_map(|d| d.segment.iter().map(|s| &*s.id)));
    restrict(&ix.segment, segments, plan);
    if contextual {
        // No behavioural targeting, so segment-targeted campaigns sit out.
        plan.and(&ix.no_segments);
    }
}

/// The request's blocks (categories, advertiser domains, apps, seats) and
/// its seat allow-list.
fn apply_blocks<'a>(ix: &'a Index, req: &BidRequest<'_>, plan: &mut Plan<'a>) {
    if !req.bcat.is_empty() {
        // Categories in another taxonomy cannot be checked: those campaigns stay out.
        match ix.cattax.get(&req.cattax.unwrap_or(1)) {
            Some(same) => plan.and(same),
            None => plan.none(),
        }
        block(&ix.cat_block, &req.bcat, plan);
    }
    block(&ix.adomain, req.badv.iter().map(|d| norm_lower(d)), plan);
    block(&ix.app_bundle, &req.bapp, plan);
    block(&ix.seat, &req.bseat, plan);
    apply_schain(ix, req, plan);
    if !req.wseat.is_empty() {
        plan.any_of(req.wseat.iter().filter_map(|w| ix.seat.get(w.as_ref())));
    }
}

/// Takes out the campaigns `m` lists under any of `keys`.
fn block<'a, K: AsRef<str>>(
    m: &'a std::collections::HashMap<String, Bitset>,
    keys: impl IntoIterator<Item = K>,
    plan: &mut Plan<'a>,
) {
    if m.is_empty() {
        return;
    }
    for k in keys {
        if let Some(b) = m.get(k.as_ref()) {
            plan.and_not(b);
        }
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
                if let Some(b) = ix.seller_domain_block.get(&*norm_domain(d)) {
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
    let most = super::auction::most_cpm(h, ctx.cfg.cpc_cap_multiple);
    (!h.dayparts || daypart_ok(ix.at(pos), now))
        && st.budget_ok(h, pos, most, now)
        && st.freq_ok(h, ctx.user, now)
}
