//! Notices: wins, bills and losses from exchanges, impression and click
//! beacons. Parsed from their query, verified against their signature,
//! priced exactly, de-duplicated by our bid id, and turned into an event and
//! a charge. Nothing here writes: the caller queues the event and applies
//! the charge only once the event is queued (see `api::notices`).
//!
//! What is charged, once per bid (whichever comes first): a win or a bill
//! at the clearing price the exchange substituted (`p`, in the currency of
//! the bid), never above the signed bid price; an impression served through
//! `/ad` at the signed bid price (`p` is ignored there). The amount is
//! converted to USD with the rate signed into the URL (the one the bid
//! used) and rounded to the micro-dollar.

use super::dedupe::{self, Claim, Dedupe, Seen};
use super::signing::{NoticeKeys, Rejected, Signed};
use super::{event_id, Now, ShardState};
use crate::events::{Event, Kind};
use crate::index::Index;
use crate::quality::clicks::{ImpTimes, InvalidClick};

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

/// A notice's parameters, from its query string, as written (the signed
/// fields are verified as text, then read as numbers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notice {
    /// Our bid id (`b`).
    pub bid: String,
    /// Auction id (`a`).
    pub auction: String,
    /// Impression id (`i`).
    pub imp: String,
    /// Campaign id (`c`), as written.
    pub campaign: String,
    /// Creative id (`cr`).
    pub creative: String,
    /// Bid price, CPM in `cur` (`bp`), as written.
    pub bid_price: String,
    /// Currency of the bid (`cur`).
    pub cur: String,
    /// USD per unit of `cur` the bid used (`fx`), as written.
    pub fx: String,
    /// Issue time, Unix seconds (`ts`), as written.
    pub issued: String,
    /// Test traffic (`t=1`): never charged.
    pub test: bool,
    /// Channel (`src`): `ad` for `/ad`'s URLs, else `rtb`.
    pub src: String,
    /// Signature (`s`).
    pub sig: Option<String>,
    /// Clearing price, CPM in `cur` (`p`, the exchange's macro).
    pub price: Option<String>,
    /// `r`: a loss notice's reason code (`${AUCTION_LOSS}`).
    pub loss_reason: Option<String>,
}

/// Why a notice was refused, as counted in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Malformed: a missing or repeated parameter, an unreadable price.
    Malformed,
    /// No signature.
    Unsigned,
    /// The signature does not match.
    Tampered,
    /// Older than `bidder.notice_ttl`.
    Expired,
    /// Clearing price above the bid price.
    AboveBid,
    /// The campaign or creative is not in the index (clicks need it).
    Unknown,
    /// The de-duplication table had no room: retry later.
    DedupeFull,
    /// The event could not be written: retry later.
    NotRecorded,
}

impl Reason {
    /// Every reason, in the order of [`Reason::index`].
    pub const ALL: [Reason; 8] = [
        Reason::Malformed,
        Reason::Unsigned,
        Reason::Tampered,
        Reason::Expired,
        Reason::AboveBid,
        Reason::Unknown,
        Reason::DedupeFull,
        Reason::NotRecorded,
    ];

    /// Metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::Unsigned => "unsigned",
            Reason::Tampered => "tampered",
            Reason::Expired => "expired",
            Reason::AboveBid => "price_above_bid",
            Reason::Unknown => "unknown_campaign",
            Reason::DedupeFull => "dedupe_full",
            Reason::NotRecorded => "not_recorded",
        }
    }

    /// Position in [`Reason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The HTTP status it is answered with.
    pub const fn status(self) -> u16 {
        match self {
            Reason::Malformed | Reason::AboveBid => 400,
            Reason::Unsigned | Reason::Tampered | Reason::Expired => 403,
            Reason::Unknown => 404,
            Reason::DedupeFull | Reason::NotRecorded => 503,
        }
    }
}

/// A notice that cannot be processed: why, the parameter and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {detail}")]
pub struct NoticeError {
    /// Why (metrics label and status).
    pub reason: Reason,
    /// Query parameter concerned.
    pub param: &'static str,
    /// What is wrong.
    pub detail: String,
}

impl NoticeError {
    fn new(reason: Reason, param: &'static str, detail: impl Into<String>) -> Self {
        NoticeError {
            reason,
            param,
            detail: detail.into(),
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.reason.status()
    }
}

impl From<Rejected> for NoticeError {
    fn from(r: Rejected) -> Self {
        let reason = match r {
            Rejected::Unsigned => Reason::Unsigned,
            Rejected::Tampered => Reason::Tampered,
            Rejected::Expired => Reason::Expired,
        };
        NoticeError::new(reason, "s", r.to_string())
    }
}

fn malformed(param: &'static str, detail: impl Into<String>) -> NoticeError {
    NoticeError::new(Reason::Malformed, param, detail)
}

impl Notice {
    /// Parses a notice query. Every parameter may appear once.
    pub fn parse(query: Option<&str>) -> Result<Notice, NoticeError> {
        const KEYS: [&str; 14] = [
            "a", "i", "c", "cr", "b", "bp", "cur", "fx", "ts", "t", "src", "s", "p", "r",
        ];
        let mut n = Notice::default();
        let mut seen = [false; KEYS.len()];
        for (k, v) in crate::http::query::pairs(query.unwrap_or("")) {
            let Some(at) = KEYS.iter().position(|key| *key == k.as_ref()) else {
                continue;
            };
            if std::mem::replace(&mut seen[at], true) {
                return Err(malformed(KEYS[at], "repeated parameter"));
            }
            let v = v.into_owned();
            match at {
                0 => n.auction = v,
                1 => n.imp = v,
                2 => n.campaign = v,
                3 => n.creative = v,
                4 => n.bid = v,
                5 => n.bid_price = v,
                6 => n.cur = v,
                7 => n.fx = v,
                8 => n.issued = v,
                9 => n.test = v == "1",
                10 => n.src = v,
                11 => n.sig = Some(v),
                12 => n.price = Some(v),
                _ => n.loss_reason = Some(v),
            }
        }
        if n.src.is_empty() {
            n.src = "rtb".into();
        }
        if n.cur.is_empty() && n.fx.is_empty() {
            n.cur = "USD".into();
            n.fx = "1".into();
        }
        Ok(n)
    }

    /// The fields its signature covers (numbers as written).
    fn signed(&self) -> Option<Signed<'_>> {
        Some(Signed {
            bid: &self.bid,
            auction: &self.auction,
            imp: &self.imp,
            campaign: self.campaign.parse().ok()?,
            creative: &self.creative,
            price: &self.bid_price,
            cur: &self.cur,
            fx: &self.fx,
            test: self.test,
            issued: self.issued.parse().ok()?,
            src: &self.src,
        })
    }
}

/// What a verified notice does.
#[derive(Debug, Default)]
pub struct NoticeOutcome {
    /// Already seen: nothing recorded or charged.
    pub duplicate: bool,
    /// Campaign to charge and micro-USD to charge it, applied by the caller
    /// once the event is queued.
    pub charge: Option<(u64, i64)>,
    /// Where a click goes.
    pub redirect: Option<String>,
    /// The event to emit.
    pub event: Option<Event>,
    /// Whether the event must be written before the notice is answered
    /// (every notice but a loss, test traffic aside).
    pub durable: bool,
    /// De-duplication slots taken, released if the event is not recorded.
    pub claims: Vec<Claim>,
    /// The bid whose budget hold this notice ends once recorded (the
    /// notices that settle a bid: win, bill, loss, and `/ad`'s impression).
    pub settles: Option<String>,
    /// A loss notice fired with its reason macro unsubstituted (the
    /// exchange's template, not a loss): ignored, nothing recorded, so the
    /// real loss notice is not taken for a duplicate.
    pub unsubstituted: bool,
    /// Why a click is invalid (recorded as an invalid click, or, repeated,
    /// not recorded again).
    pub invalid_click: Option<InvalidClick>,
}

/// A decimal price from a notice, or why not.
fn price(param: &'static str, v: &str) -> Result<f64, NoticeError> {
    match v.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        Ok(_) => Err(malformed(param, "must be a non-negative price")),
        Err(_) => Err(malformed(
            param,
            format!("not a price: {v:?} (was the macro substituted?)"),
        )),
    }
}

/// Verifies and prices a notice, de-duplicates it by bid id, and builds
/// its event and charge (not yet applied).
#[allow(clippy::too_many_arguments)]
pub fn notice(
    ix: &Index,
    st: &mut ShardState,
    dedupe: &Dedupe,
    imps: &ImpTimes,
    keys: &NoticeKeys,
    kind: NoticeKind,
    n: &Notice,
    now: Now,
) -> Result<NoticeOutcome, NoticeError> {
    let signed = match (n.sig.as_deref(), n.signed()) {
        (None, _) => return Err(Rejected::Unsigned.into()),
        (Some(_), None) => return Err(Rejected::Tampered.into()),
        (Some(_), Some(s)) => s,
    };
    keys.verify(&signed, n.sig.as_deref(), now.secs)?;
    // A MAC made for one channel never serves another: exchange notices come
    // from bid responses, beacons from markup or `/ad`.
    let exchange = matches!(kind, NoticeKind::Win | NoticeKind::Bill | NoticeKind::Loss);
    if exchange != (n.src == "rtb") {
        return Err(Rejected::Tampered.into());
    }
    let mut out = NoticeOutcome::default();
    // The query is percent-decoded: `%24%7BAUCTION_LOSS%7D` reads as the macro.
    if kind == NoticeKind::Loss
        && n.loss_reason
            .as_deref()
            .is_some_and(|r| r.contains("AUCTION_LOSS"))
    {
        out.unsubstituted = true;
        return Ok(out);
    }
    if !n.test && (exchange || (kind == NoticeKind::Imp && n.src == "ad")) {
        out.settles = Some(n.bid.clone());
    }
    if kind == NoticeKind::Click {
        let cr = ix
            .campaign(signed.campaign)
            .and_then(|c| c.creatives.iter().find(|cr| cr.id == n.creative))
            .ok_or_else(|| {
                NoticeError::new(Reason::Unknown, "cr", "unknown campaign or creative")
            })?;
        out.redirect = Some(cr.landing_url.clone());
    }
    let priced = n.src != "mk";
    let bid_price = if priced {
        price("bp", &n.bid_price)?
    } else {
        0.0
    };
    let fx = if priced { price("fx", &n.fx)? } else { 0.0 };
    let clearing = match (&n.price, kind) {
        (Some(p), NoticeKind::Win | NoticeKind::Bill) => Some(price("p", p)?),
        // Elsewhere the price is informative only (a loss's clearing price,
        // which exchanges often leave unsubstituted); `/ad` charges `bp`.
        (Some(p), NoticeKind::Loss) => price("p", p).ok(),
        _ => None,
    };
    if matches!(kind, NoticeKind::Win | NoticeKind::Bill) && clearing.is_none() {
        return Err(malformed("p", "required"));
    }
    // A loss's clearing price is above our bid by nature; a win's never is.
    let charges_clearing = matches!(kind, NoticeKind::Win | NoticeKind::Bill);
    if charges_clearing && clearing.is_some_and(|p| p > bid_price * (1.0 + 1e-9)) {
        return Err(NoticeError::new(
            Reason::AboveBid,
            "p",
            format!("clearing price above the bid price {}", n.bid_price),
        ));
    }
    // What this notice would charge (CPM in the bid currency).
    let charged_cpm = match kind {
        NoticeKind::Win | NoticeKind::Bill => clearing,
        NoticeKind::Imp if n.src == "ad" => Some(bid_price),
        _ => None,
    };
    let until = (signed.issued + keys.ttl_secs) / 3600 + 1;
    let hour = now.secs / 3600;
    // Keyed by the event kind, as the start-up scan of the spool keys it.
    match dedupe.claim(dedupe::key(kind.event().label(), &n.bid), until, hour) {
        Seen::Again => {
            out.duplicate = true;
            if kind == NoticeKind::Click {
                out.invalid_click = Some(InvalidClick::Repeated);
            }
            return Ok(out);
        }
        Seen::Full => return Err(full()),
        Seen::New(c) => out.claims.push(c),
    }
    let now_ms = (now.micros / 1000).max(0) as u64;
    let bid_key = || dedupe::key("imp-time", &n.bid);
    match kind {
        NoticeKind::Imp => imps.record(bid_key(), now_ms),
        NoticeKind::Click => {
            let imp = dedupe.contains(dedupe::key(Kind::Impression.label(), &n.bid), hour);
            out.invalid_click = if !imp {
                Some(InvalidClick::NoImpression)
            } else if imps
                .get(bid_key())
                .is_some_and(|t| imps.too_fast(t, now_ms))
            {
                Some(InvalidClick::TooFast)
            } else {
                None
            };
        }
        _ => {}
    }
    let event_kind = match out.invalid_click {
        Some(_) => Kind::InvalidClick,
        None => kind.event(),
    };
    let mut spend = 0i64;
    if let (Some(cpm), false) = (charged_cpm, n.test) {
        match dedupe.claim(dedupe::key("spend", &n.bid), until, hour) {
            Seen::Again => {}
            Seen::Full => {
                out.claims.drain(..).for_each(|c| dedupe.release(c));
                return Err(full());
            }
            Seen::New(c) => {
                out.claims.push(c);
                // CPM in the bid currency -> micro-USD for one impression.
                spend = (cpm * fx * 1000.0).round() as i64;
                out.charge = Some((signed.campaign, spend));
            }
        }
    }
    // Everything a report counts or a later notice is checked against
    // (wins, bills, impressions, clicks) is written before it is answered,
    // so a crash loses none of it and its de-duplication survives a
    // restart; losses count nothing and stay fire-and-forget.
    out.durable = !n.test && kind != NoticeKind::Loss;
    st.seq += 1;
    out.event = Some(Event {
        id: event_id(st.shard, st.seq, now),
        kind: event_kind,
        ts_micros: now.micros,
        shard: st.shard,
        auction_id: n.auction.clone(),
        imp_id: n.imp.clone(),
        campaign_id: signed.campaign,
        creative_id: n.creative.clone(),
        price_micros: charged_cpm
            .or(clearing)
            .map_or(0, |p| (p * 1e6).round() as i64),
        currency: if priced { n.cur.clone() } else { String::new() },
        spend_micros: spend,
        bid_id: n.bid.clone(),
        freq_key: 0,
        freq_window: 0,
        test: n.test,
    });
    Ok(out)
}

fn full() -> NoticeError {
    NoticeError::new(
        Reason::DedupeFull,
        "b",
        "cannot record the notice as seen now; retry later",
    )
}
