//! Bidder over the wire: fixtures, encodings, notices, publisher ads, reloads.
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
    for (body, field) in [
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

#[test]
fn notices_over_the_wire() {
    let spool = spool_dir();
    let app = start_api(&format!(
        "[events]\nspool_dir = {:?}\nfsync = \"always\"",
        spool.to_str().unwrap()
    ));
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    let body = std::fs::read(format!("{FIXTURES}/bid-request-2.5_simple-banner.json")).unwrap();
    let resp = post(&mut r, "/openrtb2/bid", "application/json", "", &body);
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let b = &v["seatbid"][0]["bid"][0];
    // Half the bid (which campaign wins depends on the hour: day-parting).
    let half = (b["price"].as_f64().unwrap() * 5_000.0).round() / 10_000.0;
    let p = half.to_string();
    let nurl = path(b["nurl"].as_str().unwrap()).replace("${AUCTION_PRICE}", &p);
    let first = get(a, &nurl);
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "{\"duplicate\":false,\"ok\":true}")
    );
    assert_eq!(get(a, &nurl).text(), "{\"duplicate\":true,\"ok\":true}");
    let burl = path(b["burl"].as_str().unwrap()).replace("${AUCTION_PRICE}", &p);
    assert_eq!(get(a, &burl).status, 200);
    let unsubstituted = path(b["nurl"].as_str().unwrap());
    let bad = get(a, &unsubstituted);
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("\"param\":\"p\""), "{}", bad.text());
    // A loss template fired unsubstituted (plain or percent-encoded) is not
    // a loss: ignored, so the real one is recorded, not a duplicate.
    let template = path(b["lurl"].as_str().unwrap());
    for t in [
        template.clone(),
        template.replace("${AUCTION_LOSS}", "%24%7BAUCTION_LOSS%7D"),
    ] {
        let r = get(a, &t);
        assert_eq!(r.status, 200);
        assert!(r.text().contains("\"recorded\":false"), "{}", r.text());
    }
    let lurl = template.replace("${AUCTION_LOSS}", "102");
    assert_eq!(get(a, &lurl).text(), "{\"duplicate\":false,\"ok\":true}");
    // Impression: a GIF; then the click: 302 to the landing page (a click
    // counts after its impression, see tests/quality.rs).
    let adm = b["adm"].as_str().unwrap().replace("&amp;", "&");
    let imp = adm
        .split("<img src='")
        .nth(2)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let i = get(a, &path(imp));
    assert_eq!(
        (i.status, i.header("content-type")),
        (200, Some("image/gif"))
    );
    let click = adm
        .split("href='")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let c = get(a, &path(click));
    assert_eq!(c.status, 302);
    assert!(c.header("location").unwrap().starts_with("https://"));
    assert_eq!(
        get(a, "/click?a=1&i=1&c=999999&cr=x").status,
        403,
        "unsigned"
    );
    std::thread::sleep(Duration::from_millis(120));
    let m = get(a, "/metrics").text();
    assert!(
        m.contains("adshard_events_total{shard=\"0\",kind=\"win\"} 1"),
        "{m}"
    );
    assert!(m.contains("adshard_events_total{shard=\"0\",kind=\"bill\"} 1"));
    assert!(m.contains("adshard_events_total{shard=\"0\",kind=\"click\"} 1"));
    assert!(m.contains("adshard_duplicate_notices_total{shard=\"0\"} 1"));
    app.stop();
    // Every event reached this shard's spool: the bid and each first notice.
    let segs = adshard::events::list_segments(&spool).unwrap();
    assert_eq!(segs.len(), 1, "{segs:?}");
    let bytes = std::fs::read(&segs[0].path).unwrap();
    let (events, tail) = adshard::events::read_spool(&bytes).unwrap();
    assert_eq!(tail, 0, "stop drains and syncs");
    use adshard::events::Kind::*;
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    for k in [Bid, Win, Bill, Loss, Click, Impression] {
        assert_eq!(
            kinds.iter().filter(|x| **x == k).count(),
            1,
            "{k:?} in {kinds:?}"
        );
    }
    let win = events.iter().find(|e| e.kind == Win).unwrap();
    assert_eq!(
        (win.price_micros, win.campaign_id),
        (
            (half * 1e6).round() as i64,
            b["cid"].as_str().unwrap().parse().unwrap()
        )
    );
}

#[test]
fn publisher_ad_requests() {
    let app = start_api("");
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    r.send(b"GET /ad?slot=top&w=300&h=250&site=news.example HTTP/1.1\r\nHost: t\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nCookie: uid=abc\r\n\r\n");
    let resp = r.response();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["slot"], "top");
    assert_eq!(
        (v["creative"]["w"].as_u64(), v["creative"]["h"].as_u64()),
        (Some(300), Some(250))
    );
    assert!(v["impression_url"].as_str().unwrap().contains("&src=ad&s="));
    assert!(v["markup"].as_str().unwrap().contains("<img"));
    // The impression beacon charges once, however often it fires.
    let imp = v["impression_url"]
        .as_str()
        .unwrap()
        .split_once("localhost:8080")
        .unwrap()
        .1
        .to_string();
    assert_eq!(get(a, &imp).status, 200);
    assert_eq!(get(a, &imp).status, 200);
    // Native: the standard layout (title 1, main image 2, description 3), 1.2.
    let resp = get(a, "/ad?format=native");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let adm: serde_json::Value = serde_json::from_str(v["markup"].as_str().unwrap()).unwrap();
    let ids: Vec<u64> = adm["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_u64().unwrap())
        .collect();
    assert_eq!((adm["ver"].as_str(), ids), (Some("1.2"), vec![1, 2, 3]));
    // No campaign has a 120x600 creative: 204.
    assert_eq!(get(a, "/ad?w=120&h=600").status, 204);
    for (q, param) in [
        ("/ad?w=300", "w"),
        ("/ad?w=x&h=1", "w"),
        ("/ad?format=popunder", "format"),
        ("/ad?w=300&h=250&floor=cheap", "floor"),
    ] {
        let resp = get(a, q);
        assert_eq!(resp.status, 400, "{q}");
        assert!(
            resp.text().contains(&format!("\"param\":\"{param}\"")),
            "{q}: {}",
            resp.text()
        );
    }
    app.stop();
}

#[test]
fn campaign_file_reload_keeps_old_index_on_error() {
    let dir = std::env::temp_dir().join(format!("adshard-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("campaigns.toml");
    std::fs::write(&file, adshard::api::EMBEDDED_CAMPAIGNS).unwrap();
    let app = start_api(&format!("[campaigns]\npath = {:?}\nreload_poll_ms = 20\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret-token\"", file.to_str().unwrap()));
    let a = app.local_addr();
    let version = || app.deps.index.current.load().version;
    assert_eq!(version(), 1);
    // A broken file: old index stays, error reported.
    replace(&file, "[[campaign]]\nid = \"not a number\"\n");
    assert!(eventually(|| app.deps.index.status.load().errors == 1));
    assert_eq!(version(), 1);
    let m = get(a, "/metrics").text();
    assert!(m.contains("adshard_index_reload_errors_total 1"), "{m}");
    assert!(m.contains("adshard_index_last_error{error="));
    let body = std::fs::read(format!("{FIXTURES}/bid-request-2.5_simple-banner.json")).unwrap();
    let mut r = Reader::new(connect(a));
    assert_eq!(
        post(&mut r, "/openrtb2/bid", "application/json", "", &body).status,
        200,
        "still bidding on the old index"
    );
    // A good file with no 300x250 campaigns: picked up, bids stop.
    let only_mobile =
        adshard::api::EMBEDDED_CAMPAIGNS.replace("w = 300\nh = 250", "w = 301\nh = 251");
    replace(&file, &only_mobile);
    assert!(eventually(|| version() == 2));
    assert_eq!(
        post(&mut r, "/openrtb2/bid", "application/json", "", &body).status,
        204
    );
    // Admin upload on the admin listener: token required.
    let admin = app.admin_addr().expect("admin listener configured");
    let upload = adshard::api::EMBEDDED_CAMPAIGNS.as_bytes();
    assert_eq!(
        admin_req(admin, "POST", "/admin/campaigns", "", upload).status,
        401
    );
    assert_eq!(
        admin_req(
            admin,
            "POST",
            "/admin/campaigns",
            "Authorization: Bearer wrong\r\n",
            upload
        )
        .status,
        401
    );
    let ok = admin_req(
        admin,
        "POST",
        "/admin/campaigns",
        "Authorization: Bearer s3cret-token\r\n",
        upload,
    );
    assert_eq!(
        (ok.status, ok.reason.as_str()),
        (202, "Accepted"),
        "{}",
        ok.text()
    );
    assert!(eventually(|| version() == 3));
    assert_eq!(
        post(&mut r, "/openrtb2/bid", "application/json", "", &body).status,
        200
    );
    // A gzip-compressed JSON upload sent chunked: same result, version 4.
    let json = serde_json::to_vec(
        &adshard::index::Index::parse(adshard::api::EMBEDDED_CAMPAIGNS, "x.toml").unwrap(),
    )
    .unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &json).unwrap();
    let gz = enc.finish().unwrap();
    let mut chunked = Vec::new();
    for part in gz.chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut s = connect(admin);
    std::io::Write::write_all(&mut s, b"POST /admin/campaigns HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret-token\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    std::io::Write::write_all(&mut s, &chunked).unwrap();
    assert_eq!(Reader::new(s).response().status, 202);
    assert!(eventually(|| version() == 4));
    let st: serde_json::Value = serde_json::from_slice(
        &admin_req(
            admin,
            "GET",
            "/admin/index",
            "Authorization: Bearer s3cret-token\r\n",
            b"",
        )
        .body,
    )
    .unwrap();
    assert_eq!(st["version"], 4);
    assert_eq!(st["reloads"], 3);
    app.stop();
}

/// One request to the admin listener (one request per connection).
fn admin_req(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    extra: &str,
    body: &[u8],
) -> Resp {
    let mut r = Reader::new(connect(addr));
    r.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    r.send(body);
    r.response()
}

#[test]
fn admin_routes_are_not_on_the_public_listener() {
    let app = start_api("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret-token\"");
    let resp = get(app.local_addr(), "/admin/index");
    assert_eq!(resp.status, 404);
    let admin = app.admin_addr().unwrap();
    assert_eq!(
        admin_req(
            admin,
            "GET",
            "/admin/model",
            "Authorization: Bearer s3cret-token\r\n",
            b""
        )
        .status,
        404,
        "scoring is off in tests"
    );
    assert_eq!(
        admin_req(
            admin,
            "GET",
            "/admin/index",
            "Authorization: Bearer s3cret-token\r\n",
            b""
        )
        .status,
        200
    );
    assert_eq!(
        admin_req(
            admin,
            "DELETE",
            "/admin/index",
            "Authorization: Bearer s3cret-token\r\n",
            b""
        )
        .status,
        405
    );
    app.stop();
    // An admin listener without a token is refused at start-up.
    let e =
        adshard::config::Config::from_toml("[admin]\nlisten = \"127.0.0.1:0\"\n", "t", Vec::new())
            .unwrap_err()
            .to_string();
    assert!(e.contains("admin.token"), "{e}");
}

/// The embedded campaign file cut to its first `n` campaigns.
fn first_campaigns(n: usize) -> String {
    let mut parts = adshard::api::EMBEDDED_CAMPAIGNS.split("\n[[campaign]]\n");
    let mut out = parts.next().unwrap().to_string();
    for p in parts.take(n) {
        out.push_str("\n[[campaign]]\n");
        out.push_str(p);
    }
    out
}

/// Replaces `file` in one step (write aside, rename over), as deploy tools
/// do: a poll sees the old file or the new one, never a half-written one
/// (which the guard would refuse and count, making counts here racy).
fn replace(file: &std::path::Path, text: &str) {
    let aside = file.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, file).unwrap();
}

/// A file emptied, or caught half written, does not replace the index in
/// service: refused, counted and reported until it is whole again (or the
/// change is forced through the admin listener).
#[test]
fn reload_guards_keep_the_index_in_service() {
    let dir = std::env::temp_dir().join(format!("adshard-guard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("campaigns.toml");
    std::fs::write(&file, adshard::api::EMBEDDED_CAMPAIGNS).unwrap();
    let app = start_api(&format!("[campaigns]\npath = {:?}\nreload_poll_ms = 20\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret-token\"", file.to_str().unwrap()));
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    let all = app.deps.index.current.load().len();
    assert!(all >= 8, "{all}");
    let status = || app.deps.index.status.load();
    for (i, (text, why)) in [
        (String::new(), "no campaigns"),
        (first_campaigns(2), "fewer"),
    ]
    .into_iter()
    .enumerate()
    {
        replace(&file, &text);
        assert!(eventually(|| status().errors == i as u64 + 1));
        assert_eq!((status().version, status().campaigns), (1, all), "kept");
        let m = get(a, "/metrics").text();
        let line = m
            .lines()
            .find(|l| l.starts_with("adshard_index_last_error{"))
            .unwrap();
        assert!(line.contains(why) && line.contains("max_shrink"), "{line}");
        assert!(!line.chars().any(char::is_control), "{line}");
    }
    // Whole again (a drop within max_shrink): taken, the error cleared.
    replace(&file, &first_campaigns(all - 1));
    assert!(eventually(|| status().version == 2));
    assert_eq!(status().campaigns, all - 1);
    assert!(!get(a, "/metrics")
        .text()
        .contains("adshard_index_last_error"));
    // The admin listener can force a large drop; without force it is refused.
    let two = first_campaigns(2);
    let up = |q: &str| {
        admin_req(
            admin,
            "POST",
            &format!("/admin/campaigns{q}"),
            "Authorization: Bearer s3cret-token\r\n",
            two.as_bytes(),
        )
        .status
    };
    assert_eq!(up(""), 202);
    assert!(eventually(|| status().errors == 3));
    assert_eq!(status().version, 2);
    assert_eq!(up("?force=true"), 202);
    assert!(eventually(|| status().version == 3));
    assert_eq!(status().campaigns, 2);
    assert_eq!(up("?force=maybe"), 400);
    app.stop();
}

/// The admin listener checks the token on the head (a stranger's body is
/// never read or inflated), and serves connections side by side: a client
/// that stalls holds up nobody.
#[test]
fn admin_authorises_on_the_head_and_serves_connections_concurrently() {
    let app = start_api("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret-token\"");
    let admin = app.admin_addr().unwrap();
    // A big gzip upload without the token: 401 before any body is sent.
    let t = Instant::now();
    let mut r = Reader::new(connect(admin));
    r.send(b"POST /admin/campaigns HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: 250000\r\n\r\n");
    assert_eq!(r.response().status, 401);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Stalled clients: half a head each, never finished.
    let mut stalled: Vec<_> = (0..3).map(|_| connect(admin)).collect();
    for s in &mut stalled {
        std::io::Write::write_all(s, b"GET /admin/index HTTP/1.1\r\nHost: t\r\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let ok = admin_req(
        admin,
        "GET",
        "/admin/index",
        "Authorization: Bearer s3cret-token\r\n",
        b"",
    );
    assert_eq!(ok.status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "waited {:?} behind stalled clients",
        t.elapsed()
    );
    drop(stalled);
    app.stop();
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
