//! Routes: maps method and path to a handler and answers the operational
//! endpoints. Each shard owns one [`Api`]; handlers are synchronous and never
//! touch sockets.
//!
//! | route | methods | answer |
//! |---|---|---|
//! | `/healthz` | GET, HEAD | 200 `{"ok":true}` while the process runs |
//! | `/readyz` | GET, HEAD | 200 when every shard serves; 503 while starting or draining |
//! | `/metrics` | GET, HEAD | Prometheus text, summed over shards |
//! | anything else | | 404 JSON |

use crate::http::{Request, Response};
use crate::shard::{Service, ShardCtx, Shared};
use std::rc::Rc;
use std::sync::Arc;

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
    /// No route matched.
    NotFound,
}

/// Body of a healthy `/healthz` (11 bytes, the size the nginx baseline serves).
pub const HEALTHZ_BODY: &[u8] = b"{\"ok\":true}";

/// One shard's request handler. Built on the shard's thread; lives as long
/// as the shard.
#[derive(Debug)]
pub struct Api {
    shared: Arc<Shared>,
    metrics: Rc<crate::metrics::LocalMetrics>,
}

impl Api {
    /// Builds the shard's handler.
    pub fn new(ctx: &ShardCtx) -> Self {
        Api {
            shared: ctx.shared.clone(),
            metrics: ctx.metrics.clone(),
        }
    }

    fn method_allowed(req: &Request<'_, '_>, resp: &mut Response, allowed: &'static str) -> bool {
        if allowed.split(", ").any(|m| m == req.method) {
            return true;
        }
        resp.set(
            405,
            "application/json",
            b"{\"error\":\"method not allowed\"}",
        );
        resp.header("Allow", allowed.as_bytes());
        false
    }
}

impl Service for Api {
    const ROUTES: &'static [&'static str] = &["healthz", "readyz", "metrics", "not_found"];

    fn handle(&self, req: &Request<'_, '_>, _body: &[u8], resp: &mut Response) -> usize {
        let route = match req.path {
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            _ => Route::NotFound,
        };
        match route {
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
                    // This shard's quantiles are published fresh; others' are at
                    // most one publish interval old.
                    self.metrics.publish();
                    let mut text = String::with_capacity(16 * 1024);
                    self.shared.registry.render(&mut text);
                    resp.set(
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        text.as_bytes(),
                    );
                }
            }
            Route::NotFound => {
                let msg = serde_json::json!({ "error": "no such route", "path": req.path });
                resp.set(404, "application/json", msg.to_string().as_bytes());
            }
        }
        route as usize
    }
}
