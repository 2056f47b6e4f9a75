//! The admin listener: a separate address for `/admin/*` (campaign uploads,
//! loader and model status), bearer token required. Admin traffic is rare
//! and may be large (a 100k-campaign upload), so it runs on its own thread
//! with blocking sockets, one request at a time, never on a shard. It speaks
//! HTTP/1.1 through the same parser and writer as the shards.
//!
//! | route | method | answer |
//! |---|---|---|
//! | `/admin/campaigns` | POST | replace the campaign set (TOML, or JSON with `Content-Type: application/json`); 202, built on the loader thread; `?force=true` past the shrink guard (`campaigns.max_shrink`) |
//! | `/admin/index` | GET | campaign loader status |
//! | `/admin/model` | GET | CTR model loader status (404 when scoring is off) |
//! | `/admin/report` | GET | per campaign (or creative), per hour or day: bids, wins, impressions, clicks, invalid clicks, spend, win rate, CTR, average clearing price, IVT refusals; JSON or CSV (see `api::report`) |
//! | `/admin/spend` | GET | spend per campaign today (UTC) and lifetime, summed over shards, and what bids awaiting a notice hold (`held_micros`); with `[events.db]` also global spend (every node) and this node's slice; `?campaign=ID` for one |

use super::json_error as json;
use crate::adserve::fleet::FleetStatus;
use crate::adserve::spend::SpendBoard;
use crate::config::AdminConfig;
use crate::http::{
    self, write::HttpDate, HttpError, Progress, ReaderLimits, Request, RequestReader, Response,
    EMPTY_HEADER,
};
use crate::index::loader::{Command, IndexHandle};
use crate::scoring::Models;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MAX_HEAD: usize = 16 * 1024;

/// Admin connections served at once.
const MAX_CONNS: usize = 16;

/// The longest one admin request may take to arrive, head and body.
const DEADLINE: Duration = Duration::from_secs(10);

/// What the admin routes reach: the campaign loader and the model loader.
#[derive(Debug, Clone)]
pub struct AdminHandles {
    /// The published index and its loader.
    pub index: IndexHandle,
    /// The CTR model loader, when scoring is on.
    pub models: Option<Arc<Models>>,
    /// Every shard's spend per campaign.
    pub spend: Arc<SpendBoard>,
    /// The fleet's view of global spend, when a database is configured.
    pub fleet: Option<Arc<FleetStatus>>,
    /// Every shard's hourly report counters.
    pub report: Arc<crate::quality::report::Board>,
    /// The database's report rollups, when a database is configured.
    pub history: Option<Arc<super::report::History>>,
}

/// The running admin listener. Stopped by [`AdminServer::stop`].
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl AdminServer {
    /// Binds `cfg.listen` and serves on a thread of its own.
    pub fn start(cfg: &AdminConfig, deps: AdminHandles) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(&cfg.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (token, max_body, flag) = (cfg.token.clone(), cfg.max_body_bytes, stop.clone());
        let token: Arc<str> = token.into();
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut s, _)) => {
                            // A thread per connection, each with its own
                            // deadline: a slow or hostile client never holds
                            // up another. Past MAX_CONNS at once: 503.
                            if busy.load(Ordering::Relaxed) >= MAX_CONNS {
                                let mut resp = Response::default();
                                json(
                                    &mut resp,
                                    503,
                                    serde_json::json!({ "error": "admin listener busy" }),
                                );
                                let _ = s.set_nonblocking(false);
                                let _ = respond(&mut s, &resp);
                                continue;
                            }
                            busy.fetch_add(1, Ordering::Relaxed);
                            let (token, deps, done) = (token.clone(), deps.clone(), busy.clone());
                            let spawned = std::thread::Builder::new()
                                .name("admin-conn".into())
                                .spawn(move || {
                                    if let Err(e) = serve(s, &token, max_body, &deps) {
                                        tracing::debug!(error = %e, "admin connection ended");
                                    }
                                    done.fetch_sub(1, Ordering::Relaxed);
                                });
                            if spawned.is_err() {
                                busy.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "admin accept failed");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        tracing::info!(%addr, "admin listener");
        Ok(AdminServer { addr, stop, thread })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the thread (a request in progress finishes).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn respond(s: &mut TcpStream, resp: &Response) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    resp.write_to(&mut out, &HttpDate::default(), false, false);
    s.write_all(&out)
}

/// One request per connection (admin clients are scripts and operators),
/// within [`DEADLINE`]; the token is checked as soon as the head is in.
fn serve(
    mut s: TcpStream,
    token: &str,
    max_body: usize,
    deps: &AdminHandles,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(DEADLINE))?;
    let until = std::time::Instant::now() + DEADLINE;
    let mut head_checked = false;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut resp = Response::default();
    let mut reader = RequestReader::new(ReaderLimits {
        max_header_bytes: MAX_HEAD,
        max_headers: 64,
        max_body_bytes: max_body,
    });
    loop {
        let mut h = [EMPTY_HEADER; 64];
        match reader.next(&buf, &mut h) {
            Ok(Progress::Ready(ready)) => {
                // The token before anything is done with the body (no
                // gunzip for a stranger).
                if !authorized(&ready.req, token) {
                    unauthorized(&mut resp);
                    return respond(&mut s, &resp);
                }
                let mut inflated = Vec::new();
                let body = match http::content(
                    &ready.framing,
                    reader.body(&ready),
                    &mut inflated,
                    max_body,
                ) {
                    Ok(b) => b,
                    Err(e) => return refuse(&mut s, &mut resp, e),
                };
                handle(&ready.req, body, deps, &mut resp);
                return respond(&mut s, &resp);
            }
            Ok(Progress::NeedBody { send_continue }) => {
                // The head is in: the token is checked before a byte of the
                // body is read.
                if !head_checked {
                    head_checked = true;
                    let mut h = [EMPTY_HEADER; 64];
                    let mut head = Request::new(&mut h);
                    if head.parse(&buf).is_ok() && !authorized(&head, token) {
                        unauthorized(&mut resp);
                        return respond(&mut s, &resp);
                    }
                }
                if send_continue {
                    s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                }
            }
            Ok(Progress::NeedHead) => {}
            Err(e) => return refuse(&mut s, &mut resp, e),
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return refuse(&mut s, &mut resp, HttpError::BodyTimeout);
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return refuse(&mut s, &mut resp, HttpError::BodyTimeout);
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn refuse(s: &mut TcpStream, resp: &mut Response, e: HttpError) -> std::io::Result<()> {
    json(
        resp,
        e.status(),
        serde_json::json!({ "error": e.to_string() }),
    );
    respond(s, resp)
}

fn unauthorized(resp: &mut Response) {
    json(
        resp,
        401,
        serde_json::json!({ "error": "missing or wrong bearer token" }),
    );
    resp.header("WWW-Authenticate", b"Bearer");
}

/// Constant-time check of `Authorization: Bearer <token>`.
fn authorized(req: &Request<'_, '_>, token: &str) -> bool {
    let given = req
        .header("authorization")
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .unwrap_or(b"");
    let token = token.as_bytes();
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Answers an authorised request (`serve` checks the token first).
fn handle(req: &Request<'_, '_>, body: &[u8], deps: &AdminHandles, resp: &mut Response) {
    let method = |allowed: &'static str, resp: &mut Response| {
        let ok = req.method == allowed || (allowed == "GET" && req.method == "HEAD");
        if !ok {
            json(
                resp,
                405,
                serde_json::json!({ "error": "method not allowed" }),
            );
            resp.header("Allow", allowed.as_bytes());
        }
        ok
    };
    match req.path {
        "/admin/campaigns" => {
            if !method("POST", resp) {
                return;
            }
            let Ok(text) = std::str::from_utf8(body) else {
                json(
                    resp,
                    400,
                    serde_json::json!({ "error": "campaigns must be UTF-8 TOML or JSON" }),
                );
                return;
            };
            let is_json = req
                .header("content-type")
                .is_some_and(|v| v.starts_with(b"application/json"));
            let origin = if is_json {
                "admin upload.json"
            } else {
                "admin upload"
            }
            .to_string();
            let force = match crate::http::query::get(req.query, "force").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => {
                    json(
                        resp,
                        400,
                        serde_json::json!({ "error": "force: true or false" }),
                    );
                    return;
                }
            };
            let version = deps.index.current.load().version;
            if deps
                .index
                .tx
                .send(Command::Replace {
                    text: text.to_string(),
                    origin,
                    force,
                })
                .is_err()
            {
                json(
                    resp,
                    503,
                    serde_json::json!({ "error": "index loader is not running" }),
                );
                return;
            }
            json(
                resp,
                202,
                serde_json::json!({ "accepted": true, "current_version": version, "status": "/admin/index" }),
            );
        }
        "/admin/index" => {
            if method("GET", resp) {
                let st = deps.index.status.load();
                json(resp, 200, serde_json::to_value(&**st).unwrap_or_default());
            }
        }
        "/admin/model" => {
            if !method("GET", resp) {
                return;
            }
            match &deps.models {
                Some(m) => {
                    let st = m
                        .status
                        .lock()
                        .map(|g| g.clone())
                        .unwrap_or_else(|p| p.into_inner().clone());
                    json(resp, 200, serde_json::to_value(&st).unwrap_or_default());
                }
                None => json(
                    resp,
                    404,
                    serde_json::json!({ "error": "scoring is disabled" }),
                ),
            }
        }
        "/admin/spend" => {
            if method("GET", resp) {
                spend(req, &deps.spend, deps.fleet.as_deref(), resp);
            }
        }
        "/admin/report" => {
            if method("GET", resp) {
                super::report::report(req, &deps.report, deps.history.as_deref(), resp);
            }
        }
        _ => json(
            resp,
            404,
            serde_json::json!({ "error": "no such route", "path": req.path }),
        ),
    }
}

/// `/admin/spend[?campaign=ID]`: micro-USD and USD, today and lifetime.
/// With a fleet: also global spend (all nodes, from the database) and this
/// node's slice (what it may still spend today).
fn spend(
    req: &Request<'_, '_>,
    board: &SpendBoard,
    fleet: Option<&FleetStatus>,
    resp: &mut Response,
) {
    let only = match crate::http::query::get(req.query, "campaign") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => {
                json(
                    resp,
                    400,
                    serde_json::json!({ "error": "campaign: not a campaign id" }),
                );
                return;
            }
        },
    };
    let now = crate::adserve::Now::wall();
    let view = fleet.map(|f| f.view.load_full());
    let rows: Vec<_> = board
        .totals(now.secs / 86_400)
        .into_iter()
        .filter(|c| only.is_none_or(|id| c.campaign == id))
        .map(|c| {
            let mut row = serde_json::json!({
                "campaign": c.campaign,
                "today_micros": c.today_micros,
                "lifetime_micros": c.lifetime_micros,
                "today_usd": c.today_micros as f64 / 1e6,
                "lifetime_usd": c.lifetime_micros as f64 / 1e6,
                "held_micros": c.held_micros,
            });
            if let Some(v) = &view {
                let g = v.get(&c.campaign).copied().unwrap_or_default();
                row["global_today_micros"] = g.global_today_micros.into();
                row["global_lifetime_micros"] = g.global_lifetime_micros.into();
                row["node_slice_micros"] = g.node_slice_micros.into();
            }
            row
        })
        .collect();
    if only.is_some() && rows.is_empty() {
        json(
            resp,
            404,
            serde_json::json!({ "error": "campaign: not in the index" }),
        );
        return;
    }
    json(resp, 200, serde_json::json!({ "campaigns": rows }));
}
