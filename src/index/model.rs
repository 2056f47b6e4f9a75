//! The campaign model as authored in `configs/campaigns.toml` (or JSON with
//! the same shape). Deserialised once per load, off the hot path.

use serde::Deserialize;
use std::collections::HashMap;

/// A whole campaigns file.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    /// USD value of one unit of each other currency, for floors in them.
    #[serde(default)]
    pub currencies: HashMap<String, f64>,
    /// The campaigns.
    #[serde(default)]
    pub campaign: Vec<Campaign>,
}

/// One campaign.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// Unique id.
    pub id: u64,
    /// Human name.
    pub name: String,
    /// Whether it may bid.
    #[serde(default = "yes")]
    pub active: bool,
    /// Buyer seat it bids as (matched against wseat / bseat).
    #[serde(default = "default_seat")]
    pub seat: String,
    /// Advertiser domains (matched against badv, reported as adomain).
    pub adomain: Vec<String>,
    /// App bundle the campaign advertises, if any (matched against bapp).
    #[serde(default)]
    pub bundle: Option<String>,
    /// Advertiser / creative categories (matched against bcat).
    #[serde(default)]
    pub cat: Vec<String>,
    /// Taxonomy of `cat`: 1 IAB 1.0, 2 IAB 2.0, ... (OpenRTB 2.6 list).
    #[serde(default = "one")]
    pub cattax: u16,
    /// How it bids.
    pub bid: BidSpec,
    /// Money limits.
    pub budget: Budget,
    /// Spend pacing over the day.
    #[serde(default)]
    pub pacing: Pacing,
    /// Frequency cap per user.
    #[serde(default)]
    pub frequency_cap: Option<FrequencyCap>,
    /// Who and where.
    #[serde(default)]
    pub targeting: Targeting,
    /// What it shows.
    pub creatives: Vec<Creative>,
}

fn yes() -> bool {
    true
}
fn one() -> u16 {
    1
}
fn default_seat() -> String {
    "adshard".into()
}

/// Bidding model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BidModel {
    /// Bid a fixed CPM.
    Cpm,
    /// Bid the expected value of a click: pCTR x CPC x 1000.
    Cpc,
}

/// How a campaign prices its bids.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BidSpec {
    /// CPM or CPC.
    pub model: BidModel,
    /// USD: the CPM for `cpm`, the price of a click for `cpc`.
    pub amount: f64,
    /// pCTR used for `cpc` when no model scores the request.
    #[serde(default = "default_ctr")]
    pub expected_ctr: f64,
    /// Never bid above this CPM (USD), whatever the model says.
    #[serde(default)]
    pub max_cpm: Option<f64>,
}

fn default_ctr() -> f64 {
    0.001
}

/// Money limits in USD, split evenly across shards.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Per UTC day.
    pub daily: f64,
    /// Over the campaign's life.
    pub lifetime: f64,
}

/// Pacing of the daily budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pacing {
    /// Spend evenly through the day (at most the elapsed share plus an hour).
    #[default]
    Even,
    /// Spend as fast as auctions allow.
    Asap,
}

/// At most `max` bids per user per `window_secs`.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    /// Bids allowed in the window.
    pub max: u32,
    /// Window length.
    pub window_secs: u64,
}

/// Inventory a campaign accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Inventory {
    /// Sites and apps.
    #[default]
    Any,
    /// Sites only.
    Site,
    /// Apps only.
    App,
}

/// Targeting; an empty list means "any".
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Targeting {
    /// ISO-3166-1 alpha-3 countries.
    #[serde(default)]
    pub countries: Vec<String>,
    /// ISO-3166-2 regions (e.g. `US-CA` or `CA`).
    #[serde(default)]
    pub regions: Vec<String>,
    /// OpenRTB device types.
    #[serde(default)]
    pub device_types: Vec<u8>,
    /// Operating systems (case-insensitive).
    #[serde(default)]
    pub os: Vec<String>,
    /// Site domains (a leading `www.` is ignored).
    #[serde(default)]
    pub domains: Vec<String>,
    /// App bundles.
    #[serde(default)]
    pub bundles: Vec<String>,
    /// Content categories; `IAB2` also matches `IAB2-1`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Hours of the week, UTC.
    #[serde(default)]
    pub dayparts: Vec<Daypart>,
    /// User segment ids (any of).
    #[serde(default)]
    pub segments: Vec<String>,
    /// Deal ids: when set, the campaign bids only through these deals.
    #[serde(default)]
    pub deals: Vec<String>,
    /// Sites, apps or both.
    #[serde(default)]
    pub inventory: Inventory,
    /// Bid only where the request's supply chain (`source.schain`) is
    /// complete back to the publisher, every node naming its system and
    /// seller id.
    #[serde(default)]
    pub require_complete_schain: bool,
    /// Sellers never bought from, as `asi:sid` (the advertising system's
    /// domain and the seller id in its sellers.json), anywhere in the chain.
    #[serde(default)]
    pub blocked_sellers: Vec<String>,
    /// Advertising systems or seller business domains never bought from,
    /// anywhere in the chain (a node's `asi` or `domain`).
    #[serde(default)]
    pub blocked_seller_domains: Vec<String>,
}

/// A window of the week: `days` (0 = Monday .. 6 = Sunday), hours
/// `start_hour..end_hour` UTC.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Daypart {
    /// Days of the week; empty = every day.
    #[serde(default)]
    pub days: Vec<u8>,
    /// First hour (0-23).
    pub start_hour: u8,
    /// Hour after the last (1-24).
    pub end_hour: u8,
}

/// Creative format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CreativeFormat {
    /// Display banner.
    #[default]
    Banner,
    /// VAST video.
    Video,
    /// Native.
    Native,
    /// Audio (VAST / DAAST audio).
    Audio,
}

/// One creative.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Creative {
    /// Creative id.
    pub id: String,
    /// Format.
    pub format: CreativeFormat,
    /// Width (banners; the player size for video when set).
    #[serde(default)]
    pub w: Option<u32>,
    /// Height.
    #[serde(default)]
    pub h: Option<u32>,
    /// Where a click lands.
    pub landing_url: String,
    /// Image (banner, native).
    #[serde(default)]
    pub image_url: Option<String>,
    /// Media file (video).
    #[serde(default)]
    pub video_url: Option<String>,
    /// Media file (audio).
    #[serde(default)]
    pub audio_url: Option<String>,
    /// MIME type of the media file (default `video/mp4`, `audio/mpeg`).
    #[serde(default)]
    pub mime: Option<String>,
    /// Video or audio duration in seconds.
    #[serde(default)]
    pub duration: Option<u32>,
    /// Title (native; alt text for banners).
    #[serde(default)]
    pub title: Option<String>,
    /// Description (native data type 2).
    #[serde(default)]
    pub description: Option<String>,
    /// Icon or logo image (native image type 1).
    #[serde(default)]
    pub icon_url: Option<String>,
    /// Side of the (square) icon in pixels.
    #[serde(default)]
    pub icon_size: Option<u32>,
    /// Brand name for "sponsored by" (native data type 1).
    #[serde(default)]
    pub sponsored: Option<String>,
    /// Call-to-action text (native data type 12).
    #[serde(default)]
    pub cta: Option<String>,
    /// Video placements (OpenRTB 2.6 `plcmt`: 1 instream, 2 accompanying
    /// content, 3 interstitial, 4 no content / standalone) it may run in;
    /// empty: any.
    #[serde(default)]
    pub plcmt: Vec<u8>,
}
