//! Notices: `/win`, `/bill`, `/loss` from exchanges, `/imp` and `/click`
//! beacons from browsers. Each is verified, priced and de-duplicated by
//! `adserve`, recorded, and answered with JSON, a pixel or a redirect.
//!
//! A notice that counts is answered only once it is written: a win, a
//! bill, an impression or a click (valid or not; everything but a loss)
//! queues its event to the shard's spool writer and holds its response
//! until the writer acknowledges it (see
//! [`Sink::push_durable`](crate::events::Sink::push_durable)). If it cannot
//! be queued or written, the notice is answered 503 with `Retry-After`, its
//! de-duplication claims are released (so the retry counts), and it is
//! counted as `not_recorded`. Refused notices charge nothing and emit nothing.

use super::{json_error, Api, Route};
use crate::adserve::{self, Notice, NoticeError, NoticeKind, NoticeOutcome, Now, Reason};
use crate::http::write::{Hold, Released};
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
        let now = Now::wall();
        let mut cache = self.index.borrow_mut();
        let ix = cache.load();
        let result = Notice::parse(Some(&q)).and_then(|n| {
            adserve::notice(
                ix,
                &mut self.state.borrow_mut(),
                &self.deps.dedupe,
                &self.deps.imps,
                &self.deps.keys,
                kind,
                &n,
                now,
            )
        });
        let out = match result.and_then(|o| self.record_notice(o, resp)) {
            Ok(o) => o,
            Err(e) => return self.refuse_notice(&e, resp),
        };
        if out.duplicate {
            bump(&self.metrics.counters.duplicate_notices, 1);
        }
        if let Some(why) = out.invalid_click {
            self.metrics.invalid_click(why);
        }
        if let Some((campaign, micros)) = out.charge {
            self.state.borrow_mut().charge(ix, campaign, micros, now);
            bump(&self.metrics.counters.spend_micros, micros.max(0) as u64);
        }
        if let Some(bid) = &out.settles {
            self.state.borrow_mut().settle(ix, bid);
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
            _ if out.unsubstituted => json_error(
                resp,
                200,
                serde_json::json!({ "ok": true, "recorded": false, "reason": "unsubstituted ${AUCTION_LOSS}: not a loss yet" }),
            ),
            _ => json_error(
                resp,
                200,
                serde_json::json!({ "ok": true, "duplicate": out.duplicate }),
            ),
        }
    }

    /// Hands the notice's event to the sink: durably (the response is held
    /// until the event is written) unless it is a loss or test traffic.
    fn record_notice(
        &self,
        mut out: NoticeOutcome,
        resp: &mut Response,
    ) -> Result<NoticeOutcome, NoticeError> {
        let Some(ev) = out.event.take() else {
            return Ok(out);
        };
        let kind = ev.kind;
        let (true, Some(sink)) = (out.durable, &self.sink) else {
            self.emit(ev);
            return Ok(out);
        };
        let dedupe = &self.deps.dedupe;
        // Reported once written: a notice refused here is retried.
        let reported = ev.clone();
        let Some(wait) = sink.push_durable(ev) else {
            out.claims.drain(..).for_each(|c| dedupe.release(c));
            return Err(NoticeError {
                reason: Reason::NotRecorded,
                param: "",
                detail: "the event queue is full; retry later".into(),
            });
        };
        self.metrics.event(kind);
        let (claims, dedupe, metrics, hourly) = (
            std::mem::take(&mut out.claims),
            dedupe.clone(),
            self.metrics.clone(),
            self.hourly.clone(),
        );
        resp.hold = Some(Hold(Box::pin(async move {
            let written = wait.await;
            if written {
                hourly.borrow_mut().event(&reported);
            } else {
                claims.into_iter().for_each(|c| dedupe.release(c));
                metrics.notice_rejected(Reason::NotRecorded);
            }
            if written {
                Released::Send
            } else {
                Released::Retry
            }
        })));
        Ok(out)
    }

    fn refuse_notice(&self, e: &NoticeError, resp: &mut Response) {
        self.metrics.notice_rejected(e.reason);
        json_error(
            resp,
            e.status(),
            serde_json::json!({
                "error": "notice refused",
                "reason": e.reason.label(),
                "param": e.param,
                "detail": e.detail,
            }),
        );
        if e.status() == 503 {
            resp.header("Retry-After", b"1");
        }
    }
}
