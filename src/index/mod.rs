//! The campaign index: built from a campaigns file into an immutable
//! [`Index`] with bitset posting lists per targeting dimension, and published
//! with `ArcSwap` by the loader thread ([`loader`]). A published index is never
//! mutated; shards read it through a cached `Arc`.
//!
//! Candidate selection for an impression is an AND over dimensions of
//! (campaigns targeting the request's value OR campaigns not targeting that
//! dimension). Campaigns are laid out best-first with a value bound per word
//! ([`order`]), so an auction evaluates that AND a word at a time from the
//! top and stops once nothing left can win: its cost follows how deep the
//! winner sits, not how many campaigns there are.

mod bitset;
mod brief;
pub mod loader;
pub mod model;
pub mod order;
mod postings;
pub mod synth;

pub use bitset::Bitset;
use bitset::Builder;
pub use brief::{Brief, Briefs};
pub use model::*;
pub use postings::Dim;
use postings::Lists;
use std::borrow::Cow;
use std::collections::HashMap;

/// What the auction reads for every candidate campaign (about 56 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Hot {
    /// Campaign id.
    pub id: u64,
    /// Bid value as a CPM in USD (rule-based: CPM, or pCTR x CPC x 1000), capped by max_cpm.
    pub value_cpm: f64,
    /// Daily budget (whole campaign, USD).
    pub daily: f64,
    /// Lifetime budget (whole campaign, USD).
    pub lifetime: f64,
    /// Frequency cap, if any.
    pub cap: Option<FrequencyCap>,
    /// Even pacing (else as fast as possible).
    pub even: bool,
    /// Has day-parting (then the campaign itself is consulted).
    pub dayparts: bool,
    /// CPC bidding: the price of a click (USD), for model-scored values.
    pub cpc: Option<f64>,
    /// Never bid above this CPM (infinite when unset).
    pub max_cpm: f64,
    /// The campaign's own CTR (CPC): model pCTR is calibrated to it.
    pub expected_ctr: f64,
}

impl Hot {
    fn of(c: &Campaign) -> Hot {
        let v = match c.bid.model {
            BidModel::Cpm => c.bid.amount,
            BidModel::Cpc => c.bid.expected_ctr * c.bid.amount * 1000.0,
        };
        Hot {
            id: c.id,
            value_cpm: c.bid.max_cpm.map_or(v, |m| v.min(m)),
            daily: c.budget.daily,
            lifetime: c.budget.lifetime,
            cap: c.frequency_cap,
            even: c.pacing == Pacing::Even,
            dayparts: !c.targeting.dayparts.is_empty(),
            cpc: (c.bid.model == BidModel::Cpc).then_some(c.bid.amount),
            max_cpm: c.bid.max_cpm.unwrap_or(f64::INFINITY),
            expected_ctr: c.bid.expected_ctr,
        }
    }
}

impl Creative {
    /// The format this creative fills, as indexed and as offered by impressions.
    pub fn format_key(&self) -> FormatKey {
        match self.format {
            CreativeFormat::Banner => FormatKey::Banner(self.w.unwrap_or(0), self.h.unwrap_or(0)),
            CreativeFormat::Video => FormatKey::Video,
            CreativeFormat::Native => FormatKey::Native,
            CreativeFormat::Audio => FormatKey::Audio,
        }
    }
}

/// A format an impression offers, as indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatKey {
    /// A banner of this size.
    Banner(u32, u32),
    /// Video (any size).
    Video,
    /// Native.
    Native,
    /// Audio.
    Audio,
}

/// Why a campaigns file was refused. The old index stays in service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Not parseable.
    #[error("{origin}: {message}")]
    Parse {
        /// File or source.
        origin: String,
        /// Parser message, naming the key.
        message: String,
    },
    /// Parsed but inconsistent.
    #[error("campaign {id}: {message}")]
    Invalid {
        /// Campaign id.
        id: u64,
        /// What is wrong.
        message: String,
    },
}

/// An immutable, published campaign index.
#[derive(Debug)]
pub struct Index {
    /// Increases with every publication.
    pub version: u64,
    /// Campaigns in file order (by position: [`Index::at`]).
    pub campaigns: Vec<Campaign>,
    /// Position -> index into `campaigns`.
    at: Vec<u32>,
    /// Position of each campaign id.
    pub by_id: HashMap<u64, u32>,
    /// USD per unit of each currency (USD = 1).
    pub currencies: HashMap<String, f64>,
    /// Positions of creatives by format, per campaign: `(campaign, creative)`.
    pub formats: HashMap<FormatKey, Vec<(u32, u32)>>,
    /// Campaigns with a creative for each format.
    pub format_sets: HashMap<FormatKey, Bitset>,
    /// Active campaigns not restricted to deals (open auction).
    pub open: Bitset,
    /// Campaigns per deal id.
    pub deals: HashMap<String, Bitset>,
    /// Targeting dimensions.
    pub country: Dim,
    /// Regions.
    pub region: Dim,
    /// Device types.
    pub device_type: Dim,
    /// OS (lower-case).
    pub os: Dim,
    /// Site domains (lower-case, no `www.`).
    pub domain: Dim,
    /// App bundles (lower-case).
    pub bundle: Dim,
    /// Content categories.
    pub category: Dim,
    /// User segments.
    pub segment: Dim,
    /// Campaigns allowed on sites.
    pub on_site: Bitset,
    /// Campaigns allowed in apps.
    pub on_app: Bitset,
    /// Campaigns without segment targeting (eligible under COPPA).
    pub no_segments: Bitset,
    /// Campaigns by advertiser category and by its parent (`IAB2-1` under
    /// both `IAB2-1` and `IAB2`), for `bcat`.
    pub cat_block: HashMap<String, Bitset>,
    /// Campaigns by the taxonomy of their categories, for `bcat` with `cattax`.
    pub cattax: HashMap<u16, Bitset>,
    /// Campaigns by advertiser domain (lower-case), for `badv`.
    pub adomain: HashMap<String, Bitset>,
    /// Campaigns by advertised app bundle, for `bapp`.
    pub app_bundle: HashMap<String, Bitset>,
    /// Campaigns by buyer seat, for `wseat` / `bseat`.
    pub seat: HashMap<String, Bitset>,
    /// Campaigns that need a complete supply chain (`None`: no campaign does).
    pub schain_required: Option<Bitset>,
    /// Campaigns by the seller (`asi:sid`, `asi` lower-case) they block.
    pub seller_block: HashMap<String, Bitset>,
    /// Campaigns by the seller system or business domain (lower-case) they block.
    pub seller_domain_block: HashMap<String, Bitset>,
    /// Per-campaign data the auction reads for every candidate, packed
    /// together so candidate scans stay in cache.
    pub hot: Vec<Hot>,
    /// Each position's creatives, packed: format, https, model buckets.
    pub briefs: Briefs,
    /// The most any campaign at or after each word of positions can bid.
    pub bounds: order::Bounds,
    /// First position of the CPC campaigns without `max_cpm` (bounded by
    /// their rule value); those before it are bounded by a fixed CPM.
    pub rule_start: usize,
}

/// Lower-case. Borrows `s` when it has no upper-case letter (the usual
/// case: the index build and the request path then allocate nothing).
pub fn norm_lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}
/// Upper-case; borrows `s` when it has no lower-case letter.
pub fn norm_upper(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Borrowed(s)
    }
}
/// Lower-case without a leading `www.`; borrows where it can.
pub fn norm_domain(s: &str) -> Cow<'_, str> {
    match norm_lower(s.trim()) {
        Cow::Borrowed(d) => Cow::Borrowed(d.strip_prefix("www.").unwrap_or(d)),
        Cow::Owned(mut d) => {
            if d.starts_with("www.") {
                d.drain(.."www.".len());
            }
            Cow::Owned(d)
        }
    }
}
/// A seller as `asi:sid`, the system's domain lower-case, the id as is.
pub fn seller_key(s: &str) -> String {
    match s.split_once(':') {
        Some((asi, sid)) => format!("{}:{}", norm_domain(asi), sid.trim()),
        None => s.trim().to_string(),
    }
}
impl Index {
    /// Parses a campaigns file (TOML, or JSON when `origin` ends in `.json`
    /// or the text starts with `{`).
    pub fn parse(text: &str, origin: &str) -> Result<CampaignFile, IndexError> {
        let perr = |message: String| IndexError::Parse {
            origin: origin.to_string(),
            message,
        };
        if origin.ends_with(".json") || text.trim_start().starts_with('{') {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de)
                .map_err(|e| perr(format!("{}: {}", e.path(), e.inner())))
        } else {
            let table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| perr(e.to_string()))?;
            serde_path_to_error::deserialize(toml::Value::Table(table))
                .map_err(|e| perr(format!("{}: {}", e.path(), e.inner())))
        }
    }

    /// Validates and builds an index, positions laid out best-first.
    pub fn build(file: CampaignFile, version: u64) -> Result<Index, IndexError> {
        let (rank, rule_start) = order::positions(&file.campaign);
        let n = file.campaign.len();
        let mut by_id = HashMap::with_capacity(n);
        let mut currencies = file.currencies;
        currencies.insert("USD".into(), 1.0);
        for (cur, rate) in &currencies {
            if !(rate.is_finite() && *rate > 0.0) {
                return Err(IndexError::Parse {
                    origin: "currencies".into(),
                    message: format!("{cur}: rate must be positive"),
                });
            }
        }
        // The posting lists, `hot` and `briefs` start empty (allocating
        // nothing) and are filled below: `Lists::build_into` builds the lists.
        let mut ix = Index {
            version,
            by_id: HashMap::new(),
            currencies,
            formats: HashMap::new(),
            format_sets: HashMap::new(),
            open: Bitset::default(),
            deals: HashMap::new(),
            country: Dim::default(),
            region: Dim::default(),
            device_type: Dim::default(),
            os: Dim::default(),
            domain: Dim::default(),
            bundle: Dim::default(),
            category: Dim::default(),
            segment: Dim::default(),
            on_site: Bitset::default(),
            on_app: Bitset::default(),
            no_segments: Bitset::default(),
            cat_block: HashMap::new(),
            cattax: HashMap::new(),
            adomain: HashMap::new(),
            app_bundle: HashMap::new(),
            seat: HashMap::new(),
            schain_required: None,
            seller_block: HashMap::new(),
            seller_domain_block: HashMap::new(),
            hot: Vec::new(),
            briefs: Briefs::default(),
            campaigns: Vec::new(),
            at: Vec::new(),
            bounds: order::Bounds::default(),
            rule_start: 0,
        };
        let mut at = vec![0u32; n];
        for (i, &p) in rank.iter().enumerate() {
            at[p as usize] = i as u32;
        }
        ix.hot = at
            .iter()
            .map(|&i| Hot::of(&file.campaign[i as usize]))
            .collect();
        // The creative briefs (a pass over every creative, mostly waiting
        // on memory) are built on a second thread beside the postings.
        let mut l = Lists::default();
        ix.briefs = std::thread::scope(|s| -> Result<Briefs, IndexError> {
            let briefs = s.spawn(|| Briefs::build(&file.campaign, &rank));
            for (i, c) in file.campaign.iter().enumerate() {
                let pos = rank[i] as usize;
                validate(c)?;
                if by_id.insert(c.id, pos as u32).is_some() {
                    return Err(IndexError::Invalid {
                        id: c.id,
                        message: "duplicate campaign id".into(),
                    });
                }
                if !c.active {
                    continue;
                }
                l.add(pos, c);
            }
            briefs.join().map_err(|e| std::panic::resume_unwind(e))
        })?;
        l.build_into(&mut ix);
        ix.by_id = by_id;
        let parts: Vec<(f64, f64)> = at
            .iter()
            .map(|&i| order::parts(&file.campaign[i as usize]))
            .collect();
        ix.bounds = order::Bounds::of(&parts);
        ix.at = at;
        ix.rule_start = rule_start;
        ix.campaigns = file.campaign;
        Ok(ix)
    }

    /// Parses and builds in one step.
    pub fn load(text: &str, origin: &str, version: u64) -> Result<Index, IndexError> {
        Self::build(Self::parse(text, origin)?, version)
    }

    /// An index with no campaigns.
    pub fn empty() -> Index {
        Self::build(
            CampaignFile {
                currencies: HashMap::new(),
                campaign: Vec::new(),
            },
            0,
        )
        .unwrap_or_else(|_| unreachable!("an empty file is valid"))
    }

    /// Number of campaign positions (bitset size).
    pub fn len(&self) -> usize {
        self.campaigns.len()
    }

    /// Whether there are no campaigns.
    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }

    /// USD value of `amount` in `cur`, if the currency is known.
    pub fn to_usd(&self, amount: f64, cur: &str) -> Option<f64> {
        self.currencies.get(cur).map(|r| amount * r)
    }

    /// The campaign at position `pos` (positions run best-first).
    #[inline]
    pub fn at(&self, pos: usize) -> &Campaign {
        &self.campaigns[self.at[pos] as usize]
    }

    /// Campaign by id.
    pub fn campaign(&self, id: u64) -> Option<&Campaign> {
        self.by_id.get(&id).map(|&p| self.at(p as usize))
    }
}

/// Longest frequency-cap window, seconds: 20 years, the longest a stored
/// count is kept (its database TTL).
pub const MAX_CAP_WINDOW_SECS: u64 = 630_720_000;

/// Longest creative id taken, in bytes: it travels in every event of its
/// bids (a spool frame holds at most 64 KiB) and in notice URLs.
pub const MAX_CREATIVE_ID_BYTES: usize = 1024;

fn validate(c: &Campaign) -> Result<(), IndexError> {
    let bad = |m: &str| {
        Err(IndexError::Invalid {
            id: c.id,
            message: m.to_string(),
        })
    };
    let pos = |x: f64| x.is_finite() && x > 0.0;
    if !pos(c.bid.amount) {
        return bad("bid.amount must be a positive number");
    }
    if !(c.bid.expected_ctr > 0.0 && c.bid.expected_ctr <= 1.0) {
        return bad("bid.expected_ctr must be in (0, 1]");
    }
    if c.bid.max_cpm.is_some_and(|m| !pos(m)) {
        return bad("bid.max_cpm must be positive");
    }
    if !pos(c.budget.daily) || !pos(c.budget.lifetime) {
        return bad("budget.daily and budget.lifetime must be positive");
    }
    if c.budget.daily > c.budget.lifetime {
        return bad("budget.daily exceeds budget.lifetime");
    }
    if c.adomain.is_empty() {
        return bad("adomain must list at least one advertiser domain");
    }
    if c.creatives.is_empty() {
        return bad("needs at least one creative");
    }
    if let Some(f) = c.frequency_cap {
        if f.max == 0 || f.window_secs == 0 {
            return bad("frequency_cap.max and window_secs must be positive");
        }
        if f.window_secs > MAX_CAP_WINDOW_SECS {
            return bad(&format!(
                "frequency_cap.window_secs is at most {MAX_CAP_WINDOW_SECS} (20 years)"
            ));
        }
    }
    if let Some(s) = c.targeting.blocked_sellers.iter().find(|s| {
        !s.split_once(':')
            .is_some_and(|(a, b)| !a.trim().is_empty() && !b.trim().is_empty())
    }) {
        return bad(&format!(
            "targeting.blocked_sellers: {s:?} is not asi:sid (e.g. \"exchange.com:1234\")"
        ));
    }
    for d in &c.targeting.dayparts {
        if d.start_hour >= d.end_hour || d.end_hour > 24 || d.days.iter().any(|&x| x > 6) {
            return bad("targeting.dayparts: need 0 <= start_hour < end_hour <= 24 and days 0-6");
        }
    }
    for cr in &c.creatives {
        if cr.id.len() > MAX_CREATIVE_ID_BYTES {
            return bad(&format!(
                "creative id longer than {MAX_CREATIVE_ID_BYTES} bytes"
            ));
        }
        if !(cr.landing_url.starts_with("https://") || cr.landing_url.starts_with("http://")) {
            return Err(IndexError::Invalid {
                id: c.id,
                message: format!("creative {}: landing_url must be http(s)", cr.id),
            });
        }
        let ok = match cr.format {
            CreativeFormat::Banner => cr.w.is_some() && cr.h.is_some() && cr.image_url.is_some(),
            CreativeFormat::Video => cr.video_url.is_some() && cr.duration.is_some(),
            CreativeFormat::Native => cr.title.is_some() && cr.image_url.is_some(),
            CreativeFormat::Audio => cr.audio_url.is_some() && cr.duration.is_some(),
        };
        if !ok {
            return Err(IndexError::Invalid {
                id: c.id,
                message: format!(
                    "creative {}: banner needs w, h, image_url; video needs video_url, duration; native needs title, image_url; audio needs audio_url, duration",
                    cr.id
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
