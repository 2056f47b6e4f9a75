//! The application's HTTP surface. Each shard owns one [`Api`] with its
//! [`ShardState`](crate::adserve::ShardState) and a cached view of the
//! published campaign index; handlers are synchronous and never touch
//! sockets or the database.
//!
//! [`ROUTES`] is the one route table: path, metrics label, methods, and
//! whether overload may shed it. One file per route family answers:
//!
//! | file | route | methods | answer |
//! |---|---|---|---|
//! | [`bid`] | `/openrtb2/bid` | POST | OpenRTB 2.5/2.6 JSON (or Cap'n Proto) bid response, 204 no bid, 400 naming the field |
//! | [`ad`] | `/ad` | GET, HEAD | publisher ad JSON, or 204 |
//! | [`notices`] | `/imp`, `/click` | GET, HEAD | impression beacon (GIF); click 302 to the landing page |
//! | [`notices`] | `/win`, `/bill`, `/loss` | GET, POST | exchange notices, idempotent per auction and impression |
//! | [`health`] | `/healthz`, `/readyz` | GET, HEAD | liveness, readiness |
//! | [`metrics_page`] | `/metrics` | GET, HEAD | Prometheus text |
//!
//! Under overload, sheddable routes are answered cheaply: bids get 204 (no
//! bid) and `/ad` gets 503 with `Retry-After`. Notices carry money and are
//! never shed, nor are health, readiness and metrics.
//!
//! `/admin/*` is served on the separate admin listener ([`admin`]);
//! [`app`] assembles the whole application.

pub mod ad;
pub mod admin;
pub mod app;
pub mod bid;
pub mod health;
pub mod metrics_page;
pub mod notices;
pub mod preflight;
pub mod report;

pub use app::{App, Deps, EMBEDDED_CAMPAIGNS};

use crate::adserve::{Decision, ShardState};
use crate::config::Config;
use crate::events::{Event, Sink};
use crate::http::{Request, Response};
use crate::index::Index;
use crate::metrics::{bump, LocalMetrics};
use crate::shard::{Load, Service, ShardCtx, Shared};
use arc_swap::{ArcSwap, Cache};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// A route: where it is, what it is called in metrics, which methods it
/// takes, and whether overload may shed it.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// Request path.
    pub path: &'static str,
    /// Metrics label (`route="..."`).
    pub label: &'static str,
    /// Allowed methods, as the `Allow` header lists them.
    pub methods: &'static str,
    /// Answered cheaply instead of served while the shard is overloaded.
    pub sheddable: bool,
}

/// The routes, indexed by [`Route`].
pub const ROUTES: [RouteSpec; 11] = [
    RouteSpec {
        path: "/healthz",
        label: "healthz",
        methods: "GET, HEAD",
        sheddable: false,
    },
    RouteSpec {
        path: "/readyz",
        label: "readyz",
        methods: "GET, HEAD",
        sheddable: false,
    },
    RouteSpec {
        path: "/metrics",
        label: "metrics",
        methods: "GET, HEAD",
        sheddable: false,
    },
    RouteSpec {
        path: "/openrtb2/bid",
        label: "bid",
        methods: "POST",
        sheddable: true,
    },
    RouteSpec {
        path: "/ad",
        label: "ad",
        methods: "GET, HEAD",
        sheddable: true,
    },
    RouteSpec {
        path: "/imp",
        label: "imp",
        methods: "GET, HEAD",
        sheddable: false,
    },
    RouteSpec {
        path: "/click",
        label: "click",
        methods: "GET, HEAD",
        sheddable: false,
    },
    RouteSpec {
        path: "/win",
        label: "win",
        methods: "GET, POST",
        sheddable: false,
    },
    RouteSpec {
        path: "/bill",
        label: "bill",
        methods: "GET, POST",
        sheddable: false,
    },
    RouteSpec {
        path: "/loss",
        label: "loss",
        methods: "GET, POST",
        sheddable: false,
    },
    RouteSpec {
        path: "",
        label: "not_found",
        methods: "",
        sheddable: false,
    },
];

/// Metrics labels of [`ROUTES`], in order.
const LABELS: [&str; ROUTES.len()] = {
    let mut l = [""; ROUTES.len()];
    let mut i = 0;
    while i < l.len() {
        l[i] = ROUTES[i].label;
        i += 1;
    }
    l
};

/// Route indices into [`ROUTES`].
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

impl Route {
    const ALL: [Route; ROUTES.len()] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Bid,
        Route::Ad,
        Route::Imp,
        Route::Click,
        Route::Win,
        Route::Bill,
        Route::Loss,
        Route::NotFound,
    ];

    /// The route serving `path`.
    pub fn of(path: &str) -> Route {
        ROUTES[..ROUTES.len() - 1]
            .iter()
            .position(|r| r.path == path)
            .map_or(Route::NotFound, |i| Route::ALL[i])
    }

    /// Its row of [`ROUTES`].
    pub fn spec(self) -> &'static RouteSpec {
        &ROUTES[self as usize]
    }
}

/// Sets a JSON body built with `serde_json::json!` (public routes and admin).
pub(crate) fn json_error(resp: &mut Response, status: u16, v: serde_json::Value) {
    resp.set(status, "application/json", v.to_string().as_bytes());
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
    /// This shard's event-loop lag (the tmax rule reads it).
    load: Rc<Load>,
    /// This shard's JSON decoding buffers, one per request of a batch.
    json: RefCell<Vec<crate::openrtb::JsonDecoder>>,
    /// Bid requests read since the last batch (see `bid.rs`).
    bids: RefCell<Vec<bid::Job>>,
    /// Recent cost of a batched bid request (ns, a moving average over
    /// batches; 0 before the first, and while no budget is set), for
    /// `bidder.batch_budget_us`.
    batch_cost_ns: std::cell::Cell<u64>,
    /// Raised to have the shard run the next batch.
    flush: Rc<crate::shard::FlushSignal>,
    /// Where this shard's events go.
    sink: Option<Sink>,
    /// This shard's invalid-traffic checker (its rate table).
    ivt: RefCell<crate::quality::Checker>,
    /// This shard's hourly report counters (published to `deps.report`).
    hourly: Rc<RefCell<crate::quality::report::Hourly>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("shard", &self.state.borrow().shard)
            .finish()
    }
}

/// How often a shard publishes the report counters that changed.
const REPORT_PUBLISH: std::time::Duration = std::time::Duration::from_millis(250);

/// The shard's report counters, and the task (on this shard's executor)
/// that publishes the rows that changed to `board`.
fn publish_reports(
    shard: usize,
    board: &Arc<crate::quality::report::Board>,
) -> Rc<RefCell<crate::quality::report::Hourly>> {
    let hourly = Rc::new(RefCell::new(crate::quality::report::Hourly::default()));
    let (h, board) = (hourly.clone(), board.clone());
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(REPORT_PUBLISH).await;
            let now_hour = crate::adserve::Now::wall().secs / 3600;
            h.borrow_mut().publish(&board, shard, now_hour);
        }
    })
    .detach();
    hourly
}

impl Api {
    /// Builds the shard's handler.
    pub fn new(ctx: &ShardCtx, deps: &Deps, sink: Option<Sink>) -> Self {
        let cfg = ctx.shared.config.clone();
        let mut state = ShardState::new(ctx.id as u16, ctx.shared.shards as u16, &cfg.bidder);
        if let Some(bids) = deps.restored.freq.get(ctx.id) {
            state.restore_freq(bids.clone());
        }
        if let Some(rows) = deps.restored.spend.get(ctx.id) {
            state.restore_spend(
                rows.iter()
                    .map(|&(c, day, today, total)| {
                        crate::adserve::spend::SpendRow::restored(c, day, today, total)
                    })
                    .collect(),
            );
        }
        state.publish_on(deps.spend.clone());
        if let Some(f) = &deps.fleet {
            state.follow_fleet(f.slices.clone());
        }
        Api {
            shared: ctx.shared.clone(),
            metrics: ctx.metrics.clone(),
            index: RefCell::new(Cache::new(deps.index.current.clone())),
            deps: deps.clone(),
            state: RefCell::new(state),
            scorer: RefCell::new(deps.models.as_ref().and_then(|m| m.take(ctx.id, 0))),
            load: ctx.load.clone(),
            json: RefCell::default(),
            bids: RefCell::default(),
            batch_cost_ns: std::cell::Cell::new(0),
            flush: ctx.flush.clone(),
            sink,
            ivt: RefCell::new(crate::quality::Checker::new(&cfg.ivt)),
            hourly: publish_reports(ctx.id, &deps.report),
            cfg,
        }
    }

    /// Counts an event and hands it to the shard's sink.
    fn emit(&self, ev: Event) {
        self.metrics.event(ev.kind);
        self.hourly.borrow_mut().event(&ev);
        if let Some(sink) = &self.sink {
            sink.push(ev);
        }
    }

    /// Counts a decision's scoring and no-bids, and emits its events.
    fn record(&self, d: &mut Decision) {
        bump(&self.metrics.counters.scored, u64::from(d.scored));
        bump(
            &self.metrics.counters.score_failures,
            u64::from(d.score_failures),
        );
        bump(
            &self.metrics.counters.freq_evictions,
            u64::from(d.freq_evictions),
        );
        bump(&self.metrics.counters.redecided, u64::from(d.redecided));
        for ev in d.events.drain(..) {
            self.emit(ev);
        }
        for &nb in &d.no_bids {
            self.metrics.no_bid(nb, 1);
        }
    }
}

impl Service for Api {
    const ROUTES: &'static [&'static str] = &LABELS;

    fn shed(&self, req: &Request<'_, '_>, resp: &mut Response) -> Option<usize> {
        let route = Route::of(req.path);
        if !route.spec().sheddable {
            return None;
        }
        match route {
            Route::Ad => {
                json_error(
                    resp,
                    503,
                    serde_json::json!({ "error": "overloaded, retry" }),
                );
                resp.header("Retry-After", b"1");
            }
            _ => resp.status = 204,
        }
        Some(route as usize)
    }

    fn flush(&self) {
        self.bid_batch();
    }

    fn handle(&self, req: &Request<'_, '_>, body: &[u8], resp: &mut Response) -> usize {
        let route = Route::of(req.path);
        let spec = route.spec();
        if route == Route::NotFound {
            json_error(
                resp,
                404,
                serde_json::json!({ "error": "no such route", "path": req.path }),
            );
            return route as usize;
        }
        if !spec.methods.split(", ").any(|m| m == req.method) {
            json_error(
                resp,
                405,
                serde_json::json!({ "error": "method not allowed" }),
            );
            resp.header("Allow", spec.methods.as_bytes());
            return route as usize;
        }
        match route {
            Route::Bid => self.bid(req, body, resp),
            Route::Healthz => health::healthz(resp),
            Route::Readyz => health::readyz(&self.shared, resp),
            Route::Metrics => self.metrics_page(resp),
            Route::Ad => self.ad(req, resp),
            Route::Imp | Route::Click | Route::Win | Route::Bill | Route::Loss => {
                self.notice(route, req, body, resp)
            }
            Route::NotFound => {}
        }
        route as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_and_enum_agree() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            if *r != Route::NotFound {
                assert_eq!(Route::of(ROUTES[i].path), *r);
            }
        }
        assert_eq!(Route::of("/nope"), Route::NotFound);
        assert_eq!(Route::of(""), Route::NotFound);
        let shed: Vec<_> = ROUTES
            .iter()
            .filter(|r| r.sheddable)
            .map(|r| r.label)
            .collect();
        assert_eq!(
            shed,
            ["bid", "ad"],
            "notices, health and metrics are never shed"
        );
    }
}
