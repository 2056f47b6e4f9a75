//! Publisher side over the wire: win, billing, loss, impression and click
//! notices (signed, de-duplicated, charged once) and ad requests.
#![allow(clippy::unwrap_used)]

use adshard::testkit::*;
use std::time::Duration;

const FIXTURES: &str = fixtures::DIR;

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
    // A slot is an impression id, bounded as a bid request's are (here under
    // a head limit that lets the URL through).
    let app = start_api("[limits]\nmax_header_bytes = 8192");
    let resp = get(
        app.local_addr(),
        &format!("/ad?w=300&h=250&slot={}", "s".repeat(1025)),
    );
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().contains("\"param\":\"slot\""),
        "{}",
        resp.text()
    );
    let resp = get(
        app.local_addr(),
        &format!("/ad?w=300&h=250&slot={}", "s".repeat(1024)),
    );
    assert_eq!(resp.status, 200);
    app.stop();
}
