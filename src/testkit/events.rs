//! Event builders for tests and benchmarks.

use crate::events::{Event, Kind};

/// A bid (no spend) or, with `spend` > 0, a win charging `spend` micro-USD.
/// The time is the id's high 64 bits; the campaign is one of seven.
pub fn charge(id: u128, shard: u16, spend: i64) -> Event {
    Event {
        id,
        kind: if spend > 0 { Kind::Win } else { Kind::Bid },
        ts_micros: (id >> 64) as i64,
        shard,
        auction_id: format!("auc-{id:x}"),
        imp_id: "1".into(),
        campaign_id: 1 + (id % 7) as u64,
        creative_id: "cr".into(),
        price_micros: 1_500_000,
        currency: "USD".into(),
        spend_micros: spend,
        bid_id: format!("b-{id:x}"),
        freq_key: 0,
        freq_window: 0,
        test: false,
    }
}

/// Event `n` of the server's mix: of every 20, `wins_per_20` wins charging
/// spend, one impression, one loss, the rest bids; 50 campaigns.
pub fn mixed(id: u128, shard: u16, n: u64, wins_per_20: u64) -> Event {
    let (kind, spend) = match n % 20 {
        k if k < wins_per_20 => (Kind::Win, 1_250),
        18 => (Kind::Impression, 0),
        19 => (Kind::Loss, 0),
        _ => (Kind::Bid, 0),
    };
    Event {
        id,
        kind,
        ts_micros: (id >> 64) as i64,
        shard,
        auction_id: format!("bench-{n}-{shard}"),
        imp_id: "1".into(),
        campaign_id: 1 + n % 50,
        creative_id: "cr-300x250".into(),
        price_micros: 1_870_000,
        currency: "USD".into(),
        spend_micros: spend,
        bid_id: format!("b-{n}-{shard}"),
        freq_key: 0,
        freq_window: 0,
        test: false,
    }
}

/// The `i`th of a simple run of win events: one auction each, 1.25 USD CPM
/// charged as 1,250 micro-USD, on campaign 42.
pub fn win(i: u64) -> Event {
    Event {
        id: (u128::from(i) << 64) | 7,
        kind: Kind::Win,
        ts_micros: 1_795_392_000_000_000,
        shard: 1,
        auction_id: format!("auction-{i}"),
        imp_id: "1".into(),
        campaign_id: 42,
        creative_id: "cr-9".into(),
        price_micros: 1_250_000,
        currency: "USD".into(),
        spend_micros: 1_250,
        bid_id: format!("b-{i}"),
        freq_key: 0,
        freq_window: 0,
        test: false,
    }
}

/// The `i`th of a run of small bid events whose id is `i`.
pub fn bid(i: u64) -> Event {
    Event {
        id: u128::from(i),
        kind: Kind::Bid,
        ts_micros: 1,
        shard: 0,
        auction_id: format!("a{i}"),
        imp_id: "1".into(),
        campaign_id: 7,
        creative_id: "c".into(),
        price_micros: 1,
        currency: "USD".into(),
        spend_micros: 0,
        bid_id: format!("b-{i}"),
        freq_key: 0,
        freq_window: 0,
        test: false,
    }
}
