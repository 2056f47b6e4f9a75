//! The IAB OpenRTB bid request examples (`../shared/fixtures/openrtb`), for
//! the tests (through `common`) and the benches (through `#[path]`).
#![allow(clippy::unwrap_used)]

/// Where the examples are.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/openrtb");

/// Every `bid-request*.json` as (file name, bytes), sorted by name.
pub fn bid_requests() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("bid-request")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}
