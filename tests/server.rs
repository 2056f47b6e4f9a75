//! Wire tests: raw bytes over TCP to a server on 127.0.0.1:0.
#![allow(clippy::unwrap_used)]

use adshard::testkit::*;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn healthz_exact_bytes() {
    let srv = start_api("");
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = r.response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"{\"ok\":true}");
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("server"), Some("adshard"));
    assert_eq!(resp.header("date").map(str::len), Some(29));
    assert_eq!(
        resp.header("connection"),
        None,
        "keep-alive is the HTTP/1.1 default"
    );
    // HEAD: same head, no body.
    r.send(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut raw = [0u8; 512];
    let n = std::io::Read::read(&mut r.stream, &mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw[..n]);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("Content-Length: 11\r\n\r\n"),
        "{text}"
    );
    srv.stop();
}

#[test]
fn routes_and_methods() {
    let srv = start_api("");
    let a = srv.local_addr();
    let nf = get(a, "/nope?x=1");
    assert_eq!(nf.status, 404);
    assert_eq!(
        nf.text(),
        "{\"error\":\"no such route\",\"path\":\"/nope\"}"
    );
    assert_eq!(get(a, "/readyz").status, 200);
    let mut r = Reader::new(connect(a));
    r.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let resp = r.response();
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    srv.stop();
}

#[test]
fn pipelined_requests_answer_in_order_in_one_batch() {
    let srv = start_echo("");
    let mut r = Reader::new(connect(srv.local_addr()));
    let mut wire = Vec::new();
    for i in 0..20 {
        let body = format!("body-{i}");
        wire.extend_from_slice(
            format!(
                "POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    wire.extend_from_slice(b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n");
    r.send(&wire);
    for i in 0..20 {
        let resp = r.response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), format!("body-{i}"));
    }
    let last = r.response();
    assert_eq!(last.header("x-method"), Some("GET"));
    srv.stop();
}

/// A pinned shard that spins between requests (here for 30 s, longer than
/// the test) answers every request, with its io_uring rings set up with
/// `IORING_SETUP_COOP_TASKRUN` (`server.coop_taskrun`, the default) and
/// without. With it, a completion waits for the shard's next system call,
/// and a spin that only peeks its completion queue makes none: the vendored
/// liburing enters the kernel when the ring flags waiting work
/// (vendor/glommio/ADSHARD.md). How long a request waits without that
/// (0.69 ms at the median in the half-capacity benchmark, 4 ms a round trip
/// here) is a benchmark's figure, not asserted.
#[test]
fn a_spinning_shard_answers_with_and_without_coop_taskrun() {
    let core = adshard::sys::allowed_cores()[0];
    for coop in [true, false] {
        let srv = start_echo(&format!(
            "[server]\ncores = \"{core}\"\npin = true\nspin_before_park_us = 30000000\ncoop_taskrun = {coop}\n[metrics]\npublish_interval_ms = 60000"
        ));
        for _conn in 0..3 {
            let mut r = Reader::new(connect(srv.local_addr()));
            for i in 0..30 {
                let body = format!("ping-{i}");
                let resp = post(&mut r, "/e", "text/plain", "", body.as_bytes());
                assert_eq!(
                    (resp.status, resp.text()),
                    (200, body),
                    "coop_taskrun = {coop}"
                );
            }
        }
        srv.stop();
    }
}

/// Sends `wire` split into two writes at every byte boundary and checks the
/// server answers the same each time.
fn every_split(srv: &adshard::shard::Server, wire: &[u8], check: impl Fn(&Resp)) {
    for split in 1..wire.len() {
        let mut r = Reader::new(connect(srv.local_addr()));
        r.send(&wire[..split]);
        r.stream.flush().unwrap();
        // Give the first part time to arrive as its own read.
        std::thread::sleep(Duration::from_micros(300));
        r.send(&wire[split..]);
        let resp = r.response();
        check(&resp);
    }
}

#[test]
fn split_reads_at_every_byte_boundary() {
    let srv = start_echo("");
    every_split(
        &srv,
        b"POST /x?q=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world",
        |r| {
            assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
        },
    );
    every_split(
        &srv,
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n",
        |r| assert_eq!((r.status, r.text().as_str()), (200, "hello world")),
    );
    srv.stop();
}

#[test]
fn chunked_and_gzip_bodies() {
    let srv = start_echo("");
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&payload).unwrap();
    let gz = enc.finish().unwrap();
    // gzip inside chunked, in uneven chunks.
    let mut wire = b"POST /g HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
    for part in gz.chunks(97) {
        wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        wire.extend_from_slice(part);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(&wire);
    assert_eq!(r.response().body, payload);
    // Same connection stays usable.
    r.send(
        format!(
            "POST /g HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .as_bytes(),
    );
    r.send(&gz);
    assert_eq!(r.response().body, payload);
    srv.stop();
}

/// A body of two gzip members (RFC 1952 allows concatenation) is read whole.
#[test]
fn gzip_body_of_two_members_is_read_to_the_end() {
    let srv = start_echo("");
    let member = |part: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(part).unwrap();
        enc.finish().unwrap()
    };
    let mut gz = member(b"first half, ");
    gz.extend(member(b"second half"));
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(
        format!(
            "POST /g HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .as_bytes(),
    );
    r.send(&gz);
    assert_eq!(r.response().text(), "first half, second half");
    srv.stop();
}

/// RFC 9112 3.2: more than one Host is a 400; absolute-form targets (what a
/// request through a proxy carries) are served by their path.
#[test]
fn host_headers_and_absolute_form_targets() {
    let srv = start_api("");
    let a = srv.local_addr();
    let mut r = Reader::new(connect(a));
    r.send(b"GET http://t/healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = r.response();
    assert_eq!((resp.status, resp.text().as_str()), (200, "{\"ok\":true}"));
    r.send(b"GET http://t:8080/nope?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = r.response();
    assert_eq!(resp.status, 404);
    assert!(
        resp.text().contains("\"path\":\"/nope\""),
        "{}",
        resp.text()
    );
    let mut r = Reader::new(connect(a));
    r.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    let resp = r.response();
    assert_eq!((resp.status, resp.reason.as_str()), (400, "Bad Request"));
    assert!(resp.text().contains("Host"), "{}", resp.text());
    srv.stop();
}

#[test]
fn expect_100_continue() {
    let srv = start_echo("");
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(b"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let mut interim = [0u8; 25];
    std::io::Read::read_exact(&mut r.stream, &mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    r.send(b"data");
    let resp = r.response();
    assert_eq!((resp.status, resp.text().as_str()), (200, "data"));
    srv.stop();
}

/// Sends `wire`, expects `status` with a JSON error naming `reason`, then EOF.
fn refused(srv: &adshard::shard::Server, wire: &[u8], status: u16, reason: &str) {
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(wire);
    let resp = r.response();
    assert_eq!(resp.status, status, "{}", String::from_utf8_lossy(wire));
    assert!(
        resp.text().contains(reason),
        "{} lacks {reason}",
        resp.text()
    );
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(r.closed(), "connection closes after an error");
}

#[test]
fn each_error_status() {
    let srv = start_echo("");
    refused(
        &srv,
        b"G@T / HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
        "bad method",
    );
    refused(&srv, b"GET / HTTP/1.1\nHost: t\n\n", 400, "bare LF");
    refused(
        &srv,
        b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
        400,
        "malformed header",
    );
    refused(&srv, b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host");
    refused(
        &srv,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        "both",
    );
    refused(
        &srv,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        400,
        "Content-Length",
    );
    refused(
        &srv,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "chunked",
    );
    refused(
        &srv,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
        400,
        "gzip",
    );
    refused(&srv, b"GET / HTTP/1.7\r\nHost: t\r\n\r\n", 505, "version");
    refused(
        &srv,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
        "Transfer-Encoding",
    );
    refused(
        &srv,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx",
        415,
        "Content-Encoding",
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    refused(&srv, big.as_bytes(), 431, "too large");
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..20 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    refused(&srv, many.as_bytes(), 431, "too many");
    refused(
        &srv,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4097\r\n\r\n",
        413,
        "too large",
    );
    let mut chunky = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunky.extend_from_slice(b"400\r\n");
        chunky.extend_from_slice(&[b'x'; 1024]);
        chunky.extend_from_slice(b"\r\n");
    }
    refused(&srv, &chunky, 413, "too large");
    // A gzip bomb: small on the wire, over the limit inflated.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&[0u8; 100_000]).unwrap();
    let gz = enc.finish().unwrap();
    let mut bomb = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    bomb.extend_from_slice(&gz);
    refused(&srv, &bomb, 413, "too large");
    srv.stop();
}

#[test]
fn slowloris_head_times_out_with_408() {
    let srv = start_echo("");
    let mut r = Reader::new(connect(srv.local_addr()));
    let t = Instant::now();
    // Trickle a head one byte at a time, never finishing it.
    for b in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " {
        if r.stream.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let resp = r.response();
    assert_eq!(resp.status, 408);
    assert!(resp.text().contains("head"));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "deadline is for the whole head, not per read"
    );
    assert!(r.closed());
    // A body that stalls gets 408 too.
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let resp = r.response();
    assert_eq!(resp.status, 408);
    assert!(resp.text().contains("body"));
    srv.stop();
}

#[test]
fn idle_keepalive_closes_and_http10_closes() {
    let srv = start_echo("");
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response().status, 200);
    let t = Instant::now();
    assert!(r.closed(), "idle connection is closed by the server");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(b"GET / HTTP/1.0\r\n\r\n");
    let resp = r.response();
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(r.closed());
    let mut r = Reader::new(connect(srv.local_addr()));
    r.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    r.response();
    assert!(r.closed());
    srv.stop();
}

#[test]
fn connection_limit_answers_503() {
    let srv = start_echo("[server]\nmax_connections = 1");
    let mut first = Reader::new(connect(srv.local_addr()));
    first.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.response().status, 200);
    let mut second = Reader::new(connect(srv.local_addr()));
    let resp = second.response();
    assert_eq!(resp.status, 503);
    assert!(second.closed());
    assert_eq!(
        srv.shared()
            .registry
            .shard(0)
            .conns_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    srv.stop();
}

#[test]
fn graceful_shutdown_finishes_in_flight_and_closes_idle() {
    // Idle connections would otherwise last 2 s; a shard sees the drain
    // within half a second (it polls the flag that slowly so that an idle
    // shard parks).
    let srv = start_echo("[timeouts]\nidle_keepalive_ms = 2000\nbody_read_ms = 2000");
    let addr = srv.local_addr();
    let mut idle = Reader::new(connect(addr));
    idle.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    idle.response();
    let mut busy = Reader::new(connect(addr));
    busy.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nhal");
    std::thread::sleep(Duration::from_millis(50));
    srv.begin_shutdown();
    std::thread::sleep(Duration::from_millis(60));
    // The idle connection is closed promptly, well before its idle timeout.
    let t = Instant::now();
    assert!(idle.closed());
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    // The in-flight request still completes, marked close.
    busy.send(b"f!!");
    let resp = busy.response();
    assert_eq!((resp.status, resp.text().as_str()), (200, "half!!"));
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(busy.closed());
    let t = Instant::now();
    srv.join();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener is closed after stop"
    );
}

#[test]
fn metrics_count_requests_and_errors() {
    let srv = start_api("");
    let a = srv.local_addr();
    for _ in 0..3 {
        assert_eq!(get(a, "/healthz").status, 200);
    }
    let mut r = Reader::new(connect(a));
    r.send(b"BAD\x01 / HTTP/1.1\r\n\r\n");
    assert_eq!(r.response().status, 400);
    // Histograms are published every 50 ms in tests.
    std::thread::sleep(Duration::from_millis(120));
    let m = get(a, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain; version=0.0.4"));
    let text = m.text();
    assert!(
        text.contains(
            "adshard_http_requests_total{shard=\"0\",route=\"healthz\",status=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains("adshard_http_requests_total{shard=\"0\",route=\"http\",status=\"400\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("adshard_http_errors_total{shard=\"0\",reason=\"bad_method\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "adshard_http_request_duration_seconds_count{shard=\"0\",route=\"healthz\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains(
        "adshard_http_request_duration_seconds{shard=\"0\",route=\"healthz\",quantile=\"0.99\"}"
    ));
    srv.stop();
}

#[test]
fn two_shards_share_one_port() {
    let srv = start_api("[server]\ncores = \"all\"");
    let a = srv.local_addr();
    // Many connections: SO_REUSEPORT spreads them; all are answered.
    for _ in 0..32 {
        assert_eq!(get(a, "/healthz").status, 200);
    }
    let reg = &srv.shared().registry;
    assert_eq!(reg.requests_total(1, 200), 32, "route 1 is healthz");
    srv.stop();
}

/// Spends 3 ms of CPU per request on `/slow`; sheds `/slow` with 503 and
/// never sheds `/healthz`.
#[derive(Debug)]
struct Slow;

impl adshard::shard::Service for Slow {
    const ROUTES: &'static [&'static str] = &["slow", "healthz"];
    fn handle(
        &self,
        req: &adshard::http::Request<'_, '_>,
        _body: &[u8],
        resp: &mut adshard::http::Response,
    ) -> usize {
        if req.path == "/healthz" {
            resp.set(200, "text/plain", b"ok");
            return 1;
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(3) {
            std::hint::spin_loop();
        }
        resp.set(200, "text/plain", b"done");
        0
    }
    fn shed(
        &self,
        req: &adshard::http::Request<'_, '_>,
        resp: &mut adshard::http::Response,
    ) -> Option<usize> {
        (req.path == "/slow").then(|| {
            resp.set(503, "text/plain", b"busy");
            0
        })
    }
}

/// Statuses of `/slow` requests (`0`) and `/healthz` checks (`1`) from
/// `conns` connections of `per_conn` requests each; connection 0 sends every
/// third as a health check. Returns them with the shed counter.
fn run_slow(toml: &str, conns: usize, per_conn: usize) -> (Vec<(u16, u16)>, u64) {
    let srv =
        adshard::shard::Server::start(config(toml), |_: &adshard::shard::ShardCtx| Slow).unwrap();
    let addr = srv.local_addr();
    let results: Vec<(u16, u16)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..conns)
            .map(|i| {
                s.spawn(move || {
                    let mut r = Reader::new(connect(addr));
                    let mut out = Vec::new();
                    for k in 0..per_conn {
                        let path = if i == 0 && k % 3 == 0 {
                            "/healthz"
                        } else {
                            "/slow"
                        };
                        r.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                        let status = r.response().status;
                        out.push((if path == "/healthz" { 1 } else { 0 }, status));
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let counted = srv
        .shared()
        .registry
        .shard(0)
        .shed
        .load(std::sync::atomic::Ordering::Relaxed);
    srv.stop();
    (results, counted)
}

#[test]
fn overload_sheds_excess_but_serves_health() {
    let (results, counted) = run_slow(
        "[overload]\nenabled = true\ncheck_interval_ms = 1\nmax_lag_ms = 2",
        8,
        30,
    );
    let served = results.iter().filter(|(k, s)| *k == 0 && *s == 200).count();
    let shed = results.iter().filter(|(k, s)| *k == 0 && *s == 503).count();
    assert_eq!(
        served + shed,
        results.iter().filter(|(k, _)| *k == 0).count(),
        "only 200 or 503"
    );
    assert!(
        shed > 0,
        "eight connections of 3 ms requests must overload a 2 ms lag budget"
    );
    assert!(served > 0, "shedding is partial, not a blackout");
    assert!(
        results
            .iter()
            .filter(|(k, _)| *k == 1)
            .all(|(_, s)| *s == 200),
        "health is never shed"
    );
    assert_eq!(counted as usize, shed, "every shed request is counted");
}

/// Two connections keep a queue of one 3 ms request, far under
/// `max_lag_ms`, that never empties: the standing-queue rule alone sheds when
/// `standing_lag_ms` is under that lag, and not when it is over it.
#[test]
fn overload_sheds_a_standing_short_queue() {
    let toml = |standing_lag_ms: u64| {
        format!(
            "[overload]\nenabled = true\ncheck_interval_ms = 1\nmax_lag_ms = 10000\nstanding_lag_ms = {standing_lag_ms}\nstanding_window_ms = 20"
        )
    };
    let (results, counted) = run_slow(&toml(1), 2, 60);
    let shed = results.iter().filter(|(k, s)| *k == 0 && *s == 503).count();
    assert!(shed > 0, "a standing queue over 1 ms: {results:?}");
    assert!(
        results.iter().any(|(k, s)| *k == 0 && *s == 200),
        "shedding is partial"
    );
    assert_eq!(counted as usize, shed);
    let (results, counted) = run_slow(&toml(10_000), 2, 60);
    assert!(
        results.iter().all(|(_, s)| *s == 200),
        "the same load under standing_lag_ms is served in full"
    );
    assert_eq!(counted, 0);
}
