//! The OpenRTB bid response, rendered once from a decision's winners: one
//! bid per winner, grouped by seat, with its markup and its win, bill and
//! loss notice URLs (the exchange substitutes `${AUCTION_PRICE}` and
//! `${AUCTION_LOSS}`), all signed once per bid.

use super::creative::mtype;
use super::markup::{self, Ids};
use super::signing::NoticeKeys;
use super::{BidderConfig, Decision, Winner};
use crate::index::Index;
use crate::openrtb::{Bid, BidRequest, BidResponse, SeatBid};
use std::borrow::Cow;

/// The bid response for `d`, or `None` when nothing won (204).
pub fn bid_response<'a>(
    ix: &'a Index,
    req: &'a BidRequest<'_>,
    d: &'a Decision,
    cfg: &BidderConfig,
    keys: &NoticeKeys,
) -> Option<BidResponse<'a>> {
    if d.winners.is_empty() {
        return None;
    }
    let mut seatbid: Vec<SeatBid> = Vec::new();
    for w in &d.winners {
        // A secure impression's notices and trackers are https.
        let base = cfg.base_for(req.imp[w.imp].is_secure());
        let (seat, bid) = render_bid(ix, req, w, &d.cur, base, keys);
        match seatbid.iter_mut().find(|s| s.seat == seat) {
            Some(s) => s.bid.push(bid),
            None => seatbid.push(SeatBid {
                seat,
                bid: vec![bid],
            }),
        }
    }
    Some(BidResponse {
        id: Cow::Borrowed(&req.id),
        seatbid,
        bidid: Cow::Borrowed(&d.bidid),
        cur: Cow::Borrowed(&d.cur),
    })
}

/// The notice ids of a winner, bid in currency `cur`.
pub fn ids<'a>(ix: &'a Index, req: &'a BidRequest<'_>, w: &'a Winner, cur: &'a str) -> Ids<'a> {
    let c = ix.at(w.campaign);
    Ids {
        bid: &w.bid_id,
        auction: &req.id,
        imp: &req.imp[w.imp].id,
        campaign: c.id,
        creative: &c.creatives[w.creative].id,
        test: req.test == 1,
        price: w.price.to_string(),
        cur,
        // USD at 1 (most bids) needs no float formatting.
        fx: if w.fx == 1.0 {
            "1".into()
        } else {
            w.fx.to_string()
        },
        issued: w.issued,
    }
}

/// One winner's bid and the seat it goes under.
fn render_bid<'a>(
    ix: &'a Index,
    req: &'a BidRequest<'_>,
    w: &'a Winner,
    cur: &str,
    base: &str,
    keys: &NoticeKeys,
) -> (Cow<'a, str>, Bid<'a>) {
    let imp = &req.imp[w.imp];
    let c = ix.at(w.campaign);
    let cr = &c.creatives[w.creative];
    let ids = ids(ix, req, w, cur);
    let t = ids.tracker(keys, "rtb");
    let dealid = w
        .deal
        .and_then(|di| imp.pmp.as_ref().map(|p| Cow::Borrowed(&*p.deals[di].id)));
    let bid = Bid {
        id: Cow::Borrowed(&w.bid_id),
        impid: Cow::Borrowed(&imp.id),
        price: w.price,
        nurl: markup::notice_url(base, "win", &t, "p=${AUCTION_PRICE}"),
        burl: markup::notice_url(base, "bill", &t, "p=${AUCTION_PRICE}"),
        lurl: markup::notice_url(base, "loss", &t, "r=${AUCTION_LOSS}"),
        adm: markup::adm(
            base,
            cr,
            &ids.tracker(keys, "mk"),
            c.id,
            &markup::Slot {
                w: w.w,
                h: w.h,
                imp: Some(imp),
                bid: &w.bid_id,
            },
        ),
        adomain: Cow::Borrowed(&c.adomain),
        cid: c.id.to_string(),
        crid: Cow::Borrowed(&cr.id),
        cat: Cow::Borrowed(&c.cat),
        cattax: Some(c.cattax),
        w: w.w,
        h: w.h,
        dealid,
        mtype: mtype(cr.format),
    };
    (Cow::Borrowed(&c.seat), bid)
}
