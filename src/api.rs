//! Routes: maps method and path to a handler. Each shard owns one [`Api`]
//! with its [`ShardState`] and a cached view of the published campaign index.
//! Handlers are synchronous and never touch sockets or the database.
//!
//! | route | methods | answer |
//! |---|---|---|
//! | `/openrtb2/bid` | POST | OpenRTB 2.5/2.6 JSON (or Cap'n Proto) bid response, 204 no bid, 400 naming the field |
//! | `/ad` | GET | publisher ad JSON, or 204 |
//! | `/imp`, `/click` | GET | impression beacon (GIF); click 302 to the landing page |
//! | `/win`, `/bill`, `/loss` | GET, POST | exchange notices, idempotent per auction and impression |
//!
//! `/admin/*` is served on the separate admin listener (see [`crate::admin`]).
//! | `/healthz`, `/readyz`, `/metrics` | GET, HEAD | liveness, readiness, Prometheus text |

use crate::adserve::dedupe::Dedupe;
use crate::adserve::{self, markup, Decision, NoBid, Notice, NoticeKind, Now, ShardState};
use crate::config::Config;
use crate::events::{Event, Kind};
use crate::http::{query, Request, Response};
use crate::index::loader::{self, Command, IndexHandle, Source};
use crate::index::{CreativeFormat, Index};
use crate::metrics::{bump, LocalMetrics};
use crate::openrtb::{self, BidRequest};
use crate::shard::{Server, Service, ShardCtx, Shared, StartError};
use crate::store::{Sink, SpoolStats, Store};
use arc_swap::{ArcSwap, Cache};
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

/// Campaigns compiled into the binary, used when `campaigns.path` is unset.
pub const EMBEDDED_CAMPAIGNS: &str = include_str!("../configs/campaigns.toml");

/// Route indices; their labels are [`Api::ROUTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Route {
    /// `/healthz`
    Healthz,
    /// `/readyz`
    Readyz,
    /// `/metrics`
    Metrics,
    /// `/openrtb2/bid`
    Bid,
    /// `/ad`
    Ad,
    /// `/imp`
    Imp,
    /// `/click`
    Click,
    /// `/win`
    Win,
    /// `/bill`
    Bill,
    /// `/loss`
    Loss,
    /// No route matched.
    NotFound,
}

/// A start-up error naming the config key it is about.
fn invalid(key: &str, message: String) -> StartError {
    StartError::Config(crate::config::ConfigError::Invalid {
        key: key.to_string(),
        message,
    })
}

/// Body of a healthy `/healthz` (11 bytes, the size the nginx baseline serves).
pub const HEALTHZ_BODY: &[u8] = b"{\"ok\":true}";

/// A transparent 1x1 GIF for impression beacons.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// What every shard's [`Api`] shares: the index handle and the notice table.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Published campaign index and its loader.
    pub index: IndexHandle,
    /// Notice de-duplication, shared by all shards.
    pub dedupe: Arc<Dedupe>,
    /// Per-shard CTR model sessions, when scoring is enabled.
    pub models: Option<Arc<crate::scoring::Models>>,
    /// Per-shard spool counters.
    pub spool: Arc<Vec<Arc<SpoolStats>>>,
    /// Database writer counters, when a database is configured.
    pub db: Option<Arc<crate::cql::DbStats>>,
}

/// The running application: shards plus the index loader.
#[derive(Debug)]
pub struct App {
    /// The shards.
    pub server: Server,
    /// Shared dependencies (tests reach the index through it).
    pub deps: Deps,
    loader: std::thread::JoinHandle<()>,
    admin: Option<crate::admin::AdminServer>,
    store: Store,
}

impl App {
    /// Loads campaigns, starts the loader thread and the shards.
    pub fn start(cfg: Config) -> Result<App, StartError> {
        let source = match &cfg.campaigns.path {
            Some(p) => Source::File(p.clone()),
            None => Source::Embedded(EMBEDDED_CAMPAIGNS),
        };
        let poll = std::time::Duration::from_millis(cfg.campaigns.reload_poll_ms);
        let (index, loader) =
            loader::start(source, poll).map_err(|e| invalid("campaigns.path", e.to_string()))?;
        match Self::start_rest(cfg, index.clone()) {
            Ok((server, deps, admin, store)) => Ok(App {
                server,
                deps,
                loader,
                admin,
                store,
            }),
            Err(e) => {
                // The one place a failed start-up stops the index loader.
                let _ = index.tx.send(Command::Stop);
                let _ = loader.join();
                Err(e)
            }
        }
    }

    /// Everything after the index: spool writers, models, admin listener, shards.
    fn start_rest(
        cfg: Config,
        index: IndexHandle,
    ) -> Result<(Server, Deps, Option<crate::admin::AdminServer>, Store), StartError> {
        let shards = cfg.shards(&crate::config::allowed_cores())?.len();
        let ev = &cfg.events;
        let crate::store::Started {
            store,
            sinks,
            spool,
            db,
        } = Store::start(ev, shards).map_err(|e| {
            invalid(
                "events.spool_dir",
                format!("{}: {e}", ev.spool_dir.display()),
            )
        })?;
        let models = if cfg.scoring.enabled {
            let source = match &cfg.scoring.model {
                Some(p) => crate::scoring::ModelSource::File(p.clone()),
                None => crate::scoring::ModelSource::Embedded,
            };
            let poll = std::time::Duration::from_millis(cfg.scoring.reload_poll_ms);
            let lib = crate::scoring::library_path(&cfg.scoring.library);
            Some(
                crate::scoring::start(&lib, source, shards, poll)
                    .map_err(|e| invalid("scoring", e.to_string()))?,
            )
        } else {
            None
        };
        let deps = Deps {
            index,
            dedupe: Arc::new(Dedupe::new(cfg.bidder.dedupe_slots)),
            models,
            spool: Arc::new(spool),
            db,
        };
        let admin = if cfg.admin.listen.is_empty() {
            None
        } else {
            let a = crate::admin::AdminServer::start(&cfg.admin, deps.clone()).map_err(|e| {
                invalid(
                    "admin.listen",
                    format!("cannot listen on {}: {e}", cfg.admin.listen),
                )
            })?;
            Some(a)
        };
        let d = deps.clone();
        // Each shard takes its own sink; only shards hold them, so the writers
        // finish once every shard has stopped.
        let sinks = std::sync::Mutex::new(sinks.into_iter().map(Some).collect::<Vec<_>>());
        let server = Server::start(cfg, move |ctx: &ShardCtx| {
            let sink = sinks
                .lock()
                .ok()
                .and_then(|mut v| v.get_mut(ctx.id).and_then(Option::take));
            Api::new(ctx, &d, sink)
        });
        match server {
            Ok(s) => Ok((s, deps, admin, store)),
            Err(e) => {
                if let Some(a) = admin {
                    a.stop();
                }
                Err(e)
            }
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// The admin listener's address, when one is configured.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// Cross-shard state (metrics registry, readiness).
    pub fn shared(&self) -> &Arc<Shared> {
        self.server.shared()
    }

    /// Waits for the shards (after a shutdown began), then stops the loader.
    pub fn join(self) {
        self.server.join();
        if let Some(a) = self.admin {
            a.stop();
        }
        let _ = self.deps.index.tx.send(Command::Stop);
        let _ = self.loader.join();
        // Shards are gone, and their sinks with them: writers drain and sync.
        self.store.join();
    }

    /// Drains the shards and stops everything.
    pub fn stop(self) {
        self.server.begin_shutdown();
        self.join();
    }
}

/// One shard's request handler. Built on the shard's thread; lives as long
/// as the shard.
pub struct Api {
    shared: Arc<Shared>,
    cfg: Arc<Config>,
    metrics: Rc<LocalMetrics>,
    deps: Deps,
    index: RefCell<Cache<Arc<ArcSwap<Index>>, Arc<Index>>>,
    state: RefCell<ShardState>,
    /// This shard's model session and its version.
    scorer: RefCell<Option<(u64, crate::scoring::Scorer)>>,
    /// This shard's event-loop lag.
    load: Rc<crate::shard::Load>,
    /// Where this shard's events go.
    sink: Option<Sink>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("shard", &self.state.borrow().shard)
            .finish()
    }
}

fn json_error(resp: &mut Response, status: u16, v: serde_json::Value) {
    resp.set(status, "application/json", v.to_string().as_bytes());
}

impl Api {
    /// Builds the shard's handler.
    pub fn new(ctx: &ShardCtx, deps: &Deps, sink: Option<Sink>) -> Self {
        let cfg = ctx.shared.config.clone();
        let state = ShardState::new(ctx.id as u16, ctx.shared.shards as u16, &cfg.bidder);
        Api {
            shared: ctx.shared.clone(),
            metrics: ctx.metrics.clone(),
            index: RefCell::new(Cache::new(deps.index.current.clone())),
            deps: deps.clone(),
            state: RefCell::new(state),
            scorer: RefCell::new(deps.models.as_ref().and_then(|m| m.take(ctx.id, 0))),
            load: ctx.load.clone(),
            sink,
            cfg,
        }
    }

    fn method_allowed(req: &Request<'_, '_>, resp: &mut Response, allowed: &'static str) -> bool {
        if allowed.split(", ").any(|m| m == req.method) {
            return true;
        }
        json_error(
            resp,
            405,
            serde_json::json!({ "error": "method not allowed" }),
        );
        resp.header("Allow", allowed.as_bytes());
        false
    }

    fn emit(&self, ev: Event) {
        let k = match ev.kind {
            Kind::Bid => 0,
            Kind::Win => 1,
            Kind::Bill => 2,
            Kind::Loss => 3,
            Kind::Impression => 4,
            Kind::Click => 5,
        };
        bump(&self.metrics.counters.events[k], 1);
        if let Some(sink) = &self.sink {
            sink.push(ev);
        }
    }

    fn record(&self, d: &mut Decision) {
        bump(&self.metrics.counters.scored, u64::from(d.scored));
        bump(
            &self.metrics.counters.score_failures,
            u64::from(d.score_failures),
        );
        for ev in d.events.drain(..) {
            self.emit(ev);
        }
        for nb in &d.no_bids {
            let k = match nb {
                NoBid::NoCandidate => 0,
                NoBid::Filtered => 1,
                NoBid::Tmax => 2,
                NoBid::Currency => 3,
            };
            bump(&self.metrics.counters.no_bids[k], 1);
        }
    }

    fn bid(&self, req: &Request<'_, '_>, body: &[u8], resp: &mut Response) {
        let capnp = req
            .header("content-type")
            .is_some_and(|v| v.starts_with(b"application/x-capnp"));
        let decoded = if capnp {
            openrtb::capnp_codec::decode_request(body)
        } else {
            openrtb::decode_json(body)
        };
        let br = match decoded {
            Ok(r) => r,
            Err(e) => {
                resp.set(400, "application/json", e.to_json().as_bytes());
                return;
            }
        };
        // The shard lags more than the exchange waits: a bid would come too late.
        let lag_ms = self.load.lag_us.get() / 1000.0;
        if br.tmax.is_some_and(|t| lag_ms >= f64::from(t)) {
            bump(&self.metrics.counters.no_bids[2], br.imp.len() as u64);
            resp.status = 204;
            return;
        }
        let mut cache = self.index.borrow_mut();
        let ix = cache.load();
        let mut scorer = self.scorer.borrow_mut();
        if let Some(m) = &self.deps.models {
            // A reloaded model: swap in the session built for this shard.
            let have = scorer.as_ref().map_or(0, |s| s.0);
            if let Some(next) = m.take(self.state.borrow().shard as usize, have) {
                *scorer = Some(next);
            }
        }
        let model = scorer
            .as_mut()
            .map(|(_, s)| s as &mut dyn crate::scoring::CtrModel);
        let mut d = adserve::decide_with(
            ix,
            &mut self.state.borrow_mut(),
            &br,
            &self.cfg.bidder,
            Now::wall(),
            model,
        );
        self.record(&mut d);
        match d.response {
            Some(r) => {
                resp.status = 200;
                if capnp {
                    resp.content_type = "application/x-capnp";
                    openrtb::capnp_codec::encode_response(&r, &mut resp.body);
                } else {
                    resp.content_type = "application/json";
                    openrtb::encode_json(&r, &mut resp.body);
                }
            }
            None => resp.status = 204,
        }
    }

    fn ad(&self, req: &Request<'_, '_>, resp: &mut Response) {
        let mut st = self.state.borrow_mut();
        let id = format!("ad-{}", st.next_id());
        let br = match ad_request(req, id) {
            Ok(r) => r,
            Err((param, reason)) => {
                json_error(
                    resp,
                    400,
                    serde_json::json!({ "error": "invalid ad request", "param": param, "reason": reason }),
                );
                return;
            }
        };
        let mut cache = self.index.borrow_mut();
        let ix = cache.load();
        let mut d = adserve::decide(ix, &mut st, &br, &self.cfg.bidder, Now::wall());
        self.record(&mut d);
        let Some(r) = d.response else {
            resp.status = 204;
            return;
        };
        let b = &r.seatbid[0].bid[0];
        let Some(c) = b.cid.parse().ok().and_then(|id| ix.campaign(id)) else {
            resp.status = 204;
            return;
        };
        let Some(cr) = c.creatives.iter().find(|cr| cr.id == b.crid) else {
            resp.status = 204;
            return;
        };
        let base = self.cfg.bidder.public_url.trim_end_matches('/');
        let ids = markup::Ids {
            auction: &r.id,
            imp: &b.impid,
            campaign: c.id,
            creative: &cr.id,
            test: br.test == 1,
        };
        let imp_extra = format!("src=ad&p={}", b.price);
        let body = serde_json::json!({
            "id": r.id,
            "slot": b.impid,
            "campaign": c.id,
            "creative": {
                "id": cr.id,
                "format": match cr.format { CreativeFormat::Banner => "banner", CreativeFormat::Video => "video", CreativeFormat::Native => "native" },
                "w": b.w,
                "h": b.h,
            },
            "price_cpm": b.price,
            "markup": markup::adm_with(base, cr, &ids, b.w, b.h, &imp_extra),
            "impression_url": markup::notice_url(base, "imp", &ids, &imp_extra),
            "click_url": markup::notice_url(base, "click", &ids, ""),
            "adomain": b.adomain,
        });
        resp.set(200, "application/json", body.to_string().as_bytes());
        resp.header("Cache-Control", b"no-store");
    }

    fn notice(&self, kind: NoticeKind, req: &Request<'_, '_>, body: &[u8], resp: &mut Response) {
        // POSTed notices may carry the parameters as a form body.
        let form = std::str::from_utf8(body).ok().filter(|b| !b.is_empty());
        let q = match (req.query, form) {
            (Some(q), Some(f)) => Cow::Owned(format!("{q}&{f}")),
            (Some(q), None) => Cow::Borrowed(q),
            (None, Some(f)) => Cow::Borrowed(f),
            (None, None) => Cow::Borrowed(""),
        };
        let mut cache = self.index.borrow_mut();
        let ix = cache.load();
        let result = Notice::parse(kind, Some(&q)).and_then(|n| {
            adserve::notice(
                ix,
                &mut self.state.borrow_mut(),
                &self.deps.dedupe,
                kind,
                &n,
                Now::wall(),
            )
        });
        let mut out = match result {
            Ok(o) => o,
            Err(e) => {
                let body = serde_json::json!({ "error": "invalid notice", "param": e.param, "reason": e.reason });
                json_error(resp, e.status, body);
                return;
            }
        };
        if let Some(ev) = out.event.take() {
            self.emit(ev);
        }
        if out.duplicate {
            bump(&self.metrics.counters.duplicate_notices, 1);
        }
        match kind {
            NoticeKind::Click => {
                resp.status = 302;
                resp.header(
                    "Location",
                    out.redirect.as_deref().unwrap_or("/").as_bytes(),
                );
                resp.header("Cache-Control", b"no-store");
            }
            NoticeKind::Imp => {
                resp.set(200, "image/gif", PIXEL);
                resp.header("Cache-Control", b"no-store");
            }
            _ => json_error(
                resp,
                200,
                serde_json::json!({ "ok": true, "duplicate": out.duplicate }),
            ),
        }
    }

    fn metrics_text(&self) -> String {
        // This shard's quantiles are published fresh; others' are at most
        // one publish interval old.
        self.metrics.publish();
        let mut text = String::with_capacity(16 * 1024);
        self.shared.registry.render(&mut text);
        let st = self.deps.index.status.load();
        let gauges: [(&str, &str, &str, u64); 6] = [
            (
                "adshard_index_version",
                "gauge",
                "Version of the campaign index in service.",
                st.version,
            ),
            (
                "adshard_index_campaigns",
                "gauge",
                "Campaigns in the index in service.",
                st.campaigns as u64,
            ),
            (
                "adshard_index_build_milliseconds",
                "gauge",
                "Time the last successful index build took.",
                st.build_ms,
            ),
            (
                "adshard_index_reloads_total",
                "counter",
                "Successful index reloads.",
                st.reloads,
            ),
            (
                "adshard_index_reload_errors_total",
                "counter",
                "Refused index reloads (old index kept).",
                st.errors,
            ),
            (
                "adshard_dedupe_overflows_total",
                "counter",
                "Notice de-duplication inserts that found no free slot.",
                self.deps.dedupe.overflows(),
            ),
        ];
        for (name, kind, help, v) in gauges {
            crate::metrics::family(&mut text, name, kind, help);
            let _ = writeln!(text, "{name} {v}");
        }
        for (name, help, get) in [
            (
                "adshard_events_spooled_total",
                "Events appended to the shard's spool file.",
                0,
            ),
            (
                "adshard_events_dropped_total",
                "Events dropped (queue full or write failed); never silent.",
                1,
            ),
            (
                "adshard_spool_errors_total",
                "Failed spool segment opens, flushes or syncs.",
                2,
            ),
        ] {
            crate::metrics::family(&mut text, name, "counter", help);
            for (i, st) in self.deps.spool.iter().enumerate() {
                let v = [&st.spooled, &st.dropped, &st.errors][get]
                    .load(std::sync::atomic::Ordering::Relaxed);
                let _ = writeln!(text, "{name}{{shard=\"{i}\"}} {v}");
            }
        }
        if let Some(db) = &self.deps.db {
            use std::sync::atomic::Ordering::Relaxed;
            let name = "adshard_events_spilled_total";
            crate::metrics::family(
                &mut text,
                name,
                "counter",
                "Events sent to the spool instead of the database, by reason.",
            );
            for (i, st) in self.deps.spool.iter().enumerate() {
                let v = st.spilled_queue_full.load(Relaxed);
                let _ = writeln!(text, "{name}{{shard=\"{i}\",reason=\"queue_full\"}} {v}");
            }
            let _ = writeln!(
                text,
                "{name}{{reason=\"db_down\"}} {}",
                db.spilled_down.load(Relaxed)
            );
            let _ = writeln!(
                text,
                "{name}{{reason=\"write_failed\"}} {}",
                db.spilled_failed.load(Relaxed)
            );
            for (name, kind, help, v) in [
                (
                    "adshard_db_up",
                    "gauge",
                    "1 while the event database takes writes.",
                    db.up.load(Relaxed) as i64,
                ),
                (
                    "adshard_db_in_flight",
                    "gauge",
                    "Event batches being written now.",
                    db.in_flight.load(Relaxed),
                ),
                (
                    "adshard_db_events_stored_total",
                    "counter",
                    "Events stored in the database (first writes and replays).",
                    db.stored.load(Relaxed) as i64,
                ),
                (
                    "adshard_db_write_errors_total",
                    "counter",
                    "Failed batch attempts.",
                    db.write_errors.load(Relaxed) as i64,
                ),
                (
                    "adshard_db_retries_total",
                    "counter",
                    "Retried batch attempts.",
                    db.retries.load(Relaxed) as i64,
                ),
                (
                    "adshard_db_events_lost_total",
                    "counter",
                    "Events the database writer could neither store nor spool.",
                    db.dropped.load(Relaxed) as i64,
                ),
                (
                    "adshard_events_replayed_total",
                    "counter",
                    "Events replayed from spool segments into the database.",
                    db.replayed.load(Relaxed) as i64,
                ),
                (
                    "adshard_replay_segments_total",
                    "counter",
                    "Spool segments replayed.",
                    db.replayed_segments.load(Relaxed) as i64,
                ),
                (
                    "adshard_replay_errors_total",
                    "counter",
                    "Spool segments that could not be replayed (kept as .bad) or removed.",
                    db.replay_errors.load(Relaxed) as i64,
                ),
            ] {
                crate::metrics::family(&mut text, name, kind, help);
                let _ = writeln!(text, "{name} {v}");
            }
        }
        if let Some(m) = &self.deps.models {
            let ms = m
                .status
                .lock()
                .map(|g| g.clone())
                .unwrap_or_else(|p| p.into_inner().clone());
            for (name, kind, help, v) in [
                (
                    "adshard_model_version",
                    "gauge",
                    "Version of the CTR model in service.",
                    ms.version,
                ),
                (
                    "adshard_model_reloads_total",
                    "counter",
                    "Successful CTR model reloads.",
                    ms.reloads,
                ),
                (
                    "adshard_model_reload_errors_total",
                    "counter",
                    "Refused CTR models (old model kept).",
                    ms.errors,
                ),
            ] {
                crate::metrics::family(&mut text, name, kind, help);
                let _ = writeln!(text, "{name} {v}");
            }
        }
        if let Some(e) = &st.last_error {
            let e = e
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', " ");
            let name = "adshard_index_last_error";
            crate::metrics::family(
                &mut text,
                name,
                "gauge",
                "Last refused reload (value is 1).",
            );
            let _ = writeln!(text, "{name}{{error=\"{e}\"}} 1");
        }
        text
    }
}

/// Builds a bid request from a publisher's `GET /ad` query and headers.
/// Returns the offending parameter on error.
fn ad_request(
    req: &Request<'_, '_>,
    id: String,
) -> Result<BidRequest<'static>, (&'static str, String)> {
    use crate::openrtb::{
        App as OApp, Banner, Data, Device, Geo, Imp, Native, Segment, Site, User, Video,
    };
    let q = req.query;
    let get = |k: &str| {
        query::get(q, k)
            .map(|v| v.into_owned())
            .filter(|v| !v.is_empty())
    };
    let num = |k: &'static str| -> Result<Option<u32>, (&'static str, String)> {
        get(k)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| (k, format!("not a number: {v:?}")))
            })
            .transpose()
    };
    let header = |h: &str| {
        req.header(h)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let mut imp = Imp {
        id: Cow::Owned(get("slot").unwrap_or_else(|| "1".into())),
        ..Default::default()
    };
    imp.tagid = imp.id.clone();
    match get("format").as_deref() {
        None | Some("banner") => {
            let (w, h) = (num("w")?, num("h")?);
            if w.is_none() || h.is_none() {
                return Err((
                    "w",
                    "a banner needs w and h (or format=video|native)".into(),
                ));
            }
            imp.banner = Some(Banner {
                w,
                h,
                ..Default::default()
            });
        }
        Some("video") => {
            imp.video = Some(Video {
                w: num("w")?,
                h: num("h")?,
                ..Default::default()
            })
        }
        Some("native") => imp.native = Some(Native::default()),
        Some(other) => {
            return Err((
                "format",
                format!("unknown format {other:?}; use banner, video or native"),
            ))
        }
    }
    if let Some(f) = get("floor") {
        imp.bidfloor = f
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or(("floor", format!("not a price: {f:?}")))?;
    }
    let cats: Vec<Cow<'static, str>> = get("cat")
        .map(|c| c.split(',').map(|s| Cow::Owned(s.to_string())).collect())
        .unwrap_or_default();
    let (site, app) = match (get("app"), get("site")) {
        (Some(bundle), _) => (
            None,
            Some(OApp {
                bundle: Cow::Owned(bundle),
                cat: cats,
                ..Default::default()
            }),
        ),
        (None, site) => {
            let domain = site.or_else(|| {
                header("referer").and_then(|r| {
                    r.split("://")
                        .nth(1)
                        .and_then(|h| h.split(['/', ':']).next())
                        .map(str::to_string)
                })
            });
            (
                Some(Site {
                    domain: Cow::Owned(domain.unwrap_or_default()),
                    cat: cats,
                    ..Default::default()
                }),
                None,
            )
        }
    };
    let ua = header("user-agent").unwrap_or_default();
    let sniff_os = if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Android") {
        "Android"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") {
        "OS X"
    } else {
        ""
    };
    let sniff_type = if ua.contains("iPad") || ua.contains("Tablet") {
        5
    } else if ua.contains("Mobile") || ua.contains("iPhone") {
        4
    } else {
        2
    };
    let devicetype = match get("devicetype") {
        Some(v) => Some(
            v.parse::<u8>()
                .map_err(|_| ("devicetype", format!("not a device type: {v:?}")))?,
        ),
        None if !ua.is_empty() => Some(sniff_type),
        None => None,
    };
    let country = get("country")
        .or_else(|| header("x-geo-country"))
        .unwrap_or_default();
    let device = Device {
        ua: Cow::Owned(ua.clone()),
        ip: Cow::Owned(
            header("x-forwarded-for")
                .and_then(|v| v.split(',').next().map(|s| s.trim().to_string()))
                .unwrap_or_default(),
        ),
        os: Cow::Owned(get("os").unwrap_or_else(|| sniff_os.to_string())),
        devicetype,
        geo: Some(Geo {
            country: Cow::Owned(country),
            region: Cow::Owned(get("region").unwrap_or_default()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let uid = get("uid").or_else(|| {
        header("cookie").and_then(|c| {
            c.split(';')
                .find_map(|kv| kv.trim().strip_prefix("uid=").map(str::to_string))
        })
    });
    let segs: Vec<Segment<'static>> = get("segs")
        .map(|s| {
            s.split(',')
                .map(|x| Segment {
                    id: Cow::Owned(x.to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    let user = Some(User {
        id: Cow::Owned(uid.unwrap_or_default()),
        data: vec![Data {
            segment: segs,
            ..Default::default()
        }],
        ..Default::default()
    });
    Ok(BidRequest {
        id: Cow::Owned(id),
        imp: vec![imp],
        site,
        app,
        device: Some(device),
        user,
        test: u8::from(get("test").as_deref() == Some("1")),
        at: 2,
        ..Default::default()
    })
}

impl Service for Api {
    const ROUTES: &'static [&'static str] = &[
        "healthz",
        "readyz",
        "metrics",
        "bid",
        "ad",
        "imp",
        "click",
        "win",
        "bill",
        "loss",
        "not_found",
    ];

    /// Under overload: bids get 204 (no bid), publisher ads 503 with
    /// Retry-After. Notices carry money and are always served, as are health,
    /// readiness and metrics.
    fn shed(&self, req: &Request<'_, '_>, resp: &mut Response) -> Option<usize> {
        match req.path {
            "/openrtb2/bid" => {
                resp.status = 204;
                Some(Route::Bid as usize)
            }
            "/ad" => {
                json_error(
                    resp,
                    503,
                    serde_json::json!({ "error": "overloaded, retry" }),
                );
                resp.header("Retry-After", b"1");
                Some(Route::Ad as usize)
            }
            _ => None,
        }
    }

    fn handle(&self, req: &Request<'_, '_>, body: &[u8], resp: &mut Response) -> usize {
        let route = match req.path {
            "/openrtb2/bid" => Route::Bid,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/ad" => Route::Ad,
            "/imp" => Route::Imp,
            "/click" => Route::Click,
            "/win" => Route::Win,
            "/bill" => Route::Bill,
            "/loss" => Route::Loss,
            _ => Route::NotFound,
        };
        match route {
            Route::Bid => {
                if Self::method_allowed(req, resp, "POST") {
                    self.bid(req, body, resp);
                }
            }
            Route::Healthz => {
                if Self::method_allowed(req, resp, "GET, HEAD") {
                    resp.set(200, "application/json", HEALTHZ_BODY);
                }
            }
            Route::Readyz => {
                if Self::method_allowed(req, resp, "GET, HEAD") {
                    if self.shared.is_ready() {
                        resp.set(200, "application/json", b"{\"ready\":true}");
                    } else {
                        resp.set(503, "application/json", b"{\"ready\":false}");
                    }
                }
            }
            Route::Metrics => {
                if Self::method_allowed(req, resp, "GET, HEAD") {
                    let text = self.metrics_text();
                    resp.set(
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        text.as_bytes(),
                    );
                }
            }
            Route::Ad => {
                if Self::method_allowed(req, resp, "GET, HEAD") {
                    self.ad(req, resp);
                }
            }
            Route::Imp | Route::Click => {
                if Self::method_allowed(req, resp, "GET, HEAD") {
                    let kind = if route == Route::Imp {
                        NoticeKind::Imp
                    } else {
                        NoticeKind::Click
                    };
                    self.notice(kind, req, body, resp);
                }
            }
            Route::Win | Route::Bill | Route::Loss => {
                if Self::method_allowed(req, resp, "GET, POST") {
                    let kind = match route {
                        Route::Win => NoticeKind::Win,
                        Route::Bill => NoticeKind::Bill,
                        _ => NoticeKind::Loss,
                    };
                    self.notice(kind, req, body, resp);
                }
            }
            Route::NotFound => {
                json_error(
                    resp,
                    404,
                    serde_json::json!({ "error": "no such route", "path": req.path }),
                );
            }
        }
        route as usize
    }
}
