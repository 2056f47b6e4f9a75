//! Events: what the server records (bids, notices, impressions, clicks) and
//! the path each record takes from a shard to durable storage.
//!
//! - [`record`]: the [`Event`] and its framed Cap'n Proto encoding.
//! - [`sink`]: each shard's non-blocking [`Sink`] and the writer threads
//!   behind it ([`Store`]).
//! - [`spool`]: the per-shard spool segments and their writer.
//! - [`ack`]: durable acknowledgements (money is answered once written).
//! - [`db`]: write-behind to ScyllaDB / Cassandra, and replay of spooled
//!   segments (by the writer, or by `adshard replay`).
//!
//! Dependencies point down only: `events` imports `config` (and the
//! generated schema), nothing else of ours.

pub mod ack;
pub mod counts;
pub mod db;
pub mod record;
pub mod sink;
pub mod spool;

pub use record::{
    decode, encode, scan_notices, CappedBid, Decoded, Event, EventError, NoticeRef, MAX_FRAME_BYTES,
};
pub use sink::{Sink, Started, Store};
pub use spool::{
    list_done, list_segments, node_id, prune_done, read_node_id, read_spool, salvage_spool,
    segment_path, Queued, Salvage, Segment, SpoolStats, WriterCtl,
};

/// The kind of an event. [`Kind::ALL`] and [`Kind::label`] are the one table
/// of kinds: metrics labels, the database's `kind` column and `spool-dump`
/// all read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// We bid.
    Bid,
    /// The exchange reported a win.
    Win,
    /// The exchange billed the impression.
    Bill,
    /// The exchange reported a loss.
    Loss,
    /// The ad rendered.
    Impression,
    /// The ad was clicked.
    Click,
    /// A click that does not count: no impression before it, or too soon
    /// after it (see `quality::clicks`). Never charged.
    InvalidClick,
    /// A bid request refused as invalid traffic (`quality`): no campaign,
    /// the reason in `creative_id`, so reports count refusals by reason.
    Ivt,
}

impl Kind {
    /// Every kind, in the order of [`Kind::index`].
    pub const ALL: [Kind; 8] = [
        Kind::Bid,
        Kind::Win,
        Kind::Bill,
        Kind::Loss,
        Kind::Impression,
        Kind::Click,
        Kind::InvalidClick,
        Kind::Ivt,
    ];

    /// The kind's name: `bid`, `win`, `bill`, `loss`, `impression`,
    /// `click`, `invalid_click`, `ivt`.
    pub const fn label(self) -> &'static str {
        match self {
            Kind::Bid => "bid",
            Kind::Win => "win",
            Kind::Bill => "bill",
            Kind::Loss => "loss",
            Kind::Impression => "impression",
            Kind::Click => "click",
            Kind::InvalidClick => "invalid_click",
            Kind::Ivt => "ivt",
        }
    }

    /// Position in [`Kind::ALL`] (indexes per-kind counters).
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod kind_tests {
    use super::Kind;

    #[test]
    fn the_kind_table_is_consistent() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        let labels: Vec<_> = Kind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(
            labels,
            [
                "bid",
                "win",
                "bill",
                "loss",
                "impression",
                "click",
                "invalid_click",
                "ivt"
            ]
        );
    }
}
