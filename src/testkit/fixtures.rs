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

/// Where the request corpus is (its requests, `expect.json`, a README).
pub const CORPUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");

/// One request of the corpus (tests/fixtures/corpus) by file name.
pub fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(format!("{CORPUS_DIR}/{name}")).unwrap()
}

/// Every request of the corpus as (file name, bytes), sorted by name
/// (`expect.json`, the expected answers, left out).
pub fn corpus_requests() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(CORPUS_DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "expect.json")
        .map(|n| {
            let body = corpus(&n);
            (n, body)
        })
        .collect();
    v.sort();
    v
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

/// A campaigns file with one campaign (id 7, $2 CPM) capped at two bids
/// per user an hour: what the frequency-cap tests serve.
pub const CAPPED_CAMPAIGN: &str =
    "[[campaign]]\nid = 7\nname = \"capped\"\nseat = \"adshard\"\nadomain = [\"c.example\"]\n\
     bid = { model = \"cpm\", amount = 2.0 }\nbudget = { daily = 100.0, lifetime = 1000.0 }\n\
     frequency_cap = { max = 2, window_secs = 3600 }\n[[campaign.creatives]]\nid = \"c7\"\n\
     format = \"banner\"\nw = 300\nh = 250\nimage_url = \"https://cdn.example/7.png\"\n\
     landing_url = \"https://c.example/\"\n";

/// Posts the simple banner to `addr` as user `user` (request id
/// `{user}-{n}`) on a new connection; the answer's status.
pub fn bid_as(addr: std::net::SocketAddr, user: &str, n: u32) -> u16 {
    let mut v: serde_json::Value = serde_json::from_slice(&simple_banner()).unwrap_or_default();
    v["id"] = format!("{user}-{n}").into();
    v["user"] = serde_json::json!({ "id": user });
    let body = serde_json::to_vec(&v).unwrap_or_default();
    super::wire::post_bid(
        &mut super::wire::Reader::new(super::wire::connect(addr)),
        &body,
    )
    .status
}
