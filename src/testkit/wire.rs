//! Wire-test helpers: start a server on 127.0.0.1:0 with a test config,
//! speak raw bytes to it, read its responses.

use crate::config::Config;
use crate::http::{Request, Response};
use crate::shard::{Server, Service, ShardCtx};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Base TOML for tests: one unpinned shard, small limits, short timeouts.
pub const TEST_TOML: &str = r#"
[server]
listen = "127.0.0.1:0"
cores = "0"
pin = false
spin_before_park_us = 0
[limits]
max_header_bytes = 1024
max_headers = 16
max_body_bytes = 4096
[timeouts]
header_read_ms = 400
body_read_ms = 400
idle_keepalive_ms = 600
write_ms = 1000
shutdown_grace_ms = 1500
[metrics]
publish_interval_ms = 50
[scoring]
enabled = false
[overload]
enabled = false
# The IAB examples most tests send carry no device, and tests send
# thousands of requests from one IP: the IVT checks that would refuse them
# are turned on by the tests of IVT itself.
[ivt]
require_device = false
# Tests click right after the impression; tests/quality.rs sets a delay.
min_click_delay_ms = 0
max_per_ip = 0
max_per_device = 0
"#;

/// A fresh spool directory per server, so servers in one test process never
/// append to the same file.
pub fn spool_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    super::scratch::dir(&format!("spool-{n}"))
}

pub fn config(extra: &str) -> Config {
    // Later keys win: append overrides as a separate document merged by hand.
    let mut base: toml::Table = TEST_TOML.parse().expect("test TOML parses");
    let mut events = toml::Table::new();
    events.insert(
        "spool_dir".into(),
        toml::Value::String(spool_dir().to_string_lossy().into_owned()),
    );
    base.insert("events".into(), toml::Value::Table(events));
    let over: toml::Table = extra.parse().expect("override TOML parses");
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => b.extend(o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
    Config::from_toml(
        &toml::to_string(&base).expect("table serialises"),
        "test",
        Vec::new(),
    )
    .expect("valid test config")
}

/// Echoes the decoded body back, so tests see exactly what the server decoded.
#[derive(Debug)]
pub struct Echo;

impl Service for Echo {
    const ROUTES: &'static [&'static str] = &["echo"];
    fn handle(&self, req: &Request<'_, '_>, body: &[u8], resp: &mut Response) -> usize {
        resp.set(200, "application/octet-stream", body);
        resp.header("X-Method", req.method.as_bytes());
        0
    }
}

pub fn start_echo(extra: &str) -> Server {
    Server::start(config(extra), |_: &ShardCtx| Echo).expect("echo server starts")
}

pub fn start_api(extra: &str) -> crate::api::App {
    crate::api::App::start(config(extra)).expect("api server starts")
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// The reason phrase of the status line.
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads responses from a stream, keeping leftover bytes between calls.
#[derive(Debug)]
pub struct Reader {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Self {
        Reader {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one whole response; panics on EOF or timeout first.
    pub fn response(&mut self) -> Resp {
        self.try_response().expect("a response before EOF")
    }

    pub fn try_response(&mut self) -> Option<Resp> {
        loop {
            let mut h = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut h);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let status = r.code.unwrap_or(0);
                let reason = r.reason.unwrap_or_default().to_string();
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().expect("numeric content-length"))
                    .unwrap_or(0);
                if self.buf.len() >= n + len {
                    let body = self.buf[n..n + len].to_vec();
                    self.buf.drain(..n + len);
                    return Some(Resp {
                        status,
                        reason,
                        headers,
                        body,
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    /// True if the server closes the connection (EOF) with no more bytes.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        self.buf.is_empty() && matches!(self.stream.read(&mut b), Ok(0))
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    let mut r = Reader::new(connect(addr));
    r.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    r.response()
}

/// GETs `path` with `Authorization: Bearer <token>` (the admin listener).
pub fn get_auth(addr: SocketAddr, path: &str, token: &str) -> Resp {
    let mut r = Reader::new(connect(addr));
    r.send(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    );
    r.response()
}

/// POSTs `body` to `path` with a content type and extra header lines
/// (`extra` ends each line with CRLF), and reads the response.
pub fn post(r: &mut Reader, path: &str, ctype: &str, extra: &str, body: &[u8]) -> Resp {
    r.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    r.send(body);
    r.response()
}

/// POSTs an OpenRTB JSON bid request to `/openrtb2/bid`.
pub fn post_bid(r: &mut Reader, body: &[u8]) -> Resp {
    post(r, "/openrtb2/bid", "application/json", "", body)
}

/// The path and query of an absolute URL (a notice URL from a bid).
pub fn path(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .unwrap_or_else(|| panic!("not an absolute URL with a path: {url}"))
}
