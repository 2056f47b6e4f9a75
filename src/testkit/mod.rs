//! The test kit: what the wire tests, the Cassandra tests and the benches
//! share. Compiled for this crate's own tests and, through the `testkit`
//! feature (which the crate's dev-dependency on itself turns on), for
//! tests/ and benches/; a release build does not contain it.
//!
//! - [`wire`]: servers on 127.0.0.1:0 with a test config, raw-byte clients.
//! - [`fixtures`]: the IAB OpenRTB examples in tests/fixtures/openrtb.
//! - [`cassandra`]: a real Cassandra node (deploy/cassandra/cassandra.sh).
//! - [`events`]: event builders.
//! - [`process`]: `adshard serve` as a child process.
//! - [`tcf`]: TCF v2 consent strings with chosen purposes and vendors.
//! - [`models`]: deterministic CTR models (no ONNX Runtime).
//! - [`hostile`]: hostile JSON values and the places they go.
//! - [`scratch`]: temp directories under one root per test process.
//! - here: scraping `/metrics`, waiting for a condition, the clock.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod cassandra;
pub mod events;
pub mod fixtures;
pub mod hostile;
pub mod models;
pub mod process;
pub mod scratch;
pub mod tcf;
pub mod wire;

pub use wire::*;

use std::time::{Duration, Instant};

/// The sum of the samples on the `/metrics` page whose line starts with
/// `prefix`: a family name (`adshard_model_version`, matching its labelled
/// and unlabelled samples, not longer names) or a name with a label prefix
/// (`adshard_events_total{` or `adshard_events_spilled_total{reason="db_down"`).
pub fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with(prefix)
                && (prefix.contains('{')
                    || matches!(l.as_bytes().get(prefix.len()), Some(b' ' | b'{')))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Polls `pred` every 20 ms for up to 5 s; whether it came true.
pub fn eventually(mut pred: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pred()
}

/// Polls `pred` every 50 ms; panics naming `what` after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut pred: impl FnMut() -> bool) {
    let t = Instant::now();
    while !pred() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_a_family_and_not_longer_names() {
        let page = "# HELP a_total A.\na_total{shard=\"0\"} 2\na_total{shard=\"1\"} 3\na_total_x 9\nb 1.0\n";
        assert_eq!(metric(page, "a_total"), 5);
        assert_eq!(metric(page, "a_total{shard=\"1\""), 3);
        assert_eq!(metric(page, "b"), 1);
        assert_eq!(metric(page, "c"), 0);
    }
}
