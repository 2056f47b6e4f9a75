//! Report counters: what events of one campaign, creative and hour add
//! up to. Counted by the shards for today's reports (`quality::report`) and
//! by the database writer for the hourly rollups (`db::rollup`), so both
//! count the same way.

use super::{Event, Kind};

/// One row's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Bids made.
    pub bids: u64,
    /// Wins notified.
    pub wins: u64,
    /// Impressions recorded.
    pub impressions: u64,
    /// Valid clicks.
    pub clicks: u64,
    /// Invalid clicks (never charged).
    pub invalid_clicks: u64,
    /// Micro-USD charged.
    pub spend_micros: i64,
    /// Sum of the clearing prices of the wins (CPM, micro-units of the bid
    /// currency), for the average clearing price.
    pub clearing_micros: i64,
    /// Bid requests refused as invalid traffic (on the campaign-less row).
    pub ivt_requests: u64,
}

impl Counts {
    /// Adds another row's counters.
    pub fn add(&mut self, o: &Counts) {
        self.bids += o.bids;
        self.wins += o.wins;
        self.impressions += o.impressions;
        self.clicks += o.clicks;
        self.invalid_clicks += o.invalid_clicks;
        self.spend_micros += o.spend_micros;
        self.clearing_micros += o.clearing_micros;
        self.ivt_requests += o.ivt_requests;
    }

    /// Counts one event.
    pub fn count(&mut self, ev: &Event) {
        match ev.kind {
            Kind::Bid => self.bids += 1,
            Kind::Win => {
                self.wins += 1;
                self.clearing_micros += ev.price_micros;
            }
            Kind::Impression => self.impressions += 1,
            Kind::Click => self.clicks += 1,
            Kind::InvalidClick => self.invalid_clicks += 1,
            Kind::Ivt => self.ivt_requests += 1,
            Kind::Bill | Kind::Loss => {}
        }
        self.spend_micros += ev.spend_micros;
    }
}

/// A row's key: Unix hour, campaign (0: requests refused before any
/// campaign was considered), creative.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Hours since the Unix epoch.
    pub hour: u64,
    /// Campaign id.
    pub campaign: u64,
    /// Creative id.
    pub creative: String,
}

impl Key {
    /// The row an event counts in; `None` for test traffic, which no
    /// report counts.
    pub fn of(ev: &Event) -> Option<Key> {
        (!ev.test).then(|| Key {
            hour: (ev.ts_micros.max(0) as u64) / 3_600_000_000,
            campaign: ev.campaign_id,
            creative: ev.creative_id.clone(),
        })
    }
}
