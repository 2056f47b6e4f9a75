//! The bid response (4.2): borrows what it echoes from the request and the
//! campaign index; `into_owned` detaches it.

use serde::Serialize;
use std::borrow::Cow;

/// Bid response (4.2.1). Borrows what it echoes from the request and the
/// campaign index (no copies on the bid path); `into_owned` detaches it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BidResponse<'a> {
    /// Echo of the request id.
    pub id: Cow<'a, str>,
    /// One seatbid per seat.
    pub seatbid: Vec<SeatBid<'a>>,
    /// Our id for this response.
    pub bidid: Cow<'a, str>,
    /// Currency of all prices.
    pub cur: Cow<'a, str>,
}

/// Seat bid (4.2.2).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SeatBid<'a> {
    /// Buyer seat.
    pub seat: Cow<'a, str>,
    /// Bids.
    pub bid: Vec<Bid<'a>>,
}

/// Bid (4.2.3).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Bid<'a> {
    /// Bid id.
    pub id: Cow<'a, str>,
    /// Impression bid on.
    pub impid: Cow<'a, str>,
    /// CPM price.
    pub price: f64,
    /// Win notice URL (carries `${AUCTION_PRICE}`).
    pub nurl: String,
    /// Billing notice URL (carries `${AUCTION_PRICE}`).
    pub burl: String,
    /// Loss notice URL (carries `${AUCTION_LOSS}`).
    pub lurl: String,
    /// Markup: banner HTML, VAST XML or native JSON.
    pub adm: String,
    /// Advertiser domains.
    pub adomain: Cow<'a, [String]>,
    /// Campaign id.
    pub cid: String,
    /// Creative id.
    pub crid: Cow<'a, str>,
    /// Creative categories.
    pub cat: Cow<'a, [String]>,
    /// Taxonomy of `cat` (2.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cattax: Option<u16>,
    /// Width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub w: Option<u32>,
    /// Height.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h: Option<u32>,
    /// Deal id, when bidding on a deal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dealid: Option<Cow<'a, str>>,
    /// Markup type (2.6): 1 banner, 2 video, 3 audio, 4 native.
    pub mtype: u8,
}

fn owned<T: ?Sized + ToOwned>(c: Cow<'_, T>) -> Cow<'static, T> {
    Cow::Owned(c.into_owned())
}

impl BidResponse<'_> {
    /// The same response, owning all of its data.
    pub fn into_owned(self) -> BidResponse<'static> {
        BidResponse {
            id: owned(self.id),
            bidid: owned(self.bidid),
            cur: owned(self.cur),
            seatbid: self
                .seatbid
                .into_iter()
                .map(|s| SeatBid {
                    seat: owned(s.seat),
                    bid: s
                        .bid
                        .into_iter()
                        .map(|b| Bid {
                            id: owned(b.id),
                            impid: owned(b.impid),
                            adomain: owned(b.adomain),
                            crid: owned(b.crid),
                            cat: owned(b.cat),
                            dealid: b.dealid.map(owned),
                            price: b.price,
                            nurl: b.nurl,
                            burl: b.burl,
                            lurl: b.lurl,
                            adm: b.adm,
                            cid: b.cid,
                            cattax: b.cattax,
                            w: b.w,
                            h: b.h,
                            mtype: b.mtype,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
