//! Best-first candidate visiting gives the answers an exhaustive auction
//! gives: the IAB fixtures and 10k random requests against a 100k-campaign
//! synthetic index, each decided twice on twin shard states (the fast path,
//! stopping once no campaign left can win, and the reference, visiting every
//! candidate), with CPC scoring replaced by a deterministic function of the
//! model row so both see the same pCTRs. And a batch of requests decided
//! with one model run answers what deciding them one by one answers.
#![allow(clippy::unwrap_used)]

use adshard::adserve::{decide_batch, decide_exhaustive, decide_with, Decision, Now, ShardState};
use adshard::config::BidderConfig;
use adshard::index::synth::{self, Rng};
use adshard::index::Index;
use adshard::testkit::fixtures;
use adshard::testkit::models::Hashed;
use serde_json::json;

const COUNTRIES: [&str; 11] = [
    "USA", "CAN", "GBR", "DEU", "FRA", "JPN", "BRA", "IND", "AUS", "MEX", "NZL",
];
const OS: [&str; 6] = ["iOS", "Android", "Windows", "OS X", "Linux", "Tizen"];
const SIZES: [(u32, u32); 7] = [
    (300, 250),
    (728, 90),
    (320, 50),
    (160, 600),
    (300, 600),
    (970, 250),
    (468, 60),
];

/// A random request over the synthetic index's vocabulary (and a little
/// outside it): sites or apps, geo, device, categories, segments, deals
/// (sometimes private), floors in USD or EUR, blocks, several imps.
fn request(r: &mut Rng, n: u64) -> serde_json::Value {
    let mut imps = Vec::new();
    for i in 0..1 + r.below(3) {
        let mut imp = json!({ "id": format!("{}", i + 1) });
        match r.below(10) {
            0..=5 => {
                let (w, h) = SIZES[r.below(SIZES.len() as u64) as usize];
                let mut b = json!({ "w": w, "h": h });
                if r.chance(30) {
                    let (w2, h2) = SIZES[r.below(SIZES.len() as u64) as usize];
                    b["format"] = json!([{ "w": w2, "h": h2 }]);
                }
                imp["banner"] = b;
            }
            6..=7 => {
                let min = [0, 5, 20][r.below(3) as usize];
                let max = [30, 15, 60][r.below(3) as usize];
                imp["video"] = json!({
                    "mimes": ["video/mp4"], "w": 640, "h": 360,
                    "minduration": min, "maxduration": max, "protocols": [2, 3]
                });
            }
            _ => {
                imp["native"] = json!({ "request": "{\"ver\":\"1.2\",\"assets\":[{\"id\":1,\"required\":1,\"title\":{\"len\":90}},{\"id\":2,\"required\":1,\"img\":{\"type\":3,\"wmin\":600,\"hmin\":300}},{\"id\":3,\"data\":{\"type\":1}}]}", "ver": "1.2" });
            }
        }
        if r.chance(70) {
            imp["bidfloor"] = json!(r.below(1500) as f64 / 100.0);
            match r.below(20) {
                0..=2 => imp["bidfloorcur"] = json!("EUR"),
                // Not in the index's currencies: no bid, for a reason.
                3 => imp["bidfloorcur"] = json!("GBP"),
                _ => {}
            }
        }
        if r.chance(15) {
            let deals: Vec<_> = (0..1 + r.below(3))
                .map(|_| {
                    let mut d = json!({ "id": format!("DEAL-{}", r.below(200)) });
                    if r.chance(50) {
                        d["bidfloor"] = json!(r.below(800) as f64 / 100.0);
                    }
                    d
                })
                .collect();
            imp["pmp"] = json!({ "private_auction": u8::from(r.chance(40)), "deals": deals });
        }
        imps.push(imp);
    }
    let mut req = json!({
        "id": format!("req-{n}"),
        "imp": imps,
        "at": 1 + r.below(2),
        "device": {
            "devicetype": 1 + r.below(8),
            "os": OS[r.below(OS.len() as u64) as usize],
            "geo": { "country": COUNTRIES[r.below(COUNTRIES.len() as u64) as usize] }
        },
    });
    let cat = format!("IAB{}", 1 + r.below(27));
    if r.chance(80) {
        req["site"] = json!({
            "id": "s", "domain": format!("site{}.example", r.below(2500)), "cat": [cat]
        });
    } else {
        req["app"] =
            json!({ "id": "a", "bundle": format!("com.example.app{}", r.below(50)), "cat": [cat] });
    }
    if r.chance(70) {
        let mut u = json!({ "id": format!("user-{}", r.below(300)) });
        if r.chance(30) {
            u["data"] = json!([{ "id": "d", "segment": [
                { "id": format!("seg-{}", r.below(500)) },
                { "id": format!("seg-{}", r.below(500)) }
            ] }]);
        }
        req["user"] = u;
    }
    if r.chance(20) {
        req["bcat"] = json!([format!("IAB{}", 1 + r.below(26))]);
    }
    if r.chance(20) {
        req["badv"] = json!([format!("adv{}.example", r.below(997))]);
    }
    if r.chance(5) {
        let seat = ["adshard", "other"][r.below(2) as usize];
        req["wseat"] = json!([seat]);
    }
    if r.chance(5) {
        req["regs"] = json!({ "coppa": 1 });
    }
    req
}

/// What a user of the decision sees: per imp the winner (campaign id,
/// creative, deal, price) or the no-bid reason, and how many were scored.
fn answer(ix: &Index, d: &Decision) -> String {
    let winners: Vec<_> = d
        .winners
        .iter()
        .map(|w| (w.imp, ix.at(w.campaign).id, w.creative, w.deal, w.price))
        .collect();
    format!("{winners:?} {:?} scored {}", d.no_bids, d.scored)
}

/// Decides `body` both ways on twin states; returns the answer (equal).
fn both(
    ix: &Index,
    fast: &mut ShardState,
    reference: &mut ShardState,
    body: &[u8],
    model: bool,
) -> (String, Decision) {
    let cfg = BidderConfig::default();
    let now = Now::at(1_780_000_000 + 13 * 3600);
    let req = adshard::openrtb::decode_json(body).unwrap();
    let (mut m1, mut m2) = (Hashed, Hashed);
    let (a, b) = if model {
        (
            decide_with(ix, fast, &req, &cfg, now, Some(&mut m1)),
            decide_exhaustive(ix, reference, &req, &cfg, now, Some(&mut m2)),
        )
    } else {
        (
            decide_with(ix, fast, &req, &cfg, now, None),
            decide_exhaustive(ix, reference, &req, &cfg, now, None),
        )
    };
    let (sa, sb) = (answer(ix, &a), answer(ix, &b));
    assert_eq!(sa, sb, "{}", String::from_utf8_lossy(body));
    (sa, a)
}

#[test]
fn best_first_answers_equal_the_exhaustive_auction() {
    let cfg = BidderConfig::default();
    let ix = Index::build(synth::campaigns(100_000, 1), 1).unwrap();
    let embedded = Index::load(adshard::api::EMBEDDED_CAMPAIGNS, "embedded", 1).unwrap();
    for index in [&ix, &embedded] {
        for model in [true, false] {
            let (mut f, mut e) = (ShardState::new(0, 1, &cfg), ShardState::new(0, 1, &cfg));
            for (_, body) in fixtures::bid_requests() {
                both(index, &mut f, &mut e, &body, model);
            }
        }
    }
    let mut r = Rng(42);
    let (mut f, mut e) = (ShardState::new(0, 1, &cfg), ShardState::new(0, 1, &cfg));
    let (mut bids, mut deal_bids, mut cpc_bids, mut scored) = (0, 0, 0, 0);
    let mut reasons = std::collections::HashSet::new();
    for n in 0..10_000 {
        let body = serde_json::to_vec(&request(&mut r, n)).unwrap();
        let (_, d) = both(&ix, &mut f, &mut e, &body, n % 4 != 0);
        bids += d.winners.len();
        deal_bids += d.winners.iter().filter(|w| w.deal.is_some()).count();
        cpc_bids += d
            .winners
            .iter()
            .filter(|w| ix.hot[w.campaign].cpc.is_some())
            .count();
        scored += d.scored;
        reasons.extend(d.no_bids.iter().map(|b| b.label()));
    }
    // The comparison covered what matters: bids of every kind and every
    // kind of no-bid an auction gives.
    assert!(
        bids > 5_000 && deal_bids > 100 && cpc_bids > 500 && scored > 10_000,
        "bids {bids}, deal {deal_bids}, cpc {cpc_bids}, scored {scored}"
    );
    assert!(
        ["no_candidate", "filtered", "currency"]
            .iter()
            .all(|r| reasons.contains(r)),
        "{reasons:?}"
    );
}

/// A batch decided with one model run for all its impressions answers what
/// deciding its requests one after the other answers (bids, prices, no-bid
/// reasons, bid ids, events), with daily budgets of a few cents and
/// frequency caps, so that bids early in a batch make campaigns ineligible
/// for the requests after them.
#[test]
fn a_batch_answers_as_its_requests_one_after_the_other() {
    let cfg = BidderConfig::default();
    let mut file = synth::campaigns(3_000, 7);
    let mut r = Rng(9);
    for c in &mut file.campaign {
        c.budget.daily = 0.01 + r.below(40) as f64 / 1000.0;
    }
    let ix = Index::build(file, 1).unwrap();
    let now = Now::at(1_780_000_000 + 13 * 3600);
    let (mut one, mut batched) = (ShardState::new(0, 1, &cfg), ShardState::new(0, 1, &cfg));
    let (mut bids, mut redecided, mut scored) = (0, 0, 0);
    let mut n = 0;
    while n < 4_000 {
        let size = 1 + r.below(48);
        let bodies: Vec<Vec<u8>> = (0..size)
            .map(|i| serde_json::to_vec(&request(&mut r, n + i)).unwrap())
            .collect();
        n += size;
        let reqs: Vec<_> = bodies
            .iter()
            .map(|b| adshard::openrtb::decode_json(b).unwrap())
            .collect();
        let refs: Vec<_> = reqs.iter().collect();
        let all = decide_batch(&ix, &mut batched, &refs, &cfg, now, Some(&mut Hashed));
        assert_eq!(all.len(), reqs.len());
        for ((req, body), b) in reqs.iter().zip(&bodies).zip(&all) {
            let a = decide_with(&ix, &mut one, req, &cfg, now, Some(&mut Hashed));
            let why = String::from_utf8_lossy(body);
            assert_eq!(answer(&ix, &a), answer(&ix, b), "{why}");
            // Bid ids differ only by the state's random prefix.
            assert_eq!(ids(&a), ids(b), "{why}");
            bids += b.winners.len();
            redecided += b.redecided;
            scored += b.scored;
        }
    }
    // Budgets ran out within batches (impressions decided afresh), and
    // the batches bid and scored.
    assert!(
        bids > 1_000 && redecided > 50 && scored > 1_000,
        "bids {bids}, redecided {redecided}, scored {scored}"
    );
}

/// A decision's bid ids (without the state's random prefix) and its events.
fn ids(d: &Decision) -> String {
    let tail = |id: &str| id.rsplit('-').next().unwrap_or("").to_string();
    let evs: Vec<_> = d
        .events
        .iter()
        .map(|e| {
            (
                e.id,
                e.campaign_id,
                e.price_micros,
                e.imp_id.clone(),
                tail(&e.bid_id),
            )
        })
        .collect();
    format!("{} {evs:?}", tail(&d.bidid))
}
