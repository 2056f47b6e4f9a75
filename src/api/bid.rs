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
        // What was dropped as unusable: counted by field, and told to
        // `test = 1` requests in the response's `ext`.
        let dropped = openrtb::lenient::take();
        for &d in &dropped {
            self.metrics.dropped(d);
        }
        let br = match decoded {
            Ok(r) => r,
            Err(e) => {
                resp.set(400, "application/json", e.to_json().as_bytes());
                return;
            }
        };
        let tell = (br.test == 1 && !dropped.is_empty() && !capnp).then_some(&dropped);
        // No-bid reasons in a JSON body, where configured (Cap'n Proto: 204).
        let nbr = self.cfg.bidder.nbr && !capnp;
        // The shard lags more than the exchange waits: a bid would come too late.
        if br.tmax.is_some_and(|t| self.load.too_late_for(t)) {
            self.metrics
                .no_bid(adserve::NoBid::Tmax, br.imp.len() as u64);
            self.no_bid(&br.id, &[adserve::NoBid::Tmax], nbr, tell, resp);
            return;
        }
        // Invalid traffic: a no-bid naming the kind (`nbr` 3, 4 or 5).
        let now = Now::wall();
        let lists = self.deps.ivt.lists.load();
        let ivt = self
            .ivt
            .borrow_mut()
            .check(&lists, &br, (now.micros / 1000).max(0) as u64);
        if let Some(why) = ivt {
            self.metrics.ivt(why);
            self.refused(&br, why, now);
            self.metrics
                .no_bid(adserve::NoBid::Ivt, br.imp.len() as u64);
            self.no_bid_code(&br.id, why.nbr(), nbr, tell, resp);
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
            now,
            model,
        );
        self.record(&mut d);
        if let Some(c) = d.contextual {
            self.metrics.contextual(c);
        }
        match adserve::bid_response(ix, &br, &d, &self.cfg.bidder, &self.deps.keys) {
            Some(r) => {
                resp.status = 200;
                if capnp {
                    resp.content_type = "application/x-capnp";
                    openrtb::capnp_codec::encode_response(&r, &mut resp.body);
                } else {
                    resp.content_type = "application/json";
                    openrtb::encode_json(&r, &mut resp.body);
                    if let Some(d) = tell {
                        told(&mut resp.body, d);
                    }
                }
            }
            None => self.no_bid(&br.id, &d.no_bids, nbr, tell, resp),
        }
    }

    /// Records a request refused as invalid traffic: an event (no campaign,
    /// the reason as its creative), so reports count refusals by reason.
    fn refused(&self, br: &openrtb::BidRequest<'_>, why: crate::quality::Ivt, now: Now) {
        let ev = {
            let mut st = self.state.borrow_mut();
            crate::events::Event {
                id: st.next_event_id(now),
                kind: crate::events::Kind::Ivt,
                ts_micros: now.micros,
                shard: st.shard,
                auction_id: br.id.to_string(),
                imp_id: String::new(),
                campaign_id: 0,
                creative_id: why.label().to_string(),
                price_micros: 0,
                currency: String::new(),
                spend_micros: 0,
                bid_id: String::new(),
                freq_key: 0,
                freq_window: 0,
            }
        };
        self.emit(ev);
    }

    /// A no-bid: 204, or 200 with the reason (`nbr`: `bidder.nbr` on a JSON
    /// request), and with what was dropped for a test request.
    fn no_bid(
        &self,
        id: &str,
        why: &[adserve::NoBid],
        nbr: bool,
        tell: Option<&Vec<openrtb::lenient::Dropped>>,
        resp: &mut Response,
    ) {
        self.no_bid_code(id, adserve::NoBid::of_request(why), nbr, tell, resp);
    }

    /// A no-bid whose OpenRTB reason is `code`.
    fn no_bid_code(
        &self,
        id: &str,
        code: u16,
        nbr: bool,
        tell: Option<&Vec<openrtb::lenient::Dropped>>,
        resp: &mut Response,
    ) {
        if !nbr && tell.is_none() {
            resp.status = 204;
            return;
        }
        let mut body = serde_json::json!({ "id": id, "seatbid": [] });
        if nbr {
            body["nbr"] = code.into();
        }
        resp.set(200, "application/json", body.to_string().as_bytes());
        if let Some(d) = tell {
            told(&mut resp.body, d);
        }
    }
}

/// Adds `"ext":{"adshard":{"dropped":[fields]}}` to the JSON object in `body`.
fn told(body: &mut Vec<u8>, dropped: &[openrtb::lenient::Dropped]) {
    if body.last() != Some(&b'}') {
        return;
    }
    body.pop();
    let mut fields: Vec<&str> = dropped.iter().map(|d| d.label()).collect();
    fields.sort_unstable();
    fields.dedup();
    let ext = serde_json::json!({ "adshard": { "dropped": fields } });
    body.extend_from_slice(b",\"ext\":");
    body.extend_from_slice(ext.to_string().as_bytes());
    body.push(b'}');
}
