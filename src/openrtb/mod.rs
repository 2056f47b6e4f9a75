//! OpenRTB 2.5 / 2.6 bid requests and responses: the subset of fields the
//! bidder reads or writes, decoded without copying where the JSON allows
//! (`Cow` borrows unescaped strings), unknown fields tolerated, every field
//! read leniently ([`lenient`]: an unusable value is dropped and noted, not
//! the request), then checked by [`BidRequest::sanitize`], which drops bad
//! impressions and refuses only what cannot be answered, naming the field.
//!
//! This module knows the wire format only; it never touches the campaign
//! index and does no I/O.

use serde::Deserialize;
use std::borrow::Cow;

pub mod capnp_codec;
pub mod consent;
mod fields;
mod json;
pub mod lenient;
mod media;
pub mod native;
mod privacy;
mod response;
pub mod schain;

use fields as f;

pub use consent::Consent;
pub use json::{decode_json, encode_json, JsonDecoder};
pub use media::{Audio, Banner, Format, Native, Video};
pub use native::NativeSpec;
pub use privacy::{Contextual, Regs, RegsExt};
pub use response::{Bid, BidResponse, SeatBid};

/// A string from the request: borrowed from the body unless it had escapes.
/// (Fields spell out `Cow<'a, str>`: serde's `borrow` recognises that type by
/// its spelling, and an alias would silently copy every string.)
type Str<'a> = Cow<'a, str>;

/// Top-level bid request (OpenRTB 2.5 3.2.1 / 2.6 3.2.1). Every field is
/// read leniently (see [`lenient`]): a value the bidder cannot use is
/// dropped and noted, never a reason to refuse the request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BidRequest<'a> {
    /// Auction id.
    #[serde(borrow, default, deserialize_with = "f::id")]
    pub id: Cow<'a, str>,
    /// Impressions offered.
    #[serde(borrow, default, deserialize_with = "f::imps")]
    pub imp: Vec<Imp<'a>>,
    /// Website, if the ad is on a site.
    #[serde(borrow, default, deserialize_with = "f::site")]
    pub site: Option<Site<'a>>,
    /// App, if the ad is in an app.
    #[serde(borrow, default, deserialize_with = "f::app")]
    pub app: Option<App<'a>>,
    /// The device.
    #[serde(borrow, default, deserialize_with = "f::device")]
    pub device: Option<Device<'a>>,
    /// The user.
    #[serde(borrow, default, deserialize_with = "f::user")]
    pub user: Option<User<'a>>,
    /// 1 = test mode: bid, but spend nothing.
    #[serde(default, deserialize_with = "f::test")]
    pub test: u8,
    /// Auction type: 1 first price, 2 second price plus; 500+ exchange-specific.
    #[serde(default = "second_price", deserialize_with = "f::at")]
    pub at: u16,
    /// Max time in ms the exchange waits for the response.
    #[serde(default, deserialize_with = "f::tmax")]
    pub tmax: Option<u32>,
    /// Allowed seats (buyer seat ids).
    #[serde(borrow, default, deserialize_with = "f::lists")]
    pub wseat: Vec<Cow<'a, str>>,
    /// Blocked seats.
    #[serde(borrow, default, deserialize_with = "f::lists")]
    pub bseat: Vec<Cow<'a, str>>,
    /// Allowed currencies.
    #[serde(borrow, default, deserialize_with = "f::lists")]
    pub cur: Vec<Cow<'a, str>>,
    /// Blocked advertiser categories.
    #[serde(borrow, default, deserialize_with = "f::lists")]
    pub bcat: Vec<Cow<'a, str>>,
    /// Taxonomy of `bcat` (2.6): 1 = IAB 1.0 (default), 2 = 2.0, ...
    #[serde(default, deserialize_with = "f::cattax")]
    pub cattax: Option<u16>,
    /// Blocked advertiser domains.
    #[serde(borrow, default, deserialize_with = "f::lists")]
    pub badv: Vec<Cow<'a, str>>,
    /// Blocked app bundles.
    #[serde(borrow, default, deserialize_with = "f::lists")]
    pub bapp: Vec<Cow<'a, str>>,
    /// Regulations.
    #[serde(default, deserialize_with = "f::regs")]
    pub regs: Option<Regs>,
    /// Source of the request: the supply chain.
    #[serde(borrow, default, deserialize_with = "f::source")]
    pub source: Option<schain::Source<'a>>,
    /// What the consent strings say (read by [`BidRequest::sanitize`]).
    #[serde(skip)]
    pub consent: consent::Consent,
}

fn second_price() -> u16 {
    2
}

/// An impression (3.2.4).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Imp<'a> {
    /// Id, unique within the request.
    #[serde(borrow, default, deserialize_with = "f::imp_id")]
    pub id: Cow<'a, str>,
    /// Banner offer.
    #[serde(borrow, default, deserialize_with = "f::banner")]
    pub banner: Option<Banner<'a>>,
    /// Video offer.
    #[serde(borrow, default, deserialize_with = "f::video")]
    pub video: Option<Video<'a>>,
    /// Native offer.
    #[serde(borrow, default, deserialize_with = "f::native")]
    pub native: Option<Native<'a>>,
    /// Audio offer.
    #[serde(borrow, default, deserialize_with = "f::audio")]
    pub audio: Option<Audio<'a>>,
    /// Minimum bid, CPM in `bidfloorcur` (a negative one is dropped).
    #[serde(default, deserialize_with = "f::bidfloor")]
    pub bidfloor: f64,
    /// Currency of `bidfloor`.
    #[serde(borrow, default = "usd", deserialize_with = "f::floorcur")]
    pub bidfloorcur: Cow<'a, str>,
    /// Private marketplace.
    #[serde(borrow, default, deserialize_with = "f::pmp")]
    pub pmp: Option<Pmp<'a>>,
    /// 1 = interstitial.
    #[serde(default, deserialize_with = "f::instl")]
    pub instl: u8,
    /// Ad slot / tag id.
    #[serde(borrow, default, deserialize_with = "f::imp_str")]
    pub tagid: Cow<'a, str>,
    /// 1 = the page is https: markup, creatives and trackers must be too.
    #[serde(default, deserialize_with = "f::secure")]
    pub secure: Option<u8>,
}

impl Imp<'_> {
    /// Whether everything the bid loads must be https.
    pub fn is_secure(&self) -> bool {
        self.secure == Some(1)
    }
}

fn usd<'a>() -> Cow<'a, str> {
    Cow::Borrowed("USD")
}

/// Private marketplace (3.2.11).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pmp<'a> {
    /// 1 = only the deals below may bid.
    #[serde(default, deserialize_with = "f::private_auction")]
    pub private_auction: u8,
    /// Deals.
    #[serde(borrow, default, deserialize_with = "f::deals")]
    pub deals: Vec<Deal<'a>>,
}

/// A deal (3.2.12).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Deal<'a> {
    /// Deal id.
    #[serde(borrow, default, deserialize_with = "f::deal_id")]
    pub id: Cow<'a, str>,
    /// Floor for this deal, CPM (a negative one is dropped).
    #[serde(default, deserialize_with = "f::deal_floor")]
    pub bidfloor: f64,
    /// Currency of the floor.
    #[serde(borrow, default = "usd", deserialize_with = "f::deal_cur")]
    pub bidfloorcur: Cow<'a, str>,
    /// Seats allowed on this deal.
    #[serde(borrow, default, deserialize_with = "f::deal_list")]
    pub wseat: Vec<Cow<'a, str>>,
    /// Advertiser domains allowed on this deal.
    #[serde(borrow, default, deserialize_with = "f::deal_list")]
    pub wadomain: Vec<Cow<'a, str>>,
}

/// Site (3.2.13).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Site<'a> {
    /// Site id.
    #[serde(borrow, default, deserialize_with = "f::site_str")]
    pub id: Cow<'a, str>,
    /// Domain.
    #[serde(borrow, default, deserialize_with = "f::site_str")]
    pub domain: Cow<'a, str>,
    /// Content categories.
    #[serde(borrow, default, deserialize_with = "f::site_list")]
    pub cat: Vec<Cow<'a, str>>,
    /// Page URL.
    #[serde(borrow, default, deserialize_with = "f::site_str")]
    pub page: Cow<'a, str>,
    /// Publisher.
    #[serde(borrow, default, deserialize_with = "f::publisher")]
    pub publisher: Option<Publisher<'a>>,
}

/// App (3.2.14).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct App<'a> {
    /// App id.
    #[serde(borrow, default, deserialize_with = "f::app_str")]
    pub id: Cow<'a, str>,
    /// Bundle or package name.
    #[serde(borrow, default, deserialize_with = "f::app_str")]
    pub bundle: Cow<'a, str>,
    /// Domain.
    #[serde(borrow, default, deserialize_with = "f::app_str")]
    pub domain: Cow<'a, str>,
    /// Content categories.
    #[serde(borrow, default, deserialize_with = "f::app_list")]
    pub cat: Vec<Cow<'a, str>>,
    /// Publisher.
    #[serde(borrow, default, deserialize_with = "f::publisher")]
    pub publisher: Option<Publisher<'a>>,
}

/// Publisher (3.2.15).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Publisher<'a> {
    /// Publisher id.
    #[serde(borrow, default, deserialize_with = "f::publisher_str")]
    pub id: Cow<'a, str>,
}

/// Device (3.2.18).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Device<'a> {
    /// User agent.
    #[serde(borrow, default, deserialize_with = "f::device_str")]
    pub ua: Cow<'a, str>,
    /// IPv4 address.
    #[serde(borrow, default, deserialize_with = "f::device_str")]
    pub ip: Cow<'a, str>,
    /// IPv6 address.
    #[serde(borrow, default, deserialize_with = "f::device_str")]
    pub ipv6: Cow<'a, str>,
    /// Advertising id (IDFA, AAID, ...).
    #[serde(borrow, default, deserialize_with = "f::device_str")]
    pub ifa: Cow<'a, str>,
    /// Device type (list 5.21): 1 mobile/tablet, 2 PC, 3 CTV, 4 phone, 5 tablet, ...
    #[serde(default, deserialize_with = "f::device_num")]
    pub devicetype: Option<u8>,
    /// Operating system.
    #[serde(borrow, default, deserialize_with = "f::device_str")]
    pub os: Cow<'a, str>,
    /// Make.
    #[serde(borrow, default, deserialize_with = "f::device_str")]
    pub make: Cow<'a, str>,
    /// Model.
    #[serde(borrow, default, deserialize_with = "f::device_str")]
    pub model: Cow<'a, str>,
    /// Connection type.
    #[serde(default, deserialize_with = "f::device_num")]
    pub connectiontype: Option<u8>,
    /// 1 = limit ad tracking.
    #[serde(default, deserialize_with = "f::flag")]
    pub lmt: Option<u8>,
    /// 1 = do not track.
    #[serde(default, deserialize_with = "f::flag")]
    pub dnt: Option<u8>,
    /// Location.
    #[serde(borrow, default, deserialize_with = "f::geo")]
    pub geo: Option<Geo<'a>>,
}

/// Geo (3.2.19).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Geo<'a> {
    /// ISO-3166-1 alpha-3 country.
    #[serde(borrow, default, deserialize_with = "f::geo_str")]
    pub country: Cow<'a, str>,
    /// ISO-3166-2 region.
    #[serde(borrow, default, deserialize_with = "f::geo_str")]
    pub region: Cow<'a, str>,
    /// City.
    #[serde(borrow, default, deserialize_with = "f::geo_str")]
    pub city: Cow<'a, str>,
}

/// User (3.2.20).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct User<'a> {
    /// Exchange user id.
    #[serde(borrow, default, deserialize_with = "f::user_id")]
    pub id: Cow<'a, str>,
    /// Buyer user id.
    #[serde(borrow, default, deserialize_with = "f::user_id")]
    pub buyeruid: Cow<'a, str>,
    /// Data segments.
    #[serde(borrow, default, deserialize_with = "f::data")]
    pub data: Vec<Data<'a>>,
    /// Home geo.
    #[serde(borrow, default, deserialize_with = "f::geo")]
    pub geo: Option<Geo<'a>>,
    /// IAB TCF v2 consent string (2.6).
    #[serde(borrow, default, deserialize_with = "f::consent")]
    pub consent: Cow<'a, str>,
    /// 2.5 location of the consent string.
    #[serde(borrow, default, deserialize_with = "f::user_ext")]
    pub ext: Option<UserExt<'a>>,
}

/// `user.ext` (OpenRTB 2.5 as Prebid sends it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserExt<'a> {
    /// IAB TCF v2 consent string.
    #[serde(borrow, default, deserialize_with = "f::consent")]
    pub consent: Cow<'a, str>,
}

/// Data provider (3.2.21).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Data<'a> {
    /// Provider id.
    #[serde(borrow, default, deserialize_with = "f::data_str")]
    pub id: Cow<'a, str>,
    /// Segments.
    #[serde(borrow, default, deserialize_with = "f::segments")]
    pub segment: Vec<Segment<'a>>,
}

/// Segment (3.2.22).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Segment<'a> {
    /// Segment id.
    #[serde(borrow, default, deserialize_with = "f::data_str")]
    pub id: Cow<'a, str>,
}

/// A request that is well-formed JSON but breaks the spec, or is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RequestError {
    /// Dotted path of the offending field (`imp[0].id`), or `body`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl RequestError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RequestError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The JSON body of a 400 answer.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "error": "invalid bid request", "field": self.field, "reason": self.reason }).to_string()
    }
}

/// Most impressions auctioned in one request; the rest are dropped (noted
/// as `imp`). Exchanges send one to a few dozen (a 2.6 video pod included);
/// a 1 MiB body holds 24,000, whose auctions and answer held a shard for
/// 0.9 s.
pub const MAX_IMPS: usize = 128;

/// Longest request or impression id taken, in bytes. Ids travel in every
/// event the request makes (a spool frame holds at most 64 KiB, and one
/// over it would read back as damage, losing the events after it), in
/// notice URLs and in the answer. Exchanges send UUIDs (36) or hex (40).
pub const MAX_ID_BYTES: usize = 1024;

impl BidRequest<'_> {
    /// Checks what the spec requires beyond types, dropping what cannot be
    /// used (noted in [`lenient`]'s log): impressions past [`MAX_IMPS`]; an
    /// impression without an id, with an id already seen or longer than
    /// [`MAX_ID_BYTES`], or offering no banner, video, audio or native;
    /// a deal without an id; `app` beside `site` (the site is kept: the
    /// page is what was offered). `tmax` 0 reads as not set. An unknown auction type (below 500) is
    /// taken as first price (we pay at most what we bid). Refused (400): no
    /// id or one too long, or no impressions at all.
    pub fn sanitize(&mut self) -> Result<(), RequestError> {
        use lenient::{note, Dropped as X};
        if self.id.is_empty() {
            return Err(RequestError::new("id", "required, must be non-empty"));
        }
        if self.id.len() > MAX_ID_BYTES {
            return Err(RequestError::new(
                "id",
                format!("longer than {MAX_ID_BYTES} bytes"),
            ));
        }
        if self.imp.is_empty() && !lenient::any() {
            return Err(RequestError::new(
                "imp",
                "required, must hold at least one impression",
            ));
        }
        if self.imp.len() > MAX_IMPS {
            note(X::Imp);
            self.imp.truncate(MAX_IMPS);
        }
        // `tmax` 0 sets no limit (Prebid Server reads it so; the Cap'n
        // Proto transport cannot tell 0 from absent): not a zero budget.
        if self.tmax == Some(0) {
            self.tmax = None;
        }
        if self.site.is_some() && self.app.is_some() {
            note(X::App);
            self.app = None;
        }
        if !matches!(self.at, 1 | 2) && self.at < 500 {
            note(X::At);
            self.at = 1;
        }
        let mut i = 0;
        while i < self.imp.len() {
            let imp = &self.imp[i];
            let why = if imp.id.is_empty()
                || imp.id.len() > MAX_ID_BYTES
                || self.imp[..i].iter().any(|o| o.id == imp.id)
            {
                Some(X::ImpId)
            } else if imp.banner.is_none()
                && imp.video.is_none()
                && imp.native.is_none()
                && imp.audio.is_none()
            {
                Some(X::ImpMedia)
            } else {
                None
            };
            if let Some(why) = why {
                note(why);
                self.imp.remove(i);
                continue;
            }
            let imp = &mut self.imp[i];
            if let Some(v) = imp.video.as_mut().filter(|v| v.protocols.is_empty()) {
                v.protocols.extend(v.protocol);
            }
            if let Some(n) = imp.native.as_mut().filter(|n| n.spec.is_none()) {
                n.spec = n
                    .request
                    .take()
                    .and_then(|v| NativeSpec::from_value(&v, n.ver.as_deref()).ok());
                if n.spec.is_none() {
                    // Nothing we could fill: the native offer goes, the rest stays.
                    note(X::NativeRequest);
                    imp.native = None;
                    if imp.banner.is_none() && imp.video.is_none() && imp.audio.is_none() {
                        note(X::ImpMedia);
                        self.imp.remove(i);
                        continue;
                    }
                }
            }
            if let Some(pmp) = &mut self.imp[i].pmp {
                pmp.deals.retain(|d| {
                    let keep = !d.id.is_empty();
                    if !keep {
                        note(X::Deal);
                    }
                    keep
                });
            }
            i += 1;
        }
        self.read_consent();
        Ok(())
    }

    /// The supply chain, from either location.
    pub fn schain(&self) -> Option<&schain::SChain<'_>> {
        self.source.as_ref().and_then(|s| s.chain())
    }

    /// Content categories of the site or app.
    pub fn content_cats(&self) -> &[Str<'_>] {
        match (&self.site, &self.app) {
            (Some(s), _) => &s.cat,
            (_, Some(a)) => &a.cat,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests;
