//! The IAB OpenRTB 2.5/2.6 bid request examples, kept in the repository
//! under tests/fixtures/openrtb.

/// Where the examples are.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openrtb");

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

/// One example by file name (`bid-request-2.5_simple-banner.json`).
pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap()
}

/// The simple banner request (2.5), the one most wire tests send.
pub fn simple_banner() -> Vec<u8> {
    read("bid-request-2.5_simple-banner.json")
}

/// Every example named by what follows `bid-request-` (`2.5_mobile`, ...).
pub fn bid_requests_short() -> Vec<(String, Vec<u8>)> {
    bid_requests()
        .into_iter()
        .map(|(name, body)| {
            let short = name
                .trim_start_matches("bid-request-")
                .trim_end_matches(".json")
                .to_string();
            (short, body)
        })
        .collect()
}
