//! Notices: `/win`, `/bill`, `/loss` from exchanges, `/imp` and `/click`
//! beacons from browsers. Each is parsed, de-duplicated and charged by
//! `adserve`, and answered with JSON, a pixel or a redirect.

use super::{json_error, Api, Route};
use crate::adserve::{self, Notice, NoticeKind, Now};
use crate::http::{Request, Response};
use crate::metrics::bump;
use std::borrow::Cow;

/// A transparent 1x1 GIF for impression beacons.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

impl Api {
    pub(super) fn notice(
        &self,
        route: Route,
        req: &Request<'_, '_>,
        body: &[u8],
        resp: &mut Response,
    ) {
        let kind = match route {
            Route::Imp => NoticeKind::Imp,
            Route::Click => NoticeKind::Click,
            Route::Win => NoticeKind::Win,
            Route::Bill => NoticeKind::Bill,
            _ => NoticeKind::Loss,
        };
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
}
