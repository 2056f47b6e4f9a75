//! adshard: a thread-per-core ad server and OpenRTB bidder on Glommio.
//!
//! A tour, top floor first; each module imports only from the floors below
//! it (see README's Layout):
//!
//! - [`api`]: the application: one route table, one file per route family
//!   (bid, ad, notices, health, metrics), application assembly, and the
//!   admin listener.
//! - [`shard`]: one Glommio executor per core with its own `SO_REUSEPORT`
//!   listener: start and drain, the connection loop, the overload
//!   controller.
//! - [`adserve`]: decisions, synchronous and pure: shard state (budget
//!   slices, pacing, frequency), targeting, the auction and pricing, markup,
//!   notices.
//! - [`quality`]: invalid traffic (bots, reserved and data-centre IPs,
//!   device signals, request rates) and click validation; per-campaign
//!   hourly reports.
//! - [`openrtb`]: OpenRTB 2.5/2.6 types, validation, JSON and Cap'n Proto
//!   codecs.
//! - [`http`]: HTTP/1.1 bytes only: head parser, framing, the socket-free
//!   request reader, response writer, query strings.
//! - [`metrics`]: per-shard counters and histograms, summed on scrape.
//! - [`index`]: the campaign model, the immutable index and its loader.
//! - [`scoring`]: CTR features and per-shard ONNX Runtime sessions.
//! - [`events`]: the event record, per-shard sinks, the spool, and
//!   write-behind to ScyllaDB / Cassandra with replay.
//! - [`config`]: typed configuration; the ground floor, it imports nothing
//!   of ours.
//! - [`prom`], [`sys`], [`schema`]: the Prometheus text format, the few
//!   system calls (every `unsafe` block), the generated Cap'n Proto code.
//! - `testkit` (tests and benches only): wire clients, fixtures, a
//!   Cassandra node, event builders, metric scraping.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod adserve;
pub mod api;
pub mod config;
pub mod events;
pub mod http;
pub mod index;
pub mod metrics;
pub mod openrtb;
pub mod prom;
pub mod quality;
pub mod schema;
pub mod scoring;
pub mod shard;
pub mod sys;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
