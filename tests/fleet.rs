//! Budgets across a fleet: two `adshard serve` processes share one real
//! Cassandra node (deploy/cassandra/cassandra.sh) and three campaigns with a
//! $2 daily budget each.
//!
//! 1. Both nodes take bids and win notices for five times what campaigns 1
//!    and 2 can pay; the exact ledger (`spend_applied`) ends within 2% of
//!    each budget.
//! 2. One node is killed (SIGKILL): the other counts one live node within
//!    two sync intervals, then alone spends campaign 3's budget (within 2%).
//! 3. The killed node restarts on the same spool: it spends at most what
//!    the budgets have left (nothing, or a bid or two, when they ended
//!    within 2%), and every budget stays within 2%; a win notice it
//!    answered before, sent again, is a duplicate (its segment was replayed
//!    into the database and kept as `.done`).
#![allow(clippy::unwrap_used)]

use adshard::testkit::cassandra::{cql, rt, Node, ONE_NODE};
use adshard::testkit::process::{serve, Server};
use adshard::testkit::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_adshard");
const SIMPLE: &str = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
const INTERVAL_MS: u64 = 500;
const BUDGET_MICROS: i64 = 2_000_000;

/// Campaigns 1 ($6 CPM) and 2 ($5) buy 300x250, campaign 3 ($4) 728x90;
/// each has $2 a day, spent as fast as auctions allow.
fn campaigns() -> String {
    let one = |id: u32, cpm: f64, w: u32, h: u32| {
        format!(
            "[[campaign]]\nid = {id}\nname = \"c{id}\"\nseat = \"adshard\"\nadomain = [\"c{id}.example\"]\n\
             cat = [\"IAB3-4\"]\nbid = {{ model = \"cpm\", amount = {cpm} }}\n\
             budget = {{ daily = 2.0, lifetime = 100.0 }}\npacing = \"asap\"\n\
             [[campaign.creatives]]\nid = \"c{id}-{w}x{h}\"\nformat = \"banner\"\nw = {w}\nh = {h}\n\
             image_url = \"https://cdn.example/{id}.png\"\nlanding_url = \"https://c{id}.example/\"\n\n"
        )
    };
    one(1, 6.0, 300, 250) + &one(2, 5.0, 300, 250) + &one(3, 4.0, 728, 90)
}

fn request(n: u64, w: u32, h: u32) -> Vec<u8> {
    format!(
        r#"{{"id":"fleet-{n}","at":1,"imp":[{{"id":"1","banner":{{"w":{w},"h":{h}}}}}],"site":{{"id":"s","page":"https://p.example/"}},"user":{{"id":"u{n}"}}}}"#
    )
    .into_bytes()
}

/// One auction for a `w`x`h` slot on `node` (request `n`): on a bid, its
/// win notice fired at the bid's price; the notice path and its answer.
fn bid_and_win(
    r: &mut Reader,
    node: SocketAddr,
    n: u64,
    (w, h): (u32, u32),
) -> Option<(String, Resp)> {
    let resp = post_bid(r, &request(n, w, h));
    if resp.status != 200 {
        assert_eq!(resp.status, 204);
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let bid = &v["seatbid"][0]["bid"][0];
    let price = bid["price"].as_f64().unwrap().to_string();
    let nurl = path(bid["nurl"].as_str().unwrap()).replace("${AUCTION_PRICE}", &price);
    let notice = get(node, &nurl);
    Some((nurl, notice))
}

/// Bids `count` requests for a `w`x`h` slot on `node`, one every `every`
/// (an exchange's steady traffic), firing each bid's win notice at its
/// price; returns the wins.
fn load(node: SocketAddr, count: u64, every: Duration, slot: (u32, u32), seq: &AtomicU64) -> u64 {
    let mut r = Reader::new(connect(node));
    let mut wins = 0;
    let t0 = Instant::now();
    for i in 0..count {
        if let Some(wait) = (t0 + every * i as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if let Some((_, notice)) = bid_and_win(&mut r, node, seq.fetch_add(1, Relaxed), slot) {
            assert_eq!(notice.status, 200);
            wins += 1;
        }
    }
    wins
}

/// Waits until the exact ledger holds `charged` micro-USD over campaigns
/// 1-3 (the write-behind has caught up with what the nodes charged: each
/// charge once, none lost), then returns each campaign's spend.
fn settled(addr: &str, charged: i64, nodes: &[SocketAddr]) -> [i64; 3] {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let got = [ledger(addr, 1), ledger(addr, 2), ledger(addr, 3)];
        if got.iter().sum::<i64>() == charged {
            return got;
        }
        if Instant::now() >= until {
            for n in nodes {
                let m = get(*n, "/metrics").text();
                let db: Vec<_> = m
                    .lines()
                    .filter(|l| {
                        !l.starts_with('#')
                            && (l.contains("_db_") || l.contains("spill") || l.contains("spool"))
                    })
                    .collect();
                eprintln!("{n}: {db:#?}");
            }
            panic!("ledger {got:?}, charged {charged}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What node `a` charged today, all campaigns (micro-USD).
fn charged(a: SocketAddr) -> i64 {
    metric(&get(a, "/metrics").text(), "adshard_spend_micros_total") as i64
}

/// Today's spend of `campaign` in the exact ledger: the sum of its claims.
fn ledger(addr: &str, campaign: i64) -> i64 {
    rt().block_on(async {
        let s = cql(addr).await.expect("node answers");
        let day =
            scylla::value::CqlDate(((1i64 << 31) + (now_micros() / 86_400_000_000) as i64) as u32);
        let res = s
            .query_unpaged(
                "SELECT spend_micros FROM t_fleet.spend_applied WHERE campaign_id = ? AND day = ?",
                (campaign, day),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        res.rows::<(i64,)>().unwrap().map(|r| r.unwrap().0).sum()
    })
}

fn start(db: &str, spool: &std::path::Path, campaigns: &std::path::Path) -> (Server, SocketAddr) {
    let nodes = format!("[\"{db}\"]");
    let interval = INTERVAL_MS.to_string();
    serve(
        BIN,
        spool,
        &[
            ("ADSHARD__CAMPAIGNS__PATH", campaigns.to_str().unwrap()),
            ("ADSHARD__EVENTS__DB__NODES", &nodes),
            ("ADSHARD__EVENTS__DB__KEYSPACE", "t_fleet"),
            ("ADSHARD__EVENTS__DB__REPLICATION", SIMPLE),
            ("ADSHARD__EVENTS__DB__CONNECT_TIMEOUT_MS", "2000"),
            ("ADSHARD__FLEET__SYNC_INTERVAL_MS", &interval),
        ],
    )
}

fn live_nodes(a: SocketAddr) -> u64 {
    metric(&get(a, "/metrics").text(), "adshard_fleet_live_nodes")
}

fn within_2pct(spent: i64, what: &str) {
    let off = (spent - BUDGET_MICROS).abs() as f64 / BUDGET_MICROS as f64;
    eprintln!(
        "{what}: spent {spent} micro-USD of {BUDGET_MICROS} ({:+.2}%)",
        100.0 * (spent - BUDGET_MICROS) as f64 / BUDGET_MICROS as f64
    );
    assert!(
        off <= 0.02,
        "{what}: spent {spent} micro-USD, budget {BUDGET_MICROS}"
    );
}

#[test]
fn two_nodes_share_budgets_through_the_database() {
    let _one = ONE_NODE.lock().unwrap_or_else(|p| p.into_inner());
    let db = Node::new("fleet");
    let addr = db.addr();
    let dir = adshard::testkit::scratch::dir("fleet");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("campaigns.toml");
    std::fs::write(&file, campaigns()).unwrap();
    let (spool_a, spool_b) = (dir.join("spool-a"), dir.join("spool-b"));
    let (_a, a) = start(&addr, &spool_a, &file);
    let (mut b_proc, b) = start(&addr, &spool_b, &file);
    let until = Instant::now() + Duration::from_secs(10);
    while live_nodes(a) != 2 || live_nodes(b) != 2 {
        assert!(Instant::now() < until, "both nodes see each other");
        std::thread::sleep(Duration::from_millis(100));
    }
    let seq = AtomicU64::new(0);
    // One win on B, its notice kept to be sent again after B restarts.
    let (old_win, first) =
        bid_and_win(&mut Reader::new(connect(b)), b, 999_999, (300, 250)).expect("B bids");
    assert_eq!(first.text(), "{\"duplicate\":false,\"ok\":true}");

    // 1. Five budgets' worth of 300x250 auctions over 10 s, over both nodes
    //    at once: campaign 1 pays 6000 micro-USD a win, campaign 2 5000.
    let auctions = 5 * (BUDGET_MICROS / 6000 + BUDGET_MICROS / 5000) as u64;
    let every = Duration::from_secs(10) / (auctions / 4) as u32;
    let wins: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = [a, a, b, b]
            .into_iter()
            .map(|n| {
                let seq = &seq;
                s.spawn(move || load(n, auctions / 4, every, (300, 250), seq))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!("phase 1: {wins} wins of {auctions} auctions");
    let b_charged = charged(b);
    let [c1, c2, _] = settled(&addr, charged(a) + b_charged, &[a, b]);
    within_2pct(c1, "campaign 1, two nodes");
    within_2pct(c2, "campaign 2, two nodes");

    // 2. Node B dies; A sees it gone within two intervals.
    b_proc.kill();
    let killed = Instant::now();
    while live_nodes(a) != 1 {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "A notices B is gone"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let noticed = killed.elapsed();
    eprintln!(
        "A counted one live node {} ms after B was killed",
        noticed.as_millis()
    );
    assert!(
        noticed <= Duration::from_millis(2 * INTERVAL_MS + 200),
        "within two intervals (+ a scrape): {noticed:?}"
    );
    let c3 = 5 * (BUDGET_MICROS / 4000) as u64;
    let wins: u64 = std::thread::scope(|s| {
        let every = Duration::from_secs(8) / (c3 / 2) as u32;
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let seq = &seq;
                s.spawn(move || load(a, c3 / 2, every, (728, 90), seq))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!("phase 2: {wins} wins of {c3} auctions on A alone");
    let spent = settled(&addr, charged(a) + b_charged, &[a]);
    within_2pct(spent[2], "campaign 3, the survivor alone");

    // 3. B restarts on its spool: it spends only what the budgets have left
    //    (had it forgotten what was spent, it would spend them again).
    let left: i64 = spent.iter().map(|s| (BUDGET_MICROS - s).max(0)).sum();
    let (_b2, b2) = start(&addr, &spool_b, &file);
    let ms = Duration::from_millis(5);
    let wins = load(b2, 200, ms, (300, 250), &seq) + load(b2, 200, ms, (728, 90), &seq);
    let again = charged(b2);
    eprintln!("phase 3: {wins} wins for {again} micro-USD, {left} were left");
    assert!(
        again <= left + 3 * 6000,
        "a restarted node does not spend again what was spent: {again} of {left}"
    );
    // Its notices were replayed into the database during the run; the
    // restarted node still knows them: a win sent again is a duplicate.
    assert_eq!(get(b2, &old_win).text(), "{\"duplicate\":true,\"ok\":true}");
    std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
    let after = settled(&addr, spent.iter().sum::<i64>() + again, &[a, b2]);
    for (i, s) in after.iter().enumerate() {
        within_2pct(*s, &format!("campaign {}, after the restart", i + 1));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn database_unreachable_at_start_means_no_spend_but_service_goes_on() {
    let dead = format!("127.0.0.1:{}", adshard::testkit::cassandra::free_port());
    let app = start_api(&format!(
        "[events.db]\nnodes = [\"{dead}\"]\nconnect_timeout_ms = 200\n\
         [fleet]\nsync_interval_ms = 200\n"
    ));
    let a = app.local_addr();
    assert_eq!(get(a, "/healthz").status, 200);
    let body = std::fs::read(format!(
        "{}/bid-request-2.5_simple-banner.json",
        fixtures::DIR
    ))
    .unwrap();
    let mut r = Reader::new(connect(a));
    assert_eq!(
        post_bid(&mut r, &body).status,
        204,
        "no global spend read yet: no budget to spend"
    );
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let m = get(a, "/metrics").text();
        if metric(&m, "adshard_fleet_sync_errors_total") >= 2 {
            assert!(m.contains("adshard_fleet_fallback 1"), "{m}");
            assert!(m.contains("adshard_fleet_sync_lag_seconds -1"), "{m}");
            assert_eq!(metric(&m, "adshard_fleet_syncs_total"), 0);
            break;
        }
        assert!(Instant::now() < until, "sync errors counted: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(a, "/healthz").status, 200, "still serving");
    app.stop();
}
