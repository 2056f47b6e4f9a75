//! Property tests over well-formed JSON with hostile values: values anywhere
//! in an IAB example or corpus request (an object member, an array element,
//! a whole object) replaced by an extreme or wrongly typed one, or members
//! added where the request has none. Byte mutations (tests/fuzz.rs) mostly
//! break the JSON and stop at the decoder; these reach the auction.
//! Whatever decodes must decode the same with both decoders, pass the
//! invalid-traffic screen or be refused by it, be decided the
//! same when it comes over Cap'n Proto, be decided (alone, with a CTR
//! model, in a batch) and rendered without panicking, and bid only at or
//! above its floor; whatever does not decode must name a field. Failing
//! cases are kept by proptest in tests/fuzz_values.proptest-regressions.
#![allow(clippy::unwrap_used)]

use adshard::adserve::{bid_response, decide, decide_batch, decide_with, Now, ShardState};
use adshard::config::BidderConfig;
use adshard::index::{synth, Index};
use adshard::scoring::CtrModel;
use adshard::testkit::hostile::{self, slot, Step};
use adshard::testkit::models::Hashed;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The kit's hostile values and more that requests meet: strings an
/// exchange misuses (currencies, a 70 KB id, Unicode line separators),
/// numbers at the edges of OpenRTB's ranges, objects of the wrong shape.
fn hostile() -> Vec<Value> {
    let mut v = hostile::values();
    v.extend([
        json!(2),
        json!(-0.0),
        json!(i64::MIN),
        json!(65535),
        json!(" "),
        json!("USD"),
        json!("EUR"),
        json!("ZZZ"),
        json!("y".repeat(70_000)),
        json!("é\u{2028}😀"),
        json!("1e999"),
        json!([null]),
        json!([0, -1, 1e308]),
        json!(["", "a"]),
        json!([{}]),
        json!({"id": ""}),
        json!({"w": 0, "h": 0}),
        json!({"w": u64::MAX, "h": -1}),
        json!({"native": {}}),
    ]);
    v
}

/// Members the fixtures lack somewhere, put into any object by the
/// property test: every object of the request meets every name.
const NAMES: [&str; 44] = [
    "regs",
    "source",
    "pmp",
    "deals",
    "audio",
    "native",
    "video",
    "banner",
    "format",
    "eids",
    "ext",
    "gdpr",
    "us_privacy",
    "gpp",
    "gpp_sid",
    "coppa",
    "schain",
    "bidfloor",
    "bidfloorcur",
    "wseat",
    "bcat",
    "badv",
    "battr",
    "mimes",
    "protocols",
    "rqddurs",
    "plcmt",
    "geo",
    "lat",
    "consent",
    "segment",
    "sua",
    "ifa",
    "lmt",
    "devicetype",
    "instl",
    "secure",
    "exp",
    "qty",
    "private_auction",
    "at",
    "wadomain",
    "cur",
    "request",
];

struct World {
    /// The IAB examples (swept) and then the corpus (the property test's too).
    fixtures: Vec<(Value, Vec<Vec<Step>>)>,
    iab: usize,
    embedded: Index,
    synthetic: Index,
    lists: adshard::quality::Lists,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let iab = adshard::testkit::fixtures::bid_requests();
        let n = iab.len();
        let fixtures = iab
            .into_iter()
            .chain(adshard::testkit::fixtures::corpus_requests())
            .map(|(_, body)| {
                let v: Value = serde_json::from_slice(&body).unwrap();
                let out = hostile::places(&v);
                (v, out)
            })
            .collect();
        // The synthetic set's vocabulary (sizes, geo, deals) meets the
        // fixtures' often enough to bid; the embedded one is the default.
        World {
            fixtures,
            iab: n,
            embedded: Index::load(adshard::api::EMBEDDED_CAMPAIGNS, "embedded", 1).unwrap(),
            synthetic: Index::build(synth::campaigns(3_000, 11), 2).unwrap(),
            lists: adshard::quality::Lists::shipped(),
        }
    })
}

/// What one request came to.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    decoded: bool,
    bids: usize,
    /// Candidates the model scored.
    scored: u32,
}

fn seen_nothing() -> Outcome {
    Outcome {
        decoded: true,
        bids: 0,
        scored: 0,
    }
}

/// Decides `body` every way the shard can and renders the answers.
fn exercise(body: &[u8]) -> Result<Outcome, TestCaseError> {
    let mut fast = adshard::openrtb::JsonDecoder::default();
    let quick = fast
        .decode(body)
        .map(|r| format!("{r:?}"))
        .map_err(|e| e.field);
    let reference = adshard::openrtb::decode_json(body);
    prop_assert_eq!(
        quick,
        reference
            .as_ref()
            .map(|r| format!("{r:?}"))
            .map_err(|e| e.field.clone())
    );
    let req = match reference {
        Ok(r) => r,
        Err(e) => {
            prop_assert!(!e.field.is_empty() && !e.reason.is_empty());
            return Ok(Outcome::default());
        }
    };
    let w = world();
    let cfg = BidderConfig::default();
    // The invalid-traffic screen reads the device and user fields first.
    thread_local! {
        static IVT: std::cell::RefCell<adshard::quality::Checker> =
            std::cell::RefCell::new(adshard::quality::Checker::new(&Default::default()));
    }
    IVT.with(|c| c.borrow_mut().check(&w.lists, &req, 1_800_000_000_000));
    // The same request over Cap'n Proto (the binary transport) decodes and
    // is decided alike: same winners, creatives, deals, prices, reasons.
    let mut wire = Vec::new();
    adshard::openrtb::capnp_codec::encode_request(&req, &mut wire);
    let twin = adshard::openrtb::capnp_codec::decode_request(&wire);
    if req.imp.is_empty() {
        // Every impression dropped as unusable: JSON answers a no-bid that
        // says why; the re-encoded request has none and no trace of them.
        prop_assert_eq!(
            twin.map(|_| ()).map_err(|e| e.field),
            Err("imp".to_string())
        );
        return Ok(seen_nothing());
    }
    prop_assert!(twin.is_ok(), "capnp: {:?}", twin.err());
    let twin = twin.unwrap();
    let gist = |d: &adshard::adserve::Decision| {
        let w: Vec<_> = d
            .winners
            .iter()
            .map(|w| {
                (
                    w.imp,
                    w.campaign,
                    w.creative,
                    w.deal,
                    w.price.to_bits(),
                    w.w,
                    w.h,
                )
            })
            .collect();
        format!("{w:?} {:?} {}", d.no_bids, d.cur)
    };
    let keys = adshard::adserve::signing::NoticeKeys::new(&[[1u8; 32]], 3600);
    let mut seen = seen_nothing();
    for ix in [&w.embedded, &w.synthetic] {
        let now = Now::wall();
        let mut st = ShardState::new(0, 1, &cfg);
        let plain = decide(ix, &mut st, &req, &cfg, now);
        let mut model = Hashed;
        let scored = decide_with(ix, &mut st, &req, &cfg, now, Some(&mut model));
        let batch = decide_batch(ix, &mut st, &[&req, &req], &cfg, now, Some(&mut model));
        // Twin shard states, with the model too (its rows read the request).
        for scoring in [false, true] {
            let fresh = |r: &adshard::openrtb::BidRequest<'_>| {
                let mut m = Hashed;
                let model = scoring.then_some(&mut m as &mut dyn CtrModel);
                decide_with(ix, &mut ShardState::new(0, 1, &cfg), r, &cfg, now, model)
            };
            prop_assert_eq!(
                gist(&fresh(&req)),
                gist(&fresh(&twin)),
                "scoring {}",
                scoring
            );
        }
        seen.scored += scored.scored;
        for d in [&plain, &scored].into_iter().chain(batch.iter()) {
            // Its events survive the spool: each frame reads back as written.
            for ev in &d.events {
                let mut frame = Vec::new();
                adshard::events::record::encode(ev, &mut frame);
                match adshard::events::record::decode(&frame) {
                    Ok(adshard::events::record::Decoded::Event(back, n)) => {
                        prop_assert_eq!(&back, ev);
                        prop_assert_eq!(n, frame.len());
                    }
                    other => prop_assert!(
                        false,
                        "event frame of {} bytes: {:?}",
                        frame.len(),
                        other.map(|_| ())
                    ),
                }
            }
            if let Some(resp) = bid_response(ix, &req, d, &cfg, &keys) {
                let mut out = Vec::new();
                adshard::openrtb::encode_json(&resp, &mut out);
                // A bid is valid JSON, for an impression of the request,
                // priced finitely and at or above that impression's floor.
                let answer: Value = serde_json::from_slice(&out).unwrap();
                for sb in answer["seatbid"].as_array().unwrap() {
                    for b in sb["bid"].as_array().unwrap() {
                        seen.bids += 1;
                        let price = b["price"].as_f64().unwrap();
                        prop_assert!(price.is_finite() && price > 0.0, "price {}", price);
                        let imp = req
                            .imp
                            .iter()
                            .find(|i| i.id == b["impid"].as_str().unwrap())
                            .unwrap();
                        if imp.pmp.is_none() && imp.bidfloorcur.is_empty() {
                            prop_assert!(
                                price >= imp.bidfloor,
                                "price {} floor {}",
                                price,
                                imp.bidfloor
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(seen)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn hostile_values_decide_or_fail_cleanly(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>(), prop::option::of(any::<prop::sample::Index>())),
            1..4,
        ),
    ) {
        let w = world();
        let (v, paths) = &w.fixtures[which.index(w.fixtures.len())];
        let mut v = v.clone();
        let values = hostile();
        for (p, x, name) in &edits {
            let x = values[x.index(values.len())].clone();
            match name {
                // Replace the value at a place.
                None => {
                    if let Some(s) = slot(&mut v, &paths[p.index(paths.len())]) {
                        *s = x;
                    }
                }
                // Add (or replace) a named member of an object, the root or
                // one under it.
                Some(n) => {
                    let at = p.index(paths.len() + 1);
                    let target = if at == paths.len() { Some(&mut v) } else { slot(&mut v, &paths[at]) };
                    if let Some(Value::Object(m)) = target {
                        m.insert(NAMES[n.index(NAMES.len())].to_string(), x);
                    }
                }
            }
        }
        exercise(&serde_json::to_vec(&v).unwrap())?;
    }
}

/// Every single replacement, each place of each fixture by each hostile
/// value: none panics or bids under its floor, and the sweep reaches the
/// auction (most replacements decode, and many still bid).
#[test]
fn every_single_replacement_decides_or_fails_cleanly() {
    let w = world();
    let values = hostile();
    let (mut cases, mut decoded, mut bidding, mut scored) = (0usize, 0usize, 0usize, 0usize);
    for (v, paths) in &w.fixtures[..w.iab] {
        for path in paths {
            for x in &values {
                let mut v = v.clone();
                *slot(&mut v, path).unwrap() = x.clone();
                let body = serde_json::to_vec(&v).unwrap();
                let o = exercise(&body)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
                cases += 1;
                decoded += usize::from(o.decoded);
                bidding += usize::from(o.bids > 0);
                scored += usize::from(o.scored > 0);
            }
        }
    }
    eprintln!("{cases} requests: {decoded} decoded, {bidding} bid, {scored} scored");
    assert!(cases > 10_000, "{cases}");
    assert!(decoded * 2 > cases, "{decoded} of {cases} decoded");
    assert!(bidding * 4 > cases, "{bidding} of {cases} bid");
    assert!(
        scored * 4 > cases,
        "{scored} of {cases} scored by the model"
    );
}
