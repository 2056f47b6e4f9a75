//! An impression's winner becomes a bid: priced (second price bids its
//! value; first price shades it, never below the floor of the channel it
//! bids through), its creative picked, counted against its frequency cap,
//! its price held against its budget until the notice comes, and recorded
//! as a bid event.

use super::auction::Best;
use super::creative::pick_creative;
use super::targeting::Ctx;
use super::{event_id, NoBid, ShardState, Winner};
use crate::events::{Event, Kind};
use crate::index::{FormatKey, Index};
use crate::openrtb::Pmp;

/// The floor of the channel a bid goes through (CPM USD).
pub(super) fn channel_floor(
    ix: &Index,
    pmp: Option<&Pmp<'_>>,
    deal: Option<usize>,
    imp_floor: f64,
) -> f64 {
    deal.and_then(|di| pmp.map(|p| &p.deals[di]))
        .and_then(|dl| {
            if dl.bidfloor > 0.0 {
                ix.to_usd(dl.bidfloor, &dl.bidfloorcur)
            } else {
                None
            }
        })
        .unwrap_or(imp_floor)
}

/// Prices the best candidate, picks its creative, counts it against its
/// frequency cap, and records the bid event.
pub(super) fn win(
    ctx: &Ctx<'_, '_>,
    st: &mut ShardState,
    imp_ix: usize,
    fmts: &[FormatKey],
    best: Best,
    floor: f64,
) -> Result<(Winner, Event), NoBid> {
    let (ix, now) = (ctx.ix, ctx.now);
    let imp = &ctx.req.imp[imp_ix];
    let c = ix.at(best.pos);
    let Some((ci, fmt)) = pick_creative(ix, best.pos, imp, fmts) else {
        return Err(NoBid::Filtered);
    };
    let cr = &c.creatives[ci];
    let price_usd = if ctx.first_price {
        (best.value * ctx.cfg.first_price_shade).max(floor)
    } else {
        best.value
    };
    let price = round4(price_usd / ctx.usd_per_cur);
    let (freq_key, freq_window) = st
        .freq_count(&ix.hot[best.pos], ctx.user, now)
        .unwrap_or((0, 0));
    let bid_id = st.next_id();
    if ctx.req.test == 0 {
        // One impression at the bid price (what a win may charge at most).
        st.hold(best.pos, (price_usd * 1000.0).round() as i64, now);
    }
    let (w, h) = match fmt {
        FormatKey::Banner(w, h) => (Some(w), Some(h)),
        _ => (cr.w, cr.h),
    };
    let ev = Event {
        id: event_id(st.shard, st.seq, now),
        kind: Kind::Bid,
        ts_micros: now.micros,
        shard: st.shard,
        auction_id: ctx.req.id.to_string(),
        imp_id: imp.id.to_string(),
        campaign_id: c.id,
        creative_id: cr.id.clone(),
        price_micros: (price_usd * 1e6) as i64,
        currency: "USD".into(),
        spend_micros: 0,
        bid_id: bid_id.clone(),
        freq_key,
        freq_window: freq_window.min(u64::from(u32::MAX)) as u32,
        test: ctx.req.test == 1,
    };
    let winner = Winner {
        imp: imp_ix,
        campaign: best.pos,
        creative: ci,
        deal: best.deal,
        price,
        price_usd,
        fx: ctx.usd_per_cur,
        issued: now.secs,
        w,
        h,
        bid_id,
    };
    Ok((winner, ev))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
