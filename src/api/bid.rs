//! `POST /openrtb2/bid`: requests are queued as they are read, and the
//! shard's next flush (once the connections ready in the same turn have
//! queued theirs) decodes them (JSON or Cap'n Proto), screens them (tmax,
//! invalid traffic), decides them as one batch with one CTR model run for
//! all their CPC candidates (`adserve::decide_batch`: the answers deciding
//! them one by one gives), and encodes each answer.

use super::Api;
use crate::adserve::{self, Decision, Now};
use crate::http::write::{Hold, Released};
use crate::http::{Request, Response};
use crate::index::Index;
use crate::metrics::bump;
use crate::openrtb::{self, BidRequest};
use futures::channel::oneshot;

/// A bid request waiting for the shard's next batch.
pub(super) struct Job {
    body: Vec<u8>,
    capnp: bool,
    done: oneshot::Sender<Response>,
}

/// A request of the batch that goes to the auction.
struct Live<'a> {
    job: usize,
    req: BidRequest<'a>,
    /// Fields dropped as unusable, told to a `test = 1` JSON request.
    dropped: Vec<openrtb::lenient::Dropped>,
}

impl Api {
    /// Queues the request for the shard's next batch; its response is held
    /// until the batch answers it.
    pub(super) fn bid(&self, req: &Request<'_, '_>, body: &[u8], resp: &mut Response) {
        let capnp = req
            .header("content-type")
            .is_some_and(|v| v.starts_with(b"application/x-capnp"));
        let (done, answer) = oneshot::channel();
        self.bids.borrow_mut().push(Job {
            body: body.to_vec(),
            capnp,
            done,
        });
        self.flush.raise();
        resp.hold = Some(Hold(Box::pin(async move {
            match answer.await {
                Ok(r) => Released::Replace(r),
                // The shard stopped before the batch ran.
                Err(_) => Released::Retry,
            }
        })));
    }

    /// Answers the queued bid requests, at most `bidder.max_batch` of them
    /// and no more than `bidder.batch_budget_us` fits at the recent cost
    /// per request (the rest wait for the next flush, after the answers
    /// are written).
    pub(super) fn bid_batch(&self) {
        let budget_ns = self.cfg.bidder.batch_budget_us.saturating_mul(1000);
        // Batches are timed only where a budget needs their cost.
        let started = (budget_ns > 0).then(std::time::Instant::now);
        let jobs: Vec<Job> = {
            let mut queue = self.bids.borrow_mut();
            let n = batch_len(
                queue.len(),
                self.cfg.bidder.max_batch,
                budget_ns,
                self.batch_cost_ns.get(),
            );
            if queue.len() > n {
                self.flush.raise();
            }
            queue.drain(..n).collect()
        };
        if jobs.is_empty() {
            return;
        }
        let mut answers: Vec<Response> = jobs.iter().map(|_| Response::default()).collect();
        let mut decoders = self.json.borrow_mut();
        if decoders.len() < jobs.len() {
            decoders.resize_with(jobs.len(), Default::default);
        }
        let now = Now::wall();
        let mut live = Vec::with_capacity(jobs.len());
        for (i, (job, json)) in jobs.iter().zip(decoders.iter_mut()).enumerate() {
            if let Some(l) = self.screen(i, job, json, now, &mut answers[i]) {
                live.push(l);
            }
        }
        if !live.is_empty() {
            // One index for the whole batch: decisions name its positions.
            let ix = self.index.borrow_mut().load().clone();
            let reqs: Vec<&BidRequest<'_>> = live.iter().map(|l| &l.req).collect();
            let mut decided = self.decide(&ix, &reqs, now);
            bump(&self.metrics.counters.bid_batches, 1);
            bump(&self.metrics.counters.bid_batched, reqs.len() as u64);
            for (l, d) in live.iter().zip(decided.iter_mut()) {
                let capnp = jobs[l.job].capnp;
                self.answer(&ix, &l.req, d, capnp, &l.dropped, &mut answers[l.job]);
            }
        }
        if let Some(t) = started {
            let per = t.elapsed().as_nanos() as u64 / jobs.len() as u64;
            self.batch_cost_ns.set(match self.batch_cost_ns.get() {
                0 => per,
                c => (c * 7 + per) / 8,
            });
        }
        for (job, r) in jobs.into_iter().zip(answers) {
            // A connection gone meanwhile drops its receiver: nothing to send.
            let _ = job.done.send(r);
        }
    }

    /// Decodes a queued request; answers it here (into `resp`) when it
    /// does not go to the auction: unreadable (400), too late for its
    /// `tmax`, invalid traffic.
    fn screen<'a>(
        &self,
        i: usize,
        job: &'a Job,
        json: &'a mut openrtb::JsonDecoder,
        now: Now,
        resp: &mut Response,
    ) -> Option<Live<'a>> {
        let decoded = if job.capnp {
            openrtb::capnp_codec::decode_request(&job.body)
        } else {
            json.decode(&job.body)
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
                return None;
            }
        };
        let (nbr, tell) = self.telling(&br, job.capnp, &dropped);
        // The shard lags more than the exchange waits: a bid would come too late.
        if br.tmax.is_some_and(|t| self.load.too_late_for(t)) {
            self.metrics
                .no_bid(adserve::NoBid::Tmax, br.imp.len() as u64);
            self.no_bid(&br.id, &[adserve::NoBid::Tmax], nbr, tell, resp);
            return None;
        }
        // Invalid traffic: a no-bid naming the kind (`nbr` 3, 4 or 5).
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
            return None;
        }
        Some(Live {
            job: i,
            req: br,
            dropped,
        })
    }

    /// Decides the batch's auctions on the index and model in service.
    fn decide(&self, ix: &Index, reqs: &[&BidRequest<'_>], now: Now) -> Vec<Decision> {
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
        let mut st = self.state.borrow_mut();
        adserve::decide_batch(ix, &mut st, reqs, &self.cfg.bidder, now, model)
    }

    /// What a JSON answer says besides the bid: whether a no-bid carries its
    /// reason (`bidder.nbr`; Cap'n Proto no-bids are 204), and the fields
    /// dropped as unusable, told to a `test = 1` request.
    fn telling<'d>(
        &self,
        br: &BidRequest<'_>,
        capnp: bool,
        dropped: &'d Vec<openrtb::lenient::Dropped>,
    ) -> (bool, Option<&'d Vec<openrtb::lenient::Dropped>>) {
        let tell = (br.test == 1 && !dropped.is_empty() && !capnp).then_some(dropped);
        (self.cfg.bidder.nbr && !capnp, tell)
    }

    /// Records a decision and writes its answer: the bid response, or a no-bid.
    fn answer(
        &self,
        ix: &Index,
        br: &BidRequest<'_>,
        d: &mut Decision,
        capnp: bool,
        dropped: &Vec<openrtb::lenient::Dropped>,
        resp: &mut Response,
    ) {
        let (nbr, tell) = self.telling(br, capnp, dropped);
        self.record(d);
        if let Some(c) = d.contextual {
            self.metrics.contextual(c);
        }
        match adserve::bid_response(ix, br, d, &self.cfg.bidder, &self.deps.keys) {
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
                test: br.test == 1,
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

/// How many of `queued` requests the next batch takes: at most `max`, and
/// no more than `budget_ns` holds at `cost_ns` each (no budget when either
/// is 0), but at least one of those queued (none when none is).
fn batch_len(queued: usize, max: usize, budget_ns: u64, cost_ns: u64) -> usize {
    let fits = match (budget_ns, cost_ns) {
        (0, _) | (_, 0) => usize::MAX,
        (b, c) => usize::try_from(b / c).unwrap_or(usize::MAX),
    };
    queued.min(max.min(fits).max(1))
}

#[cfg(test)]
mod tests {
    use super::batch_len;

    #[test]
    fn a_batch_takes_what_its_time_budget_holds() {
        // 25 us a request, 250 us a batch: 10 of 40 queued.
        assert_eq!(batch_len(40, 32, 250_000, 25_000), 10);
        // max_batch still caps it.
        assert_eq!(batch_len(40, 8, 250_000, 25_000), 8);
        // No budget, or no cost measured yet: max_batch alone.
        assert_eq!(batch_len(40, 32, 0, 25_000), 32);
        assert_eq!(batch_len(40, 32, 250_000, 0), 32);
        // A request dearer than the whole budget still goes, alone.
        assert_eq!(batch_len(40, 32, 250_000, 900_000), 1);
        // Fewer queued than fit: all of them; none queued: none (the
        // queue is drained by this count).
        assert_eq!(batch_len(3, 32, 250_000, 25_000), 3);
        assert_eq!(batch_len(0, 32, 250_000, 900_000), 0);
        assert_eq!(batch_len(0, 32, 0, 0), 0);
    }
}
