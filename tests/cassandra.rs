//! Event write-behind against a real CQL server: Apache Cassandra 5.0 from
//! Maven Central (deploy/cassandra/cassandra.sh fetches it on first use and
//! runs it on Java 17 on loopback). ScyllaDB speaks the same protocol.
//!
//! Two tests, run one after the other (each starts its own node):
//! - `write_behind_and_replay`: bids and notices over the wire land in the
//!   events table once each, with spend counters equal to the spend charged;
//!   `adshard replay` of a spool file twice stores each event once and adds
//!   its spend once; replay against a dead address fails and keeps the file;
//!   frequency counts come back from the database after a restart.
//! - `node_killed_under_load_loses_nothing`: the node is killed (SIGKILL)
//!   while events stream in and restarted later; every event id is stored
//!   exactly once afterwards and spend is never lost.
#![allow(clippy::unwrap_used)]

use adshard::testkit::cassandra::{cql, free_port, rt, Node, ONE_NODE};
use adshard::testkit::events::charge as event;
use adshard::testkit::*;
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_adshard");
const FIXTURES: &str = fixtures::DIR;

const SIMPLE: &str = "{'class': 'SimpleStrategy', 'replication_factor': 1}";

/// `events.db.seal_interval_ms` of the servers here: money's segments are
/// sealed (and their report rollups written) this often, not every probe.
const SEAL_MS: u64 = 1500;

/// Every stored event: id -> (how many rows, kind, spend); the sum of the
/// spend counters; the sum of the spend ledger (`spend_applied`).
fn stored(addr: &str, ks: &str) -> (HashMap<u128, (u32, String, i64)>, i64, i64) {
    rt().block_on(async {
        use futures_lite::StreamExt;
        let s = cql(addr).await.expect("node answers");
        let mut rows = s
            .query_iter(
                format!("SELECT id, kind, spend_micros FROM {ks}.events"),
                &[],
            )
            .await
            .unwrap()
            .rows_stream::<(uuid::Uuid, String, i64)>()
            .unwrap();
        let mut out: HashMap<u128, (u32, String, i64)> = HashMap::new();
        while let Some(r) = rows.next().await {
            let (id, kind, spend) = r.unwrap();
            let e = out.entry(id.as_u128()).or_insert((0, kind, spend));
            e.0 += 1;
        }
        let mut spend = s
            .query_iter(format!("SELECT spend_micros FROM {ks}.campaign_spend"), &[])
            .await
            .unwrap()
            .rows_stream::<(scylla::value::Counter,)>()
            .unwrap();
        let mut total = 0;
        while let Some(r) = spend.next().await {
            total += r.unwrap().0 .0;
        }
        let mut claims = s
            .query_iter(format!("SELECT spend_micros FROM {ks}.spend_applied"), &[])
            .await
            .unwrap()
            .rows_stream::<(i64,)>()
            .unwrap();
        let mut ledger = 0;
        while let Some(r) = claims.next().await {
            ledger += r.unwrap().0;
        }
        (out, total, ledger)
    })
}

fn db_toml(addr: &str, ks: &str) -> String {
    format!(
        "[events.db]\nnodes = [\"{addr}\"]\nkeyspace = \"{ks}\"\nreplication = \"{SIMPLE}\"\n\
         probe_interval_ms = 200\nseal_interval_ms = {SEAL_MS}\nretry_backoff_ms = 20\n\
         request_timeout_ms = 2000\nconnect_timeout_ms = 1000"
    )
}

#[test]
fn write_behind_and_replay() {
    let _one = ONE_NODE.lock().unwrap_or_else(|p| p.into_inner());
    let node = Node::new("wb");
    let addr = node.addr();

    // 1. Over the wire: bids, wins (charged), bills (already charged).
    let started = std::time::Instant::now();
    let app = start_api(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"cass-token\"\n",
        db_toml(&addr, "t_wire")
    ));
    let a = app.local_addr();
    let m = get(a, "/metrics").text();
    assert!(m.contains("adshard_db_up 1"), "{m}");
    // Budgets come from the fleet's sync (start-up waits for it a while, not
    // without end: a busy database node may take longer).
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&get(a, "/metrics").text(), "adshard_fleet_syncs_total") == 0 {
        assert!(std::time::Instant::now() < until, "the fleet syncs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = std::fs::read(format!("{FIXTURES}/bid-request-2.5_simple-banner.json")).unwrap();
    let mut req: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut r = Reader::new(connect(a));
    let mut wins = 0;
    for n in 0..300 {
        req["id"] = serde_json::Value::String(format!("cass-{n}"));
        let b = serde_json::to_vec(&req).unwrap();
        let resp = post_bid(&mut r, &b);
        if resp.status != 200 {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        let bid = &v["seatbid"][0]["bid"][0];
        // Below every campaign's bid at any hour (day-parting changes who wins).
        let nurl = path(bid["nurl"].as_str().unwrap()).replace("${AUCTION_PRICE}", "0.25");
        assert_eq!(get(a, &nurl).status, 200);
        wins += 1;
        if n % 2 == 0 {
            let burl = path(bid["burl"].as_str().unwrap()).replace("${AUCTION_PRICE}", "0.25");
            assert_eq!(get(a, &burl).status, 200);
        }
    }
    assert!(wins > 50, "most requests bid ({wins})");
    // A test request (OpenRTB test = 1) and its win: stored, neither
    // charged nor in the reports.
    req["id"] = serde_json::Value::String("cass-test".into());
    req["test"] = 1.into();
    let resp = post_bid(&mut r, &serde_json::to_vec(&req).unwrap());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let nurl = path(v["seatbid"][0]["bid"][0]["nurl"].as_str().unwrap())
        .replace("${AUCTION_PRICE}", "0.25");
    assert_eq!(get(a, &nurl).status, 200);
    req["test"] = 0.into();
    // Two crawlers, refused: `ivt` events, counted in the reports too.
    for n in 0..2 {
        req["id"] = serde_json::Value::String(format!("bot-{n}"));
        req["device"] = serde_json::json!({ "ua": "Googlebot/2.1 (+http://www.google.com/bot.html)", "ip": "66.249.66.1" });
        assert_eq!(
            post_bid(&mut r, &serde_json::to_vec(&req).unwrap()).status,
            204
        );
    }
    // The report from the database's rollups (bids by the live writer,
    // wins from the replayed spool segments) equals what was sent, and so
    // does this process's own.
    let admin = app.admin_addr().unwrap();
    let report = |q: &str| -> serde_json::Value {
        let resp = get_auth(admin, &format!("/admin/report?by=day&{q}"), "cass-token");
        assert_eq!(resp.status, 200, "{}", resp.text());
        serde_json::from_slice(&resp.body).unwrap()
    };
    let total = |v: &serde_json::Value| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["campaign"] == "all")
            .cloned()
            .unwrap_or_default()
    };
    let want = serde_json::json!([wins, wins, wins as i64 * 250]);
    let figures =
        |r: &serde_json::Value| serde_json::json!([r["bids"], r["wins"], r["spend_micros"]]);
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while figures(&total(&report("source=db"))) != want {
        assert!(
            std::time::Instant::now() < until,
            "rollups {} want {want}",
            total(&report("source=db"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(figures(&total(&report("source=memory"))), want);
    // The wins reached the rollups through their segments' replays, sealed
    // every SEAL_MS (each a rollup source of its own), not every 200 ms probe.
    let segments = metric(&get(a, "/metrics").text(), "adshard_replay_segments_total");
    let bound = started.elapsed().as_millis() as u64 / SEAL_MS + 2;
    assert!(
        (1..=bound).contains(&segments),
        "{segments} segments replayed, at most {bound} expected"
    );
    std::thread::sleep(Duration::from_millis(150));
    let m = get(a, "/metrics").text();
    let emitted = metric(&m, "adshard_events_total{");
    app.stop();
    let spilled = metric(&m, "adshard_events_spilled_total");
    let (rows, spend, ledger) = stored(&addr, "t_wire");
    assert_eq!(rows.len() as u64, emitted, "every event stored");
    assert!(rows.values().all(|r| r.0 == 1), "each once");
    let kinds = |k: &str| rows.values().filter(|r| r.1 == k).count();
    assert_eq!(kinds("win"), wins + 1, "the test win stored too");
    assert_eq!(kinds("bid"), wins + 1);
    let charged: i64 = rows.values().map(|r| r.2).sum();
    assert_eq!(
        charged,
        wins as i64 * 250,
        "one charge per auction: win, not bill"
    );
    assert_eq!(spend, charged, "spend counters add each charge once");
    assert_eq!(ledger, charged, "the spend ledger holds each charge once");
    assert_eq!(spilled, 0, "nothing spilled while the database was up");

    // 2. `adshard replay`: twice, same rows, spend added once.
    let dir = adshard::testkit::scratch::dir("replay");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shard-0-0000000001.spool");
    let base = now_micros() << 64;
    let mut bytes = Vec::new();
    let mut want_spend = 0;
    for i in 0..1000u128 {
        let spend = if i % 4 == 0 { 2_000 } else { 0 };
        want_spend += spend;
        adshard::events::encode(&event(base | i, (i % 3) as u16, spend), &mut bytes);
    }
    // A torn last write: replayed up to it, reported.
    let mut torn = Vec::new();
    adshard::events::encode(&event(base | 5000, 0, 7), &mut torn);
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&file, &bytes).unwrap();
    let replay = |nodes: &str, extra: &[&str]| {
        Command::new(BIN)
            .arg("replay")
            .args(extra)
            .arg(&file)
            .env("ADSHARD__EVENTS__DB__NODES", format!("[\"{nodes}\"]"))
            .env("ADSHARD__EVENTS__DB__KEYSPACE", "t_replay")
            .env("ADSHARD__EVENTS__DB__REPLICATION", SIMPLE)
            .env("ADSHARD__EVENTS__DB__CONNECT_TIMEOUT_MS", "1000")
            .env("ADSHARD__SCORING__ENABLED", "false")
            .output()
            .unwrap()
    };
    for round in 0..2 {
        let out = replay(&addr, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "replay round {round}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        assert!(stdout.contains("\"events\":1000"), "{stdout}");
        assert!(
            stdout.contains(&format!("\"torn_tail_bytes\":{}", torn.len() / 2)),
            "{stdout}"
        );
        let (rows, spend, ledger) = stored(&addr, "t_replay");
        assert_eq!(rows.len(), 1000, "round {round}");
        assert!(rows.values().all(|r| r.0 == 1));
        assert_eq!(
            ledger, want_spend,
            "round {round}: each charge once in the ledger"
        );
        assert_eq!(spend, want_spend, "round {round}: spend added once");
    }
    // No database: exit 1, file kept.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = replay(&dead, &["--delete"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("events.db"));
    assert!(file.exists());
    let out = replay(&addr, &["--delete"]);
    assert!(out.status.success());
    assert!(!file.exists(), "--delete removes a stored file");
    // Damage after 10 new events: those 10 are stored, the damage is
    // reported (exit 2), and the file is kept even with --delete.
    let mut bytes = Vec::new();
    for i in 0..10u128 {
        adshard::events::encode(&event(base | (7000 + i), 0, 0), &mut bytes);
    }
    let good = bytes.len();
    bytes.extend_from_slice(&[0, 0, 0, 0, 2, 0, 0, 0]);
    bytes.extend_from_slice(&[0xee; 64]);
    std::fs::write(&file, &bytes).unwrap();
    let out = replay(&addr, &["--delete"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("\"events\":10"), "{stdout}");
    assert!(
        stdout.contains(&format!("\"damaged_at\":{good}")),
        "{stdout}"
    );
    assert!(file.exists(), "a damaged file is kept");
    assert_eq!(
        stored(&addr, "t_replay").0.len(),
        1010,
        "the 10 before the damage stored"
    );
    std::fs::remove_file(&file).unwrap();
    // No database configured at all: a clear error, exit 2.
    let out = Command::new(BIN)
        .args(["replay", "x.spool"])
        .env("ADSHARD__SCORING__ENABLED", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("events.db.nodes"));
    let _ = std::fs::remove_dir_all(&dir);

    frequency_caps_survive_a_restart_through_the_database(&addr);
    without_the_fleet_budgets_restart_from_the_database(&addr);
}

/// With `[events.db]` and `[fleet] enabled = false`, a restarted node's
/// spend comes from the database's rollups: today's and lifetime spend are
/// back even when the spool's segments are gone, and counted once.
fn without_the_fleet_budgets_restart_from_the_database(addr: &str) {
    let spool = adshard::testkit::scratch::dir("ledger");
    let _ = std::fs::remove_dir_all(&spool);
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"ledger-token\"\n[fleet]\nenabled = false\n\
         [events]\nspool_dir = {:?}\n{}",
        spool.to_str().unwrap(),
        db_toml(addr, "t_ledger")
    );
    let spend = |admin| -> HashMap<u64, (i64, i64)> {
        let r = get_auth(admin, "/admin/spend", "ledger-token");
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["campaign"].as_u64().unwrap(),
                    (
                        c["today_micros"].as_i64().unwrap(),
                        c["lifetime_micros"].as_i64().unwrap(),
                    ),
                )
            })
            .filter(|c| c.1 != (0, 0))
            .collect()
    };
    let win = |a, id: &str, price: &str| -> u64 {
        let mut v: serde_json::Value = serde_json::from_slice(&fixtures::simple_banner()).unwrap();
        v["id"] = id.into();
        let resp = post_bid(
            &mut Reader::new(connect(a)),
            &serde_json::to_vec(&v).unwrap(),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        let b = &v["seatbid"][0]["bid"][0];
        let nurl = path(b["nurl"].as_str().unwrap()).replace("${AUCTION_PRICE}", price);
        assert_eq!(get(a, &nurl).status, 200);
        b["cid"].as_str().unwrap().parse().unwrap()
    };
    let app = start_api(&toml);
    let a = app.local_addr();
    // Clearing prices below any bid at any hour (day-parting changes the
    // winner; the lowest bids 1.02).
    let first = win(a, "ledger-1", "0.5");
    app.stop();
    for f in std::fs::read_dir(&spool).unwrap() {
        let p = f.unwrap().path();
        if p.to_string_lossy().contains(".spool") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let app = start_api(&toml);
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    assert_eq!(
        spend(admin),
        HashMap::from([(first, (500, 500))]),
        "today's and lifetime spend come back from the database"
    );
    let second = win(a, "ledger-2", "1");
    let after = spend(admin);
    assert_eq!(
        after.values().map(|v| v.1).sum::<i64>(),
        1_500,
        "{after:?} ({second}): budgets count both charges, each once"
    );
    app.stop();
    // Restarted on a spool that still holds its replayed segments: the
    // database's spend is read instead of theirs, not beside it.
    let app = start_api(&toml);
    let admin = app.admin_addr().unwrap();
    assert_eq!(spend(admin).values().map(|v| v.1).sum::<i64>(), 1_500);
    app.stop();
    let _ = std::fs::remove_dir_all(&spool);
}

/// A user capped at two bids an hour stays capped across a restart with
/// `[events.db]` even when the spool's segments are gone: the capped bids
/// are rows in `frequency`, under the spool directory's node id, kept for
/// the cap's window (TTL).
fn frequency_caps_survive_a_restart_through_the_database(addr: &str) {
    let spool = adshard::testkit::scratch::dir("freq-db");
    let _ = std::fs::remove_dir_all(&spool);
    std::fs::create_dir_all(&spool).unwrap();
    let campaigns = spool.join("capped.toml");
    std::fs::write(&campaigns, fixtures::CAPPED_CAMPAIGN).unwrap();
    let toml = format!(
        "[events]\nspool_dir = {:?}\n[campaigns]\npath = {:?}\n{}",
        spool.to_str().unwrap(),
        campaigns.to_str().unwrap(),
        db_toml(addr, "t_freq")
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
    let owner = std::fs::read_to_string(spool.join("node-id")).unwrap();
    let rows: Vec<(String, i32)> = rt().block_on(async {
        let s = cql(addr).await.expect("node answers");
        s.query_unpaged("SELECT owner, TTL(campaign_id) FROM t_freq.frequency", &[])
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .rows::<(String, Option<i32>)>()
            .unwrap()
            .map(|r| r.map(|(o, t)| (o, t.unwrap_or(0))).unwrap())
            .collect()
    });
    assert_eq!(rows.len(), 2, "one row per capped bid: {rows:?}");
    for (o, ttl) in &rows {
        assert_eq!(o, owner.trim(), "kept under the spool's node id");
        assert!((3500..=3600).contains(ttl), "kept for the window: {ttl}");
    }
    // The spool's segments gone (the node id kept): only the database
    // remembers alice's two bids.
    for f in std::fs::read_dir(&spool).unwrap() {
        let p = f.unwrap().path();
        if p.to_string_lossy().contains(".spool") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let app = start_api(&toml);
    let a = app.local_addr();
    let m = get(a, "/metrics").text();
    assert!(
        m.contains("adshard_frequency_restored_bids{source=\"database\"} 2"),
        "{m}"
    );
    assert_eq!(
        fixtures::bid_as(a, "alice", 4),
        204,
        "alice's two bids this hour are remembered"
    );
    assert_eq!(fixtures::bid_as(a, "bob", 1), 200, "others are not capped");
    app.stop();
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn node_killed_under_load_loses_nothing() {
    let _one = ONE_NODE.lock().unwrap_or_else(|p| p.into_inner());
    let mut node = Node::new("fault");
    let addr = node.addr();
    let spool = adshard::testkit::scratch::dir("fault-spool");
    let _ = std::fs::remove_dir_all(&spool);
    let mut cfg = adshard::config::EventsConfig {
        spool_dir: spool.clone(),
        queue_capacity: 8192,
        ..Default::default()
    };
    cfg.db = adshard::config::DbConfig {
        nodes: vec![addr.clone()],
        keyspace: "t_fault".into(),
        replication: SIMPLE.into(),
        retries: 2,
        retry_backoff_ms: 20,
        request_timeout_ms: 1000,
        connect_timeout_ms: 1000,
        probe_interval_ms: 200,
        // Only segments holding spilled events are sealed while the test
        // runs (at the next probe): an hour would be too late.
        seal_interval_ms: 3_600_000,
        ..Default::default()
    };
    let started = adshard::events::Store::start(&cfg, 2).unwrap();
    let db = started.db.clone().unwrap();
    wait_for("the database writer to connect", 30, || {
        db.up.load(Relaxed) == 1
    });
    let sinks: Vec<Arc<adshard::events::Sink>> = started.sinks.into_iter().map(Arc::new).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two producers (one per shard), about 4000 events/s each; every fifth
    // charges spend.
    let producers: Vec<_> = (0..2u16)
        .map(|shard| {
            let (sink, stop) = (sinks[usize::from(shard)].clone(), stop.clone());
            std::thread::spawn(move || {
                let mut pushed = Vec::new();
                let mut spend = 0i64;
                let mut seq = 0u128;
                while !stop.load(Relaxed) {
                    for _ in 0..8 {
                        let id = (now_micros() << 64) | (u128::from(shard) << 48) | seq;
                        seq += 1;
                        let s = if seq.is_multiple_of(5) { 1_000 } else { 0 };
                        spend += s;
                        sink.push(event(id, shard, s));
                        pushed.push(id);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                (pushed, spend)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    node.kill();
    wait_for("the writer to see the node down", 60, || {
        db.up.load(Relaxed) == 0
    });
    std::thread::sleep(Duration::from_secs(2));
    node.start();
    wait_for("the writer to see the node back", 180, || {
        db.up.load(Relaxed) == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Relaxed);
    let mut pushed = Vec::new();
    let mut want_spend = 0;
    for p in producers {
        let (ids, s) = p.join().unwrap();
        pushed.extend(ids);
        want_spend += s;
    }
    // Everything spilled while the node was down is replayed and deleted.
    wait_for("the spool to be replayed", 300, || {
        adshard::events::list_segments(&spool).unwrap().is_empty()
            && db.in_flight.load(Relaxed) == 0
    });
    drop(sinks);
    started.store.join();
    let lost = started
        .spool
        .iter()
        .map(|s| s.dropped.load(Relaxed))
        .sum::<u64>()
        + db.dropped.load(Relaxed);
    assert_eq!(lost, 0, "no event dropped");
    let spilled = db.spilled_down.load(Relaxed)
        + db.spilled_failed.load(Relaxed)
        + started
            .spool
            .iter()
            .map(|s| s.spilled_queue_full.load(Relaxed))
            .sum::<u64>();
    assert!(spilled > 0, "the fault sent events to the spool");
    assert!(
        db.replayed.load(Relaxed) >= spilled,
        "and they were replayed"
    );
    assert!(
        adshard::events::list_segments(&spool).unwrap().is_empty(),
        "nothing left behind at shutdown"
    );
    let (rows, spend, ledger) = stored(&addr, "t_fault");
    let missing = pushed.iter().filter(|id| !rows.contains_key(id)).count();
    assert_eq!(missing, 0, "of {} events, {missing} missing", pushed.len());
    assert_eq!(rows.len(), pushed.len(), "no rows but the events pushed");
    let twice = rows.values().filter(|r| r.0 != 1).count();
    assert_eq!(twice, 0, "each event id stored exactly once");
    assert_eq!(
        ledger, want_spend,
        "the spend ledger holds each charge once"
    );
    assert!(
        spend >= want_spend,
        "counted spend is never lost: {spend} counted, {want_spend} charged"
    );
    eprintln!(
        "fault test: {} events, {spilled} spilled and replayed, spend {spend} of {want_spend} (excess from ambiguous counter writes: {})",
        pushed.len(),
        spend - want_spend
    );
    let _ = std::fs::remove_dir_all(&spool);
}
