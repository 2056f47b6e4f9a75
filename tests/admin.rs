//! The admin listener and live reloads over the wire: campaign files
//! reloaded or refused (the old index stays), reload guards, routes kept
//! off the public listener, tokens checked on the head.
#![allow(clippy::unwrap_used)]

use adshard::testkit::*;
use std::time::{Duration, Instant};

const FIXTURES: &str = fixtures::DIR;

/// A server watching its own copy of the embedded campaigns file (polled
/// every 20 ms), with the admin listener on (token `s3cret-token`).
fn watching_campaigns(tag: &str) -> (adshard::api::App, std::path::PathBuf) {
    let dir = adshard::testkit::scratch::dir(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("campaigns.toml");
    std::fs::write(&file, adshard::api::EMBEDDED_CAMPAIGNS).unwrap();
    let app = start_api(&format!("[campaigns]\npath = {:?}\nreload_poll_ms = 20\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret-token\"", file.to_str().unwrap()));
    (app, file)
}

#[test]
fn campaign_file_reload_keeps_old_index_on_error() {
    let (app, file) = watching_campaigns("reload");
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
    let postings = m
        .lines()
        .find_map(|l| l.strip_prefix("adshard_index_postings_bytes "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        postings.is_some_and(|b| b > 0),
        "the index in service reports its posting lists' memory: {m}"
    );
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
    // A fresh connection: waiting for the reload can outlast the test
    // config's keep-alive (600 ms), which closes the first one.
    let mut r = Reader::new(connect(a));
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
    let (app, file) = watching_campaigns("guard");
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
