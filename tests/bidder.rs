//! Bidder over the wire: fixtures, encodings, dropped values, the spool
//! when the database is down, gzip, no-bid reasons, privacy, batches.
//! (Notices and ad requests: tests/publisher.rs; admin and reloads:
//! tests/admin.rs.)
#![allow(clippy::unwrap_used)]

use adshard::testkit::*;
use std::io::Write;
use std::time::{Duration, Instant};

const FIXTURES: &str = fixtures::DIR;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let v = fixtures::bid_requests();
    assert_eq!(v.len(), 11);
    v
}

/// Checks a 200 bid response against its request.
fn check_bid(req: &serde_json::Value, resp: &Resp) {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["id"], req["id"]);
    assert_eq!(v["cur"], "USD");
    let imps: Vec<&serde_json::Value> = req["imp"].as_array().unwrap().iter().collect();
    for sb in v["seatbid"].as_array().unwrap() {
        for b in sb["bid"].as_array().unwrap() {
            let imp = imps
                .iter()
                .find(|i| i["id"] == b["impid"])
                .expect("bid names a real imp");
            let floor = imp["bidfloor"].as_f64().unwrap_or(0.0);
            assert!(b["price"].as_f64().unwrap() >= floor, "price >= floor");
            assert!(b["nurl"].as_str().unwrap().ends_with("p=${AUCTION_PRICE}"));
            assert!(b["burl"].as_str().unwrap().contains("/bill?"));
            assert!(b["lurl"].as_str().unwrap().ends_with("r=${AUCTION_LOSS}"));
            for k in ["id", "adm", "crid", "cid"] {
                assert!(!b[k].as_str().unwrap().is_empty(), "{k}");
            }
            assert!(!b["adomain"].as_array().unwrap().is_empty());
            assert!([1, 2, 4].contains(&b["mtype"].as_u64().unwrap()));
            if let Some(bad) = req["badv"].as_array() {
                for d in b["adomain"].as_array().unwrap() {
                    assert!(!bad.contains(d), "badv honoured");
                }
            }
        }
    }
}

#[test]
fn every_fixture_gets_a_valid_200_or_204() {
    let app = start_api("");
    let mut r = Reader::new(connect(app.local_addr()));
    let mut bids = 0;
    for (name, body) in fixtures() {
        let resp = post(&mut r, "/openrtb2/bid", "application/json", "", &body);
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
        match resp.status {
            200 => {
                check_bid(&req, &resp);
                bids += 1;
            }
            204 => assert!(resp.body.is_empty(), "{name}"),
            s => panic!("{name}: status {s}: {}", resp.text()),
        }
        // The same request gzip-encoded gets the same status.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&body).unwrap();
        let gz = enc.finish().unwrap();
        let again = post(
            &mut r,
            "/openrtb2/bid",
            "application/json",
            "Content-Encoding: gzip\r\n",
            &gz,
        );
        assert_eq!(again.status, resp.status, "{name} gzip");
    }
    // The embedded campaign set is written to bid on most of the IAB examples.
    assert!(bids >= 8, "only {bids} fixtures got bids");
    app.stop();
}

#[test]
fn specific_fixture_outcomes() {
    let app = start_api("");
    let mut r = Reader::new(connect(app.local_addr()));
    let read = |n: &str| std::fs::read(format!("{FIXTURES}/{n}")).unwrap();
    // Private deal for Agency1 at 2.50 floor: only the deal campaign may bid.
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        &read("bid-request-2.6_pmp-with-direct-deal.json"),
    );
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let b = &v["seatbid"][0]["bid"][0];
    assert_eq!(
        (
            v["seatbid"][0]["seat"].as_str(),
            b["dealid"].as_str(),
            b["cid"].as_str()
        ),
        (Some("Agency1"), Some("AB-Agency1-0001"), Some("1004"))
    );
    assert!(b["price"].as_f64().unwrap() >= 2.5);
    // Mobile: apple.com is in badv, so the higher-paying apple campaign is skipped.
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        &read("bid-request-2.5_mobile.json"),
    );
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["seatbid"][0]["bid"][0]["cid"], "1005", "{v}");
    // Video: VAST markup.
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        &read("bid-request-2.6_video.json"),
    );
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(v["seatbid"][0]["bid"][0]["adm"]
        .as_str()
        .unwrap()
        .contains("<VAST"));
    // Native: the IAB example elides its assets (`[ ... ]`), so there is
    // nothing to fill: no bid. With them (the corpus copy), native markup
    // answering the request's asset ids, in the 1.0 wrapper it asked for.
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        &read("bid-request-2.5_native-ad.json"),
    );
    assert_eq!(resp.status, 204);
    let corpus = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/corpus/native-1.0_iab-2.5-example-with-assets.json"
    );
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        &std::fs::read(corpus).unwrap(),
    );
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let adm: serde_json::Value =
        serde_json::from_str(v["seatbid"][0]["bid"][0]["adm"].as_str().unwrap()).unwrap();
    assert_eq!(adm["native"]["assets"][0]["id"], 123);
    app.stop();
}

#[test]
fn capnp_requests_get_capnp_responses() {
    let app = start_api("");
    let mut r = Reader::new(connect(app.local_addr()));
    let json = std::fs::read(format!("{FIXTURES}/bid-request-2.6_simple-banner.json")).unwrap();
    let req = adshard::openrtb::decode_json(&json).unwrap();
    let mut wire = Vec::new();
    adshard::openrtb::capnp_codec::encode_request(&req, &mut wire);
    let resp = post(&mut r, "/openrtb2/bid", "application/x-capnp", "", &wire);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/x-capnp"));
    let out = adshard::openrtb::capnp_codec::decode_response(&resp.body).unwrap();
    assert_eq!(out.id, req.id);
    assert_eq!(out.seatbid[0].bid[0].impid, "1");
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/x-capnp",
        "",
        b"garbage!",
    );
    assert_eq!(resp.status, 400);
    assert!(resp.text().contains("Cap'n Proto"));
    app.stop();
}

#[test]
fn unanswerable_requests_get_400_naming_the_field() {
    let app = start_api("");
    let mut r = Reader::new(connect(app.local_addr()));
    // An auction id longer than any exchange's (it would ride in every
    // event the request makes).
    let long = format!(
        r#"{{"id":"{}","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}]}}"#,
        "a".repeat(2000)
    );
    for (body, field) in [
        (long.as_bytes(), "id"),
        (&b"{\"imp\":[{\"id\":\"1\",\"banner\":{}}]}"[..], "id"),
        (b"{\"id\":\"x\"}", "imp"),
        (b"{\"id\":\"x\",\"imp\":null}", "imp"),
        (b"{nope", "body"),
        (b"[{\"id\":\"x\"}]", "body"),
    ] {
        let resp = post(&mut r, "/openrtb2/bid", "application/json", "", body);
        assert_eq!(resp.status, 400);
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["field"], field, "{v}");
        assert_eq!(
            resp.header("connection"),
            None,
            "a bad bid request does not cost the connection"
        );
    }
    let resp = get(app.local_addr(), "/openrtb2/bid");
    assert_eq!(resp.status, 405);
    app.stop();
}

/// What real exchanges send that a bidder should take in stride: a bad
/// value drops the value, a bad impression drops the impression, the rest
/// is answered; each drop is counted by field, and told to test requests.
#[test]
fn unusable_values_are_dropped_and_counted_not_the_request() {
    let app = start_api("");
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    let body = |test: u8| {
        format!(
            r#"{{"id":"lib","test":{test},"site":{{"id":7,"page":"https://p.example/"}},"app":null,"imp":[
            {{"id":"1","banner":{{"w":300,"h":250,"pos":-1,"format":null}},"bidfloor":-1}},
            {{"id":"2","video":{{"mimes":["video/mp4"],"minduration":-1,"protocols":[2,"3"]}}}},
            {{"id":"3"}},
            {{"id":"1","banner":{{"w":300,"h":250}}}}]}}"#
        )
    };
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        body(0).as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let imps: Vec<_> = v["seatbid"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["bid"].as_array().unwrap())
        .map(|b| b["impid"].as_str().unwrap().to_string())
        .collect();
    assert!(imps.contains(&"1".to_string()), "{v}");
    assert!(v.get("ext").is_none(), "only test requests are told: {v}");
    let m = get(a, "/metrics").text();
    for (field, n) in [
        ("imp.banner.pos", 1),
        ("imp.bidfloor", 1),
        ("imp.video.minduration|maxduration|rqddurs", 1),
        ("imp.banner|video|audio|native", 1),
        ("imp.id", 1),
        ("imp.video.protocols|protocol", 0),
    ] {
        let series =
            format!("adshard_request_values_dropped_total{{shard=\"0\",field=\"{field}\"}}");
        assert_eq!(metric(&m, &series), n, "{series}");
    }
    // A test request learns what was dropped, with its bid...
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        body(1).as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        v["ext"]["adshard"]["dropped"],
        serde_json::json!([
            "imp.banner.pos",
            "imp.banner|video|audio|native",
            "imp.bidfloor",
            "imp.id",
            "imp.video.minduration|maxduration|rqddurs"
        ]),
        "{v}"
    );
    // ...or without one: every impression dropped is a no-bid, not a 400.
    let none = r#"{"id":"gone","test":1,"imp":[{"id":"1"},"x"]}"#;
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        none.as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["seatbid"], serde_json::json!([]));
    assert_eq!(
        v["ext"]["adshard"]["dropped"],
        serde_json::json!(["imp", "imp.banner|video|audio|native"])
    );
    let resp = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "",
        none.replace(r#""test":1,"#, "").as_bytes(),
    );
    assert_eq!(resp.status, 204);
    app.stop();
}

/// A database that is not there: the server still starts and serves; its
/// events go to the spool, counted as spilled (db_down); nothing is lost.
/// (Budgets are this node's own: with the fleet on, a node that has never
/// read global spend bids on nothing; tests/fleet.rs.)
#[test]
fn database_down_spills_to_the_spool() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spool = spool_dir();
    let app = start_api(&format!(
        "[events]\nspool_dir = {:?}\n[events.db]\nnodes = [\"{dead}\"]\nconnect_timeout_ms = 100\nprobe_interval_ms = 100\n[fleet]\nenabled = false",
        spool.to_str().unwrap()
    ));
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    let body = std::fs::read(format!("{FIXTURES}/bid-request-2.5_simple-banner.json")).unwrap();
    for _ in 0..3 {
        assert_eq!(
            post(&mut r, "/openrtb2/bid", "application/json", "", &body).status,
            200
        );
    }
    let t = Instant::now();
    let m = loop {
        let m = get(a, "/metrics").text();
        if m.contains("adshard_events_spilled_total{reason=\"db_down\"} 3") {
            break m;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{m}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(m.contains("adshard_db_up 0"), "{m}");
    // Its spend could not be read at start-up (no fleet sync): said, not hidden.
    assert!(
        m.contains("adshard_spend_restore_error{error=\"cannot connect"),
        "{m}"
    );
    app.stop();
    let segs = adshard::events::list_segments(&spool).unwrap();
    let mut n = 0;
    for s in &segs {
        let (evs, tail) = adshard::events::read_spool(&std::fs::read(&s.path).unwrap()).unwrap();
        assert_eq!(tail, 0);
        n += evs.len();
    }
    assert_eq!(n, 3, "every bid event is in the spool");
}

/// Bid responses (and any other of at least `limits.gzip_min_bytes`) are
/// gzipped when the exchange accepts it, and only then.
#[test]
fn responses_are_gzipped_when_the_request_accepts_it() {
    let app = start_api("[limits]\ngzip_min_bytes = 200\n");
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    let body = std::fs::read(format!("{FIXTURES}/bid-request-2.5_simple-banner.json")).unwrap();
    let plain = post_bid(&mut r, &body);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    let gz = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "Accept-Encoding: br, gzip\r\n",
        &body,
    );
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v["id"],
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
    );
    assert!(
        gz.body.len() < json.len(),
        "{} < {}",
        gz.body.len(),
        json.len()
    );
    // Refused by q=0, or too small to be worth it: as is.
    let refused = post(
        &mut r,
        "/openrtb2/bid",
        "application/json",
        "Accept-Encoding: gzip;q=0, *\r\n",
        &body,
    );
    assert_eq!(refused.header("content-encoding"), None);
    r.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let small = r.response();
    assert_eq!(
        (small.header("content-encoding"), small.body.as_slice()),
        (None, &b"{\"ok\":true}"[..])
    );
    app.stop();
}

/// With `bidder.nbr`, a no-bid is a 200 carrying the OpenRTB no-bid reason
/// (for exchanges that ask for one), else an empty 204.
#[test]
fn no_bids_carry_their_reason_where_configured() {
    let app = start_api("[bidder]\nnbr = true\n");
    let mut r = Reader::new(connect(app.local_addr()));
    for (req, nbr) in [
        // No campaign buys a 1x1 banner.
        (
            r#"{"id":"n1","imp":[{"id":"1","banner":{"w":1,"h":1}}]}"#,
            500,
        ),
        // Below the tmax we can meet: a technical error.
        (
            r#"{"id":"n2","tmax":1,"imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#,
            1,
        ),
        // Every impression dropped as unusable: an invalid request.
        (r#"{"id":"n3","imp":[{"id":"1"}]}"#, 2),
    ] {
        let resp = post_bid(&mut r, req.as_bytes());
        assert_eq!(resp.status, 200, "{req}");
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["nbr"], nbr, "{req}: {v}");
        assert_eq!(v["seatbid"], serde_json::json!([]));
    }
    app.stop();
    let app = start_api("");
    let mut r = Reader::new(connect(app.local_addr()));
    let resp = post_bid(
        &mut r,
        br#"{"id":"n1","imp":[{"id":"1","banner":{"w":1,"h":1}}]}"#,
    );
    assert_eq!((resp.status, resp.body.len()), (204, 0), "the default: 204");
    app.stop();
}

/// A request under GDPR (consent strings are not decoded) or with a privacy
/// opt-out is answered contextually, and counted by signal.
#[test]
fn privacy_signals_are_counted() {
    let app = start_api("");
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    let body = std::fs::read(format!("{FIXTURES}/bid-request-2.5_simple-banner.json")).unwrap();
    let mut req: serde_json::Value = serde_json::from_slice(&body).unwrap();
    req["regs"] = serde_json::json!({ "ext": { "gdpr": 1 } });
    req["user"] = serde_json::json!({ "id": "u-1", "ext": { "consent": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA" } });
    assert_eq!(
        post_bid(&mut r, &serde_json::to_vec(&req).unwrap()).status,
        200,
        "contextual bids still go out"
    );
    req["regs"] = serde_json::json!({ "us_privacy": "1YYN" });
    post_bid(&mut r, &serde_json::to_vec(&req).unwrap());
    req["regs"] = serde_json::json!({});
    post_bid(&mut r, &serde_json::to_vec(&req).unwrap());
    let m = get(a, "/metrics").text();
    let n = |s: &str| {
        metric(
            &m,
            &format!("adshard_contextual_requests_total{{shard=\"0\",signal=\"{s}\"}}"),
        )
    };
    assert_eq!((n("gdpr"), n("us_privacy"), n("lmt")), (1, 1, 0));
    app.stop();
}

/// Bid requests read in the same turn are decided together (one model run
/// for all, `bidder.max_batch` at most); each connection still gets the
/// answer to its own requests, in the order it sent them, gzipped where it
/// asked.
#[test]
fn requests_arriving_together_each_get_their_own_answer() {
    // Bid responses (about 1.2 KB here) are gzipped when the client asks;
    // batches of at most 4.
    let app = start_api("[limits]\ngzip_min_bytes = 512\n[bidder]\nmax_batch = 4\n");
    let (_, simple) = fixtures()
        .into_iter()
        .find(|(n, _)| n.contains("2.5_simple-banner"))
        .unwrap();
    let req: serde_json::Value = serde_json::from_slice(&simple).unwrap();
    let ask = |i: usize, k: usize| {
        let mut q = req.clone();
        q["id"] = serde_json::json!(format!("auction-{i}-{k}"));
        q
    };
    let mut conns: Vec<Reader> = (0..32)
        .map(|_| Reader::new(connect(app.local_addr())))
        .collect();
    // Two pipelined requests on each of 32 connections, all sent before
    // any answer is read.
    for (i, r) in conns.iter_mut().enumerate() {
        for k in 0..2 {
            let body = serde_json::to_vec(&ask(i, k)).unwrap();
            let gz = if k == 1 {
                "Accept-Encoding: gzip\r\n"
            } else {
                ""
            };
            r.send(
                format!(
                    "POST /openrtb2/bid HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{gz}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            r.send(&body);
        }
    }
    for (i, r) in conns.iter_mut().enumerate() {
        for k in 0..2 {
            let mut resp = r.response();
            assert_eq!(resp.status, 200, "{i}/{k}: {}", resp.text());
            assert_eq!(
                resp.header("content-encoding") == Some("gzip"),
                k == 1,
                "gzip where asked"
            );
            if k == 1 {
                let mut json = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&resp.body[..]),
                    &mut json,
                )
                .unwrap();
                resp.body = json;
            }
            check_bid(&ask(i, k), &resp);
        }
    }
    let m = get(app.local_addr(), "/metrics").text();
    let (batches, batched) = (
        metric(&m, "adshard_bid_batches_total"),
        metric(&m, "adshard_bid_batched_requests_total"),
    );
    assert_eq!(batched, 64, "{m}");
    assert!(
        (16..=64).contains(&batches),
        "{batches} batches of at most 4"
    );
    app.stop();
}
