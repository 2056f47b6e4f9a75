//! `POST /openrtb2/bid`: decode (JSON or Cap'n Proto), decide, encode.

use super::Api;
use crate::adserve::{self, Now};
use crate::http::{Request, Response};
use crate::openrtb;

impl Api {
    pub(super) fn bid(&self, req: &Request<'_, '_>, body: &[u8], resp: &mut Response) {
        let capnp = req
            .header("content-type")
            .is_some_and(|v| v.starts_with(b"application/x-capnp"));
        let mut json = self.json.borrow_mut();
        let decoded = if capnp {
            openrtb::capnp_codec::decode_request(body)
        } else {
            json.decode(body)
        };
        let br = match decoded {
            Ok(r) => r,
            Err(e) => {
                resp.set(400, "application/json", e.to_json().as_bytes());
                return;
            }
        };
        // The shard lags more than the exchange waits: a bid would come too late.
        if br.tmax.is_some_and(|t| self.load.too_late_for(t)) {
            self.metrics
                .no_bid(adserve::NoBid::Tmax, br.imp.len() as u64);
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
        match adserve::bid_response(ix, &br, &d, &self.cfg.bidder, &self.deps.keys) {
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
}
