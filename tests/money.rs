//! Money you can trust, over the wire: notice URLs are signed and refused
//! when forged, tampered with or expired; charges are exact in the bid's
//! currency and never above the bid; every bid is charged once, whatever
//! the exchange repeats; money is answered only once it is written, even
//! across a SIGKILL; spend shows on the admin listener and in /metrics.
#![allow(clippy::unwrap_used)]

use adshard::testkit::wire::{
    connect, get, get_auth, path, post_bid, spool_dir, start_api, Reader, Resp,
};
use adshard::testkit::{fixtures, metric};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

const TOKEN: &str = "money-token";
const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"money-token\"\n";

/// The simple banner request with `cur` set (and the request id `id`).
fn banner(id: &str, cur: Option<&str>) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixtures::simple_banner()).unwrap();
    v["id"] = id.into();
    if let Some(c) = cur {
        v["cur"] = serde_json::json!([c]);
    }
    serde_json::to_vec(&v).unwrap()
}

/// The first bid of the answer to `body`.
fn bid(r: &mut Reader, body: &[u8]) -> serde_json::Value {
    let resp = post_bid(r, body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["seatbid"][0]["bid"][0].clone()
}

/// A notice URL of `b` (`nurl`, `burl`, `lurl`) as a path, cleared at `price`.
fn notice(b: &serde_json::Value, which: &str, price: &str) -> String {
    path(b[which].as_str().unwrap()).replace("${AUCTION_PRICE}", price)
}

/// A query parameter of a URL, as written.
fn param(url: &str, key: &str) -> String {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{url} has no {key}"))
        .to_string()
}

/// Lifetime spend per campaign that spent anything, from the admin
/// listener, micro-USD.
fn spend(admin: SocketAddr) -> HashMap<u64, i64> {
    let r = get_auth(admin, "/admin/spend", TOKEN);
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["today_micros"], c["lifetime_micros"]);
            (
                c["campaign"].as_u64().unwrap(),
                c["lifetime_micros"].as_i64().unwrap(),
            )
        })
        .filter(|&(_, micros)| micros != 0)
        .collect()
}

fn total(admin: SocketAddr) -> i64 {
    spend(admin).values().sum()
}

/// Win events per bid id in the spool (whole events; a torn tail, left by
/// a crash, is not counted).
fn wins_in(spool: &std::path::Path) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for seg in adshard::events::list_segments(spool).unwrap() {
        let (evs, _torn) = adshard::events::read_spool(&std::fs::read(&seg.path).unwrap()).unwrap();
        for e in evs
            .into_iter()
            .filter(|e| e.kind == adshard::events::Kind::Win)
        {
            *n.entry(e.bid_id).or_insert(0) += 1;
        }
    }
    n
}

fn refused(resp: &Resp, status: u16, reason: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert!(
        resp.text().contains(&format!("\"reason\":\"{reason}\"")),
        "{reason}: {}",
        resp.text()
    );
}

#[test]
fn forged_tampered_and_above_bid_notices_charge_nothing() {
    let app = start_api(ADMIN);
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    // The forgery of the report: unsigned, absurd price.
    refused(
        &get(a, "/win?a=NEVER&i=1&c=1001&cr=x&p=1e300"),
        403,
        "unsigned",
    );
    refused(
        &get(a, "/bill?a=NEVER&i=1&c=1001&cr=x&p=1e12"),
        403,
        "unsigned",
    );
    let mut r = Reader::new(connect(a));
    let b = bid(&mut r, &banner("auction-1", None));
    let good = notice(&b, "nurl", "1");
    let bp = param(&good, "bp");
    let cr = param(&good, "cr");
    for (what, from, to) in [
        ("price", format!("&bp={bp}&"), "&bp=1000&".to_string()),
        (
            "campaign",
            format!("?c={}&", b["cid"].as_str().unwrap()),
            "?c=1002&".into(),
        ),
        ("creative", format!("&cr={cr}&"), "&cr=vl-15s&".into()),
        ("auction", "a=auction-1&".into(), "a=auction-2&".into()),
    ] {
        assert!(good.contains(&from), "{what}: {good}");
        refused(&get(a, &good.replacen(&from, &to, 1)), 403, "tampered");
    }
    // Above the bid price: refused; repeated keys: refused.
    let above = format!("{}", bp.parse::<f64>().unwrap() + 0.01);
    refused(&get(a, &notice(&b, "nurl", &above)), 400, "price_above_bid");
    refused(&get(a, &format!("{good}&p=1e9")), 400, "malformed");
    let m = get(a, "/metrics").text();
    assert_eq!(
        metric(
            &m,
            "adshard_notices_rejected_total{shard=\"0\",reason=\"unsigned\""
        ),
        2
    );
    assert_eq!(
        metric(
            &m,
            "adshard_notices_rejected_total{shard=\"0\",reason=\"tampered\""
        ),
        4
    );
    assert_eq!(
        metric(
            &m,
            "adshard_notices_rejected_total{shard=\"0\",reason=\"price_above_bid\""
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "adshard_notices_rejected_total{shard=\"0\",reason=\"malformed\""
        ),
        1
    );
    assert_eq!(
        metric(&m, "adshard_events_total{shard=\"0\",kind=\"win\""),
        0
    );
    assert_eq!(
        (metric(&m, "adshard_spend_micros_total"), total(admin)),
        (0, 0)
    );
    // The genuine notice charges 1.00 CPM once, however often it comes.
    for dup in [false, true, true] {
        let resp = get(a, &good);
        assert_eq!(resp.status, 200);
        assert!(resp.text().contains(&format!("\"duplicate\":{dup}")));
    }
    let cid: u64 = b["cid"].as_str().unwrap().parse().unwrap();
    assert_eq!(spend(admin).get(&cid), Some(&1_000));
    // The bid held its price against the budget until the win came in.
    let held = |admin| {
        let one = get_auth(admin, &format!("/admin/spend?campaign={cid}"), TOKEN);
        let v: serde_json::Value = serde_json::from_slice(&one.body).unwrap();
        v["campaigns"][0]["held_micros"].as_i64().unwrap()
    };
    assert_eq!(held(admin), 0, "settled by its win");
    let next = bid(&mut r, &banner("auction-3", None));
    assert_eq!(next["cid"], b["cid"]);
    let bp: f64 = param(&notice(&next, "nurl", "1"), "bp").parse().unwrap();
    assert_eq!(
        held(admin),
        (bp * 1000.0).round() as i64,
        "a new bid holds its price"
    );
    let m = get(a, "/metrics").text();
    assert_eq!(metric(&m, "adshard_spend_micros_total"), 1_000);
    assert_eq!(metric(&m, "adshard_duplicate_notices_total"), 2);
    let one = get_auth(admin, &format!("/admin/spend?campaign={cid}"), TOKEN);
    assert!(
        one.text().contains("\"lifetime_usd\":0.001"),
        "{}",
        one.text()
    );
    app.stop();
}

#[test]
fn jpy_and_eur_bids_are_charged_exactly_in_usd() {
    let app = start_api(ADMIN);
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    let mut r = Reader::new(connect(a));
    let mut expected = 0i64;
    for (cur, fx) in [("JPY", "0.0067"), ("EUR", "1.08")] {
        let b = bid(&mut r, &banner(&format!("fx-{cur}"), Some(cur)));
        let nurl = notice(&b, "nurl", "0");
        assert_eq!(
            (param(&nurl, "cur"), param(&nurl, "fx")),
            (cur.into(), fx.into())
        );
        // Cleared at 90% of the bid, in the bid's currency.
        let bp: f64 = param(&nurl, "bp").parse().unwrap();
        let clearing = format!("{:.4}", bp * 0.9);
        assert_eq!(get(a, &notice(&b, "nurl", &clearing)).status, 200);
        let micros = clearing.parse::<f64>().unwrap() * fx.parse::<f64>().unwrap() * 1000.0;
        expected += micros.round() as i64;
        if cur == "JPY" {
            assert!(bp > 100.0, "a JPY bid is in yen: {bp}");
            assert!(micros < 5_000.0, "and charged in dollars: {micros}");
        }
    }
    assert_eq!(total(admin), expected);
    app.stop();
}

#[test]
fn two_auctions_with_one_request_id_are_both_billed() {
    let app = start_api(ADMIN);
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    let mut r = Reader::new(connect(a));
    let first = bid(&mut r, &banner("amp-stored-request", None));
    let second = bid(&mut r, &banner("amp-stored-request", None));
    assert_ne!(first["id"], second["id"], "bid ids are unique");
    for b in [&first, &second] {
        let resp = get(a, &notice(b, "burl", "0.5"));
        assert_eq!(resp.text(), "{\"duplicate\":false,\"ok\":true}");
    }
    assert_eq!(total(admin), 1_000);
    app.stop();
}

#[test]
fn expired_notices_are_refused() {
    let app = start_api("[bidder]\nnotice_ttl = \"1s\"\n");
    let a = app.local_addr();
    let b = bid(&mut Reader::new(connect(a)), &banner("old", None));
    std::thread::sleep(Duration::from_millis(2_100));
    refused(&get(a, &notice(&b, "nurl", "1")), 403, "expired");
    app.stop();
}

#[test]
fn a_full_dedupe_table_answers_503_and_charges_nothing_blind() {
    let app = start_api(&format!("{ADMIN}[bidder]\ndedupe_slots = 1024\n"));
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    let mut r = Reader::new(connect(a));
    let (mut ok, mut full) = (0i64, 0u64);
    // Each charged win takes two slots (the win and the charge): 700 wins
    // cannot all fit in 1024.
    for i in 0..700 {
        let b = bid(&mut r, &banner(&format!("d{i}"), None));
        r.send(
            format!(
                "GET {} HTTP/1.1\r\nHost: t\r\n\r\n",
                notice(&b, "nurl", "1")
            )
            .as_bytes(),
        );
        let resp = r.response();
        match resp.status {
            200 => ok += 1,
            503 => {
                assert_eq!(resp.header("retry-after"), Some("1"));
                refused(&resp, 503, "dedupe_full");
                full += 1;
            }
            s => panic!("{s}: {}", resp.text()),
        }
    }
    assert!(full > 0 && ok > 400, "ok {ok}, full {full}");
    assert_eq!(
        total(admin),
        ok * 1_000,
        "only what was answered 200 is charged"
    );
    let m = get(a, "/metrics").text();
    assert_eq!(metric(&m, "adshard_dedupe_full_total"), full);
    assert_eq!(
        metric(
            &m,
            "adshard_notices_rejected_total{shard=\"0\",reason=\"dedupe_full\""
        ),
        full
    );
    app.stop();
}

#[test]
fn an_ad_impression_charges_the_signed_price_not_the_query() {
    let app = start_api(ADMIN);
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    let resp = get(a, "/ad?slot=top&w=300&h=250&site=news.example");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let imp = path(v["impression_url"].as_str().unwrap());
    let price = v["price_cpm"].as_f64().unwrap();
    assert_eq!(get(a, &format!("{imp}&p=1000000")).status, 200);
    assert_eq!(get(a, &imp).status, 200);
    assert_eq!(total(admin), (price * 1000.0).round() as i64);
    app.stop();
}

#[test]
fn a_win_is_in_the_spool_before_it_is_answered() {
    let spool = spool_dir();
    let app = start_api(&format!(
        "[events]\nspool_dir = {:?}\n",
        spool.to_str().unwrap()
    ));
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    for i in 0..20 {
        let b = bid(&mut r, &banner(&format!("w{i}"), None));
        assert_eq!(get(a, &notice(&b, "nurl", "1")).status, 200);
        // Answered: so already in the kernel, with fsync = "interval" and
        // the server still running.
        let id = b["id"].as_str().unwrap();
        assert_eq!(wins_in(&spool).get(id), Some(&1), "win {i}");
    }
    app.stop();
}

#[test]
fn spend_survives_a_restart_on_the_same_spool() {
    let spool = spool_dir();
    let toml = format!(
        "{ADMIN}[events]\nspool_dir = {:?}\n",
        spool.to_str().unwrap()
    );
    let app = start_api(&toml);
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    let mut r = Reader::new(connect(a));
    let b = bid(&mut r, &banner("before-restart", None));
    // Clearing prices below any bid at any hour (day-parting changes the
    // winner; the lowest bids 1.02).
    assert_eq!(get(a, &notice(&b, "nurl", "0.5")).status, 200);
    let before = spend(admin);
    app.stop();
    let app = start_api(&toml);
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    assert_eq!(spend(admin), before, "today's and lifetime spend restored");
    let cid: u64 = b["cid"].as_str().unwrap().parse().unwrap();
    assert_eq!(before.get(&cid), Some(&500));
    // Budgets count it: a second charge adds to it.
    let mut r = Reader::new(connect(a));
    let b = bid(&mut r, &banner("after-restart", None));
    assert_eq!(get(a, &notice(&b, "nurl", "1")).status, 200);
    let cid2: u64 = b["cid"].as_str().unwrap().parse().unwrap();
    let after = spend(admin);
    assert_eq!(after.values().sum::<i64>(), 1_500, "{after:?} ({cid2})");
    app.stop();
}

#[test]
fn frequency_caps_survive_a_restart_on_the_same_spool() {
    let spool = spool_dir();
    let campaigns = spool.join("capped.toml");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(&campaigns, fixtures::CAPPED_CAMPAIGN).unwrap();
    let toml = format!(
        "[events]\nspool_dir = {:?}\n[campaigns]\npath = {:?}\n",
        spool.to_str().unwrap(),
        campaigns.to_str().unwrap()
    );
    let app = start_api(&toml);
    let a = app.local_addr();
    assert_eq!(
        [
            fixtures::bid_as(a, "alice", 1),
            fixtures::bid_as(a, "alice", 2),
            fixtures::bid_as(a, "alice", 3)
        ],
        [200, 200, 204]
    );
    app.stop();
    let app = start_api(&toml);
    let a = app.local_addr();
    assert_eq!(
        fixtures::bid_as(a, "alice", 4),
        204,
        "alice's two bids this hour are remembered"
    );
    assert_eq!(fixtures::bid_as(a, "bob", 1), 200, "others are not capped");
    app.stop();
}

mod fault {
    //! SIGKILL under multi-connection notice load.

    use super::*;
    use adshard::testkit::process::Server;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    const BIN: &str = env!("CARGO_BIN_EXE_adshard");

    fn serve(spool: &std::path::Path) -> (Server, SocketAddr) {
        adshard::testkit::process::serve(BIN, spool, &[])
    }

    /// Sends each (bid id, path) on one of `conns` keep-alive connections;
    /// returns the bid ids answered 200, and each answer's body.
    fn fire(
        a: SocketAddr,
        notices: &[(String, String)],
        conns: usize,
        sent: &Arc<AtomicUsize>,
    ) -> Vec<(String, String)> {
        let acked = Arc::new(Mutex::new(Vec::new()));
        std::thread::scope(|s| {
            for k in 0..conns {
                let (acked, sent) = (acked.clone(), sent.clone());
                s.spawn(move || {
                    let Ok(stream) = std::net::TcpStream::connect(a) else {
                        return;
                    };
                    let mut r = Reader::new(stream);
                    for (id, p) in notices.iter().skip(k).step_by(conns) {
                        r.send(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                        let Some(resp) = r.try_response() else { return };
                        if resp.status == 200 {
                            acked.lock().unwrap().push((id.clone(), resp.text()));
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
    }

    #[test]
    fn sigkill_under_notice_load_loses_no_acknowledged_win() {
        let spool = spool_dir();
        let (mut child, a) = serve(&spool);
        let mut r = Reader::new(connect(a));
        let notices: Vec<(String, String)> = (0..1200)
            .map(|i| {
                let b = bid(&mut r, &banner(&format!("k{i}"), None));
                (
                    b["id"].as_str().unwrap().to_string(),
                    notice(&b, "nurl", "1"),
                )
            })
            .collect();
        drop(r);
        let sent = Arc::new(AtomicUsize::new(0));
        let killer = {
            let sent = sent.clone();
            let pid = child.0.id() as i32;
            std::thread::spawn(move || {
                while sent.load(Ordering::Relaxed) < 400 {
                    std::thread::yield_now();
                }
                // SAFETY: signalling our own child process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            })
        };
        let acked = fire(a, &notices, 8, &sent);
        killer.join().unwrap();
        let _ = child.0.wait();
        assert!(
            acked.len() >= 400 && acked.len() < notices.len(),
            "killed mid-load: {} acked",
            acked.len()
        );
        let wins = wins_in(&spool);
        for (id, _) in &acked {
            assert_eq!(
                wins.get(id),
                Some(&1),
                "acknowledged win {id} is in the spool once"
            );
        }
        assert!(wins.values().all(|&n| n == 1), "no win twice");
        // Restarted, the exchange retries everything: what was recorded is
        // a duplicate, the rest is recorded now, each win exactly once.
        let (mut child, a) = serve(&spool);
        let again = fire(a, &notices, 8, &Arc::new(AtomicUsize::new(0)));
        assert_eq!(again.len(), notices.len(), "every retry answered 200");
        let acked: std::collections::HashSet<_> = acked.into_iter().map(|(id, _)| id).collect();
        for (id, body) in &again {
            if acked.contains(id) {
                assert!(body.contains("\"duplicate\":true"), "{id}: {body}");
            }
        }
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
        assert!(child.0.wait().unwrap().success());
        let wins = wins_in(&spool);
        assert_eq!(wins.len(), notices.len());
        assert!(wins.values().all(|&n| n == 1), "every win exactly once");
        let _ = std::fs::remove_dir_all(&spool);
    }
}
