//! adshard: a thread-per-core ad server and OpenRTB bidder on Glommio.
//!
//! Shape (see DESIGN.md): one Glommio executor per core ([`shard`]), each
//! with its own listener, parsing HTTP/1.1 with [`http`] and answering through
//! [`api`]; typed start-up [`config`]; per-shard [`metrics`] summed on scrape.

pub mod admin;
pub mod adserve;
pub mod api;
pub mod config;
pub mod cql;
pub mod events;
pub mod http;
pub mod index;
pub mod metrics;
pub mod openrtb;
pub mod schema;
pub mod scoring;
pub mod shard;
pub mod store;
