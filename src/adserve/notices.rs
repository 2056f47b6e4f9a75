//! Notices: wins, bills and losses from exchanges, impression and click
//! beacons. Parsed from their query, de-duplicated, charged once per
//! auction and impression, and turned into events.

use super::dedupe::{self, Dedupe};
use super::{event_id, Now, ShardState};
use crate::events::{Event, Kind};
use crate::index::Index;

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
