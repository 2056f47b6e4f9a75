//! Traffic quality over the wire: invalid traffic gets a no-bid naming the
//! reason and is counted; clicks without an impression, too fast after it,
//! or repeated are recorded as invalid, never as clicks.
#![allow(clippy::unwrap_used)]

use adshard::testkit::*;
use serde_json::Value;

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn request(id: &str, ua: &str, ip: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"domain":"news.example","cat":["IAB3-1"]}},"device":{{"ua":"{ua}","ip":"{ip}"}},"user":{{"id":"u-{id}"}}}}"#
    )
    .into_bytes()
}

#[test]
fn invalid_traffic_gets_a_no_bid_with_its_reason() {
    let app = start_api(
        "[ivt]\nrequire_device = true\nmax_per_ip = 20\nmax_per_device = 0\n[bidder]\nnbr = true\n",
    );
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    let nbr = |r: &mut Reader, body: &[u8]| -> Option<u64> {
        let resp = post_bid(r, body);
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        v["nbr"].as_u64()
    };
    // A real browser on a public IP bids.
    assert_eq!(nbr(&mut r, &request("ok", UA, "81.2.69.142")), None);
    for (body, code) in [
        (request("bot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "81.2.69.142"), 3),
        (request("private", UA, "192.168.1.20"), 4),
        (request("bad-ip", UA, "81.2.69"), 4),
        (
            br#"{"id":"nodev","imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"news.example"}}"#.to_vec(),
            4,
        ),
    ] {
        assert_eq!(nbr(&mut r, &body), Some(code), "{}", String::from_utf8_lossy(&body));
    }
    // One IP past 20 requests a window: the rest are refused.
    let mut refused = 0;
    for i in 0..30 {
        if nbr(&mut r, &request(&format!("burst-{i}"), UA, "81.2.69.200")) == Some(4) {
            refused += 1;
        }
    }
    assert_eq!(refused, 10);
    let m = get(a, "/metrics").text();
    for (reason, n) in [
        ("bot_ua", 1),
        ("reserved_ip", 1),
        ("device", 2),
        ("rate_ip", 10),
        ("datacenter_ip", 0),
    ] {
        assert_eq!(
            metric(
                &m,
                &format!("adshard_ivt_requests_total{{shard=\"0\",reason=\"{reason}\"")
            ),
            n,
            "{reason}"
        );
    }
    assert_eq!(
        metric(&m, "adshard_no_bids_total{shard=\"0\",reason=\"ivt\""),
        14
    );
    assert!(metric(&m, "adshard_ivt_bot_patterns") > 300);
    app.stop();
}

#[test]
fn a_new_ip_ranges_file_is_picked_up_and_a_bad_one_refused() {
    let dir = adshard::testkit::scratch::dir("ivt");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ranges.txt");
    std::fs::write(&file, "10.0.0.0/8 reserved\n").unwrap();
    let app = start_api(&format!(
        "[ivt]\nip_ranges_file = {:?}\nreload_poll_ms = 20\n[bidder]\nnbr = true\n",
        file.to_str().unwrap()
    ));
    let a = app.local_addr();
    // A connection per request: the pauses outlast the test keep-alive.
    let code = || {
        let mut r = Reader::new(connect(a));
        let v: Value =
            serde_json::from_slice(&post_bid(&mut r, &request("dc", UA, "3.5.141.7")).body)
                .unwrap();
        v["nbr"].as_u64()
    };
    assert_eq!(code(), None);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&file, "10.0.0.0/8 reserved\n3.5.140.0/22 datacenter\n").unwrap();
    wait_for("the new ranges", 10, || {
        metric(
            &get(a, "/metrics").text(),
            "adshard_ivt_lists_reloads_total",
        ) >= 1
    });
    assert_eq!(code(), Some(5));
    // A bad file: the old ranges stay, and /metrics says why.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&file, "3.5.140.0/99 datacenter\n").unwrap();
    wait_for("the refusal", 10, || {
        metric(
            &get(a, "/metrics").text(),
            "adshard_ivt_lists_reload_errors_total",
        ) >= 1
    });
    let m = get(a, "/metrics").text();
    assert!(
        m.contains("adshard_ivt_lists_last_error{error=\"ivt.ip_ranges_file: "),
        "{m}"
    );
    assert!(m.contains("line 1: bad prefix length"), "{m}");
    assert_eq!(code(), Some(5));
    app.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The markup trackers (impression, click) of a bid for `body`.
fn trackers(r: &mut Reader, body: &[u8]) -> (String, String) {
    let resp = post_bid(r, body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    let adm = v["seatbid"][0]["bid"][0]["adm"]
        .as_str()
        .unwrap()
        .to_string();
    let url = |marker: &str| {
        let i = adm.find(marker).unwrap();
        let start = adm[..i].rfind('\'').unwrap() + 1;
        let end = i + adm[i..].find('\'').unwrap();
        path(&adm[start..end])
    };
    (url("/imp?"), url("/click?"))
}

/// Fires a click tracker: a redirect, whether the click counts or not.
fn click(a: std::net::SocketAddr, tracker: &str) {
    let resp = get(a, tracker);
    assert_eq!(resp.status, 302, "{}", resp.text());
}

/// Shard 0's `adshard_events_total` of `kind`.
fn events(m: &str, kind: &str) -> u64 {
    metric(
        m,
        &format!("adshard_events_total{{shard=\"0\",kind=\"{kind}\""),
    )
}

/// Shard 0's `adshard_invalid_clicks_total` for `reason`.
fn invalid_clicks(m: &str, reason: &str) -> u64 {
    metric(
        m,
        &format!("adshard_invalid_clicks_total{{shard=\"0\",reason=\"{reason}\""),
    )
}

#[test]
fn clicks_without_an_impression_too_fast_or_repeated_are_invalid() {
    let app = start_api("[ivt]\nmin_click_delay_ms = 300\n");
    let a = app.local_addr();
    let mut r = Reader::new(connect(a));
    let click = |p: &str| click(a, p);
    // No impression before it.
    let (_, c1) = trackers(&mut r, &request("c1", UA, "81.2.69.142"));
    click(&c1);
    // Too fast after its impression, then repeated.
    let (i2, c2) = trackers(&mut r, &request("c2", UA, "81.2.69.142"));
    assert_eq!(get(a, &i2).status, 200);
    click(&c2);
    click(&c2);
    // A real one: impression, a pause, one click.
    let (i3, c3) = trackers(&mut r, &request("c3", UA, "81.2.69.142"));
    assert_eq!(get(a, &i3).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(400));
    click(&c3);
    let m = get(a, "/metrics").text();
    for (reason, n) in [("no_impression", 1), ("too_fast", 1), ("repeated", 1)] {
        assert_eq!(invalid_clicks(&m, reason), n, "{reason}");
    }
    assert_eq!(events(&m, "click"), 1);
    assert_eq!(events(&m, "invalid_click"), 2);
    app.stop();
}

/// Impressions and clicks are written before they are answered: after a
/// crash (SIGKILL) and a restart on the same spool, a click on an
/// impression shown before the crash is valid, one repeated across the
/// crash is not, and the impression fired again is a duplicate.
#[test]
fn click_checks_survive_a_crash() {
    const BIN: &str = env!("CARGO_BIN_EXE_adshard");
    let spool = spool_dir();
    let env = [("ADSHARD__IVT__MIN_CLICK_DELAY_MS", "0")];
    let (mut first, a) = process::serve(BIN, &spool, &env);
    let mut r = Reader::new(connect(a));
    let (i1, c1) = trackers(&mut r, &request("k1", UA, "81.2.69.142"));
    let (i2, c2) = trackers(&mut r, &request("k2", UA, "81.2.69.142"));
    assert_eq!(get(a, &i1).status, 200);
    assert_eq!(get(a, &i2).status, 200);
    assert_eq!(get(a, &c2).status, 302);
    first.kill();
    let (_second, a) = process::serve(BIN, &spool, &env);
    click(a, &c1);
    click(a, &c2);
    assert_eq!(get(a, &i1).status, 200);
    let m = get(a, "/metrics").text();
    assert_eq!(
        events(&m, "click"),
        1,
        "the click on the impression before the crash"
    );
    assert_eq!(
        events(&m, "invalid_click"),
        0,
        "a repeat records nothing more"
    );
    assert_eq!(
        invalid_clicks(&m, "no_impression"),
        0,
        "the impression is remembered"
    );
    assert_eq!(invalid_clicks(&m, "repeated"), 1, "the click is remembered");
    // The repeated click and the impression fired again.
    assert_eq!(metric(&m, "adshard_duplicate_notices_total{shard=\"0\""), 2);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn a_report_equals_the_events_sent_in_json_and_csv() {
    let app = start_api(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"report-token\"\n[ivt]\nmin_click_delay_ms = 200\nrequire_device = true\n",
    );
    let (a, admin) = (app.local_addr(), app.admin_addr().unwrap());
    let mut r = Reader::new(connect(a));
    // Six bids; three won at 0.50 CPM; two impressions; one valid click,
    // one without an impression; two bot requests refused.
    let mut bids = Vec::new();
    for i in 0..6 {
        let resp = post_bid(&mut r, &request(&format!("rep-{i}"), UA, "81.2.69.142"));
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        bids.push(v["seatbid"][0]["bid"][0].clone());
    }
    let campaign = bids[0]["cid"].as_str().unwrap().to_string();
    assert!(
        bids.iter().all(|b| b["cid"] == campaign.as_str()),
        "one campaign wins them all"
    );
    for b in &bids[..3] {
        let nurl = path(b["nurl"].as_str().unwrap()).replace("${AUCTION_PRICE}", "0.50");
        assert_eq!(get(a, &nurl).status, 200);
    }
    let mk = |b: &Value, which: &str| {
        let adm = b["adm"].as_str().unwrap();
        let i = adm.find(which).unwrap();
        let start = adm[..i].rfind('\'').unwrap() + 1;
        path(&adm[start..i + adm[i..].find('\'').unwrap()])
    };
    assert_eq!(get(a, &mk(&bids[0], "/imp?")).status, 200);
    assert_eq!(get(a, &mk(&bids[1], "/imp?")).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(get(a, &mk(&bids[0], "/click?")).status, 302);
    assert_eq!(get(a, &mk(&bids[2], "/click?")).status, 302);
    for i in 0..2 {
        let bot = request(
            &format!("bot-{i}"),
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "81.2.69.142",
        );
        assert_eq!(post_bid(&mut r, &bot).status, 204);
    }
    // Test traffic (OpenRTB test = 1): answered and its win notice taken,
    // but neither charged nor reported.
    let as_test = |body: Vec<u8>| {
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        v["test"] = 1.into();
        serde_json::to_vec(&v).unwrap()
    };
    for i in 0..2 {
        let resp = post_bid(
            &mut r,
            &as_test(request(&format!("test-{i}"), UA, "81.2.69.142")),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        let nurl = path(v["seatbid"][0]["bid"][0]["nurl"].as_str().unwrap())
            .replace("${AUCTION_PRICE}", "0.50");
        assert_eq!(get(a, &nurl).status, 200);
    }
    let bot = request(
        "test-bot",
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "81.2.69.142",
    );
    assert_eq!(post_bid(&mut r, &as_test(bot)).status, 204);
    let want = serde_json::json!({
        "bids": 6, "wins": 3, "impressions": 2, "clicks": 1, "invalid_clicks": 1,
        "spend_micros": 3 * 500, "win_rate": 0.5, "ctr": 0.5, "avg_clearing_cpm": 0.5,
    });
    let report = |q: &str| get_auth(admin, &format!("/admin/report?{q}"), "report-token");
    let mut row = Value::Null;
    wait_for("the report", 10, || {
        let v: Value = serde_json::from_slice(&report("by=day").body).unwrap();
        row = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["campaign"].as_u64().map(|c| c.to_string()).as_deref() == Some(campaign.as_str())
            })
            .cloned()
            .unwrap_or(Value::Null);
        row["invalid_clicks"] == 1 && row["wins"] == 3
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&row[k], v, "{k} in {row}");
    }
    let v: Value = serde_json::from_slice(&report("by=day").body).unwrap();
    let total = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["campaign"] == "all")
        .unwrap();
    assert_eq!(
        (total["ivt_requests"].as_u64(), total["bids"].as_u64()),
        (Some(2), Some(6))
    );
    // By hour and by creative: the same sums.
    let v: Value =
        serde_json::from_slice(&report(&format!("creative=true&campaign={campaign}")).body)
            .unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["creative"].is_string()), "{v}");
    assert_eq!(
        rows.iter()
            .map(|r| r["bids"].as_u64().unwrap())
            .sum::<u64>(),
        6
    );
    // CSV: a header and rows that parse, with the same figures.
    let csv = report("by=day&format=csv");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = csv.text();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let line = lines
        .find(|l| l.split(',').nth(1) == Some(campaign.as_str()))
        .unwrap();
    let cols: Vec<&str> = line.split(',').collect();
    assert_eq!(cols.len(), head.len());
    let col = |name: &str| cols[head.iter().position(|h| *h == name).unwrap()];
    assert_eq!(
        (col("bids"), col("wins"), col("clicks"), col("spend_micros")),
        ("6", "3", "1", "1500")
    );
    assert_eq!(col("spend_usd").parse::<f64>().unwrap(), 0.0015);
    // Bad parameters name themselves.
    let bad = report("from=yesterday");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("\"param\":\"from\""), "{}", bad.text());
    assert_eq!(report("by=week").status, 400);
    app.stop();
}
