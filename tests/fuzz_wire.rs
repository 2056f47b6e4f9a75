//! Hostile bytes over real connections to a real server: requests built
//! from pieces of valid ones (bid, ad, notice, admin-less routes; lengths
//! that lie, chunked bodies cut anywhere, gzip of garbage, Cap'n Proto
//! garbage, pipelining, several writes) and from raw noise. Each
//! connection sends its bytes, half-closes, and reads to the end: what
//! comes back must be whole HTTP/1.1 responses with a status. After every
//! case the same server still answers a health check and a bid. A panic
//! in a shard would take its connections and fail the bid after it.
#![allow(clippy::unwrap_used)]

use adshard::testkit::wire::{start_api, Reader};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// The bid body every piece list may use.
fn banner() -> Vec<u8> {
    adshard::testkit::fixtures::simple_banner()
}

/// One request: a line, headers, how its length is told, a body, and
/// what is done to the whole (cut short, noise appended).
#[derive(Debug, Clone)]
struct Req {
    line: usize,
    headers: Vec<usize>,
    length: Length,
    body: usize,
    cut: Option<u16>,
    noise: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Length {
    /// Content-Length: the body's.
    True,
    /// Content-Length: any number.
    Lie(u32),
    /// Chunked, the body in chunks of this size (the last may be cut).
    Chunked(u16),
    /// None at all.
    Absent,
}

const LINES: [&str; 9] = [
    "POST /openrtb2/bid HTTP/1.1\r\n",
    "POST /openrtb2/bid HTTP/1.0\r\n",
    "GET /ad?w=300&h=250&slot=a HTTP/1.1\r\n",
    "GET /win?b=x&s=y&p=1 HTTP/1.1\r\n",
    "POST /bill HTTP/1.1\r\n",
    "GET /metrics HTTP/1.1\r\n",
    "GET /healthz HTTP/1.1\r\n",
    "PUT /openrtb2/bid HTTP/1.1\r\n",
    "POST /openrtb2/bid?x=%zz HTTP/1.1\r\n",
];

const HEADERS: [&str; 11] = [
    "Content-Type: application/json\r\n",
    "Content-Type: application/x-capnp\r\n",
    "Content-Encoding: gzip\r\n",
    "Expect: 100-continue\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive\r\n",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n",
    "X-Forwarded-For: 203.0.113.9\r\n",
    "Content-Length: 1\r\n",
    "Transfer-Encoding: gzip, chunked\r\n",
    "Host: u\r\n",
];

fn req() -> impl Strategy<Value = Req> {
    (
        prop_oneof![4 => Just(0usize), 2 => 0..LINES.len()],
        prop::collection::vec(prop_oneof![3 => Just(0usize), 1 => 0..HEADERS.len()], 0..4),
        prop_oneof![
            4 => Just(Length::True),
            1 => (0u32..6000).prop_map(Length::Lie),
            2 => (1u16..600).prop_map(Length::Chunked),
            1 => Just(Length::Absent),
        ],
        0usize..4,
        prop_oneof![4 => Just(None), 1 => any::<u16>().prop_map(Some)],
        prop_oneof![4 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..16)],
    )
        .prop_map(|(line, headers, length, body, cut, noise)| Req {
            line,
            headers,
            length,
            body,
            cut,
            noise,
        })
}

fn bytes(reqs: &[Req]) -> Vec<u8> {
    let bodies = [
        banner(),
        gzip(&banner()),
        gzip(b"\x00garbage"),
        b"\x00\x00\x00\x00\x01\x00\x00\x00garbage!".to_vec(),
    ];
    let mut out = Vec::new();
    for r in reqs {
        let mut one = LINES[r.line].as_bytes().to_vec();
        one.extend_from_slice(b"Host: t\r\n");
        for &h in &r.headers {
            one.extend_from_slice(HEADERS[h].as_bytes());
        }
        let body = &bodies[r.body];
        match r.length {
            Length::True => {
                one.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                one.extend_from_slice(body);
            }
            Length::Lie(n) => {
                one.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
                one.extend_from_slice(body);
            }
            Length::Chunked(k) => {
                one.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for c in body.chunks(usize::from(k)) {
                    one.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    one.extend_from_slice(c);
                    one.extend_from_slice(b"\r\n");
                }
                one.extend_from_slice(b"0\r\n\r\n");
            }
            Length::Absent => one.extend_from_slice(b"\r\n"),
        }
        if let Some(c) = r.cut {
            one.truncate(one.len().saturating_sub(usize::from(c) % 80));
        }
        one.extend_from_slice(&r.noise);
        out.extend_from_slice(&one);
    }
    out
}

fn server() -> SocketAddr {
    static APP: OnceLock<adshard::api::App> = OnceLock::new();
    APP.get_or_init(|| start_api("")).local_addr()
}

/// Sends `data` in `splits` writes, half-closes, reads to the end.
fn exchange(addr: SocketAddr, data: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut at = 0;
    for &k in splits.iter().chain(std::iter::once(&data.len())) {
        let end = k.clamp(at, data.len());
        // The server may close first (a bad head): later writes may fail.
        if s.write_all(&data[at..end]).is_err() {
            break;
        }
        at = end;
    }
    let _ = s.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    // A reset after an answer is a close, not a failure.
    let _ = s.read_to_end(&mut got);
    got
}

/// Every response in `got` is whole: a status line, headers, and the body
/// its length says (answers are never chunked).
fn whole_responses(mut got: &[u8]) -> Result<usize, String> {
    let mut n = 0;
    while !got.is_empty() {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut h);
        let head = match r.parse(got) {
            Ok(httparse::Status::Complete(k)) => k,
            other => return Err(format!("not a whole response head: {other:?}")),
        };
        let code = r.code.ok_or("no status")?;
        if !(100..600).contains(&code) {
            return Err(format!("status {code}"));
        }
        let len = r
            .headers
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case("content-length"))
            .map(|x| {
                std::str::from_utf8(x.value)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .unwrap_or(0);
        if got.len() < head + len {
            return Err(format!("{code} body cut: {} of {len}", got.len() - head));
        }
        got = &got[head + len..];
        n += 1;
    }
    Ok(n)
}

/// The server still serves: a health check and a bid on a new connection.
fn still_serving(addr: SocketAddr) -> Result<(), String> {
    let mut r = Reader::new(adshard::testkit::wire::connect(addr));
    let ok = adshard::testkit::wire::post_bid(&mut r, &banner());
    if ok.status != 200 {
        return Err(format!("bid after the case: {}", ok.status));
    }
    let h = adshard::testkit::wire::get(addr, "/healthz");
    if h.status != 200 {
        return Err(format!("healthz after the case: {}", h.status));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn hostile_connections_get_whole_answers_and_leave_the_server_serving(
        reqs in prop::collection::vec(req(), 1..4),
        splits in prop::collection::vec(0usize..3000, 0..3),
    ) {
        let addr = server();
        let data = bytes(&reqs);
        let mut splits = splits;
        splits.sort_unstable();
        let got = exchange(addr, &data, &splits);
        if let Err(e) = whole_responses(&got) {
            prop_assert!(false, "{e}: sent {:?}, got {:?}", String::from_utf8_lossy(&data), String::from_utf8_lossy(&got));
        }
        if let Err(e) = still_serving(addr) {
            prop_assert!(false, "{e}: after {:?}", String::from_utf8_lossy(&data));
        }
    }
}
