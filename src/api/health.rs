//! `/healthz` (the process answers) and `/readyz` (every shard serves and no
//! drain has begun).

use crate::http::Response;
use crate::shard::Shared;

/// Body of a healthy `/healthz` (11 bytes, the size the nginx baseline serves).
pub const HEALTHZ_BODY: &[u8] = b"{\"ok\":true}";

/// Answers `/healthz`.
pub fn healthz(resp: &mut Response) {
    resp.set(200, "application/json", HEALTHZ_BODY);
}

/// Answers `/readyz`: 200 while ready, 503 while starting or draining.
pub fn readyz(shared: &Shared, resp: &mut Response) {
    if shared.is_ready() {
        resp.set(200, "application/json", b"{\"ready\":true}");
    } else {
        resp.set(503, "application/json", b"{\"ready\":false}");
    }
}
