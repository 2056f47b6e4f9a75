//! Per-shard counters and latency histograms, summed when scraped.
//!
//! Counters are atomics with a single writer (the owning shard), bumped with a
//! relaxed load and store: no locked instruction and no shared lock on the
//! request path; a scrape from any core reads them exactly. Latency histograms
//! (hdrhistogram) are shard-local and copied into a per-shard slot every
//! `metrics.publish_interval_ms` by a timer task, so a scrape sees quantiles at
//! most one interval old; the scraping shard publishes its own fresh. Only
//! the routes that answered since the last copy are copied (a histogram is
//! 221 KB: copying every route's each second stalled the shard for about a
//! millisecond), each swapped in whole (`ArcSwap`): a scrape never holds a
//! lock the shard waits on.

use crate::adserve::{NoBid, Reason};
use crate::events::Kind;
use crate::http::HttpError;
use crate::openrtb::lenient::Dropped;
use crate::openrtb::Contextual;
use crate::prom::family;
use crate::quality::clicks::InvalidClick;
use crate::quality::Ivt;
use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Status codes counted individually; anything else counts as "other".
pub const STATUS_CODES: [u16; 17] = [
    200, 204, 302, 400, 401, 403, 404, 405, 408, 413, 415, 431, 500, 501, 503, 505, 0,
];

fn status_index(code: u16) -> usize {
    STATUS_CODES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(STATUS_CODES.len() - 1)
}

/// The labels of a table type's `ALL` rows, in order, as a constant.
macro_rules! labels {
    ($t:ty) => {{
        let mut l = [""; <$t>::ALL.len()];
        let mut i = 0;
        while i < l.len() {
            l[i] = <$t>::ALL[i].label();
            i += 1;
        }
        l
    }};
}

/// Labels of `adshard_events_total{kind}`: the event kind table.
pub const EVENT_KINDS: [&str; Kind::ALL.len()] = labels!(Kind);
/// Labels of `adshard_no_bids_total{reason}`: the no-bid reason table.
pub const NO_BID_REASONS: [&str; NoBid::ALL.len()] = labels!(NoBid);
/// Labels of `adshard_notices_rejected_total{reason}`: the notice refusal table.
pub const NOTICE_REJECTS: [&str; Reason::ALL.len()] = labels!(Reason);
/// Labels of `adshard_request_values_dropped_total{field}`: the fields a
/// bid request may hold unusable values in.
pub const REQUEST_DROPS: [&str; Dropped::ALL.len()] = labels!(Dropped);
/// Labels of `adshard_contextual_requests_total{signal}`: the privacy
/// signals that limit a request to contextual bidding.
pub const CONTEXTUAL: [&str; Contextual::ALL.len()] = labels!(Contextual);

/// Labels of `adshard_ivt_requests_total{reason}`: why a bid request was
/// invalid traffic.
pub const IVT: [&str; Ivt::ALL.len()] = labels!(Ivt);
/// Labels of `adshard_invalid_clicks_total{reason}`.
pub const INVALID_CLICKS: [&str; InvalidClick::ALL.len()] = labels!(InvalidClick);

/// Bumps a single-writer counter. Only the owning shard calls this.
#[inline]
pub fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// One shard's counters, shared read-only with scrapers. Lives as long as the
/// server; written only by its shard.
#[derive(Debug)]
pub struct ShardCounters {
    /// Requests answered, `[route][status]`.
    requests: Vec<[AtomicU64; STATUS_CODES.len()]>,
    /// Requests refused at the HTTP layer, by cause.
    pub http_errors: [AtomicU64; HttpError::ALL.len()],
    /// Connections accepted.
    pub conns_accepted: AtomicU64,
    /// Connections closed.
    pub conns_closed: AtomicU64,
    /// Connections refused with 503 because `max_connections` was reached.
    pub conns_refused: AtomicU64,
    /// Bytes read from sockets.
    pub bytes_in: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Events produced, by kind (see [`EVENT_KINDS`]).
    pub events: [AtomicU64; EVENT_KINDS.len()],
    /// Impressions not bid on, by reason (see [`NO_BID_REASONS`]).
    pub no_bids: [AtomicU64; NO_BID_REASONS.len()],
    /// Unusable values dropped from bid requests, by field (see [`REQUEST_DROPS`]).
    pub request_drops: [AtomicU64; REQUEST_DROPS.len()],
    /// Bid requests answered contextually only, by privacy signal.
    pub contextual: [AtomicU64; CONTEXTUAL.len()],
    /// Bid requests refused as invalid traffic, by reason.
    pub ivt: [AtomicU64; IVT.len()],
    /// Invalid clicks, by reason.
    pub invalid_clicks: [AtomicU64; INVALID_CLICKS.len()],
    /// Notices that were duplicates (idempotent no-ops).
    pub duplicate_notices: AtomicU64,
    /// Notices refused, by reason (see [`NOTICE_REJECTS`]).
    pub notice_rejects: [AtomicU64; NOTICE_REJECTS.len()],
    /// Micro-USD charged to campaigns by this shard's notices.
    pub spend_micros: AtomicU64,
    /// Frequency-cap entries evicted, oldest first, at `max_tracked_users`.
    pub freq_evictions: AtomicU64,
    /// Requests answered by the overload path (204 / 503).
    pub shed: AtomicU64,
    /// The overload monitor's last sample (`f64` bits): smoothed loop lag
    /// in microseconds, shed fraction.
    load: [AtomicU64; 2],
    /// Candidates scored by the CTR model.
    pub scored: AtomicU64,
    /// Model runs that failed (rule-based values used instead).
    pub score_failures: AtomicU64,
    /// Bid batches decided, and the requests in them.
    pub bid_batches: AtomicU64,
    /// Bid requests decided in batches.
    pub bid_batched: AtomicU64,
    /// Impressions of a batch decided afresh (a campaign they counted on bid).
    pub redecided: AtomicU64,
    /// Latency histograms as last published, `[route]`.
    published: Vec<ArcSwap<Histogram<u64>>>,
}

/// The routes' metric labels, fixed at start-up.
pub type RouteLabels = &'static [&'static str];

fn new_hist() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant figures; these bounds are constants that
    // hdrhistogram accepts, so construction cannot fail.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant histogram bounds are valid")
}

impl ShardCounters {
    fn new(routes: usize) -> Self {
        ShardCounters {
            requests: (0..routes).map(|_| Default::default()).collect(),
            http_errors: Default::default(),
            conns_accepted: AtomicU64::new(0),
            conns_closed: AtomicU64::new(0),
            conns_refused: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            events: Default::default(),
            no_bids: Default::default(),
            request_drops: std::array::from_fn(|_| AtomicU64::new(0)),
            contextual: Default::default(),
            ivt: Default::default(),
            invalid_clicks: Default::default(),
            duplicate_notices: AtomicU64::new(0),
            notice_rejects: Default::default(),
            spend_micros: AtomicU64::new(0),
            freq_evictions: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            load: Default::default(),
            scored: AtomicU64::new(0),
            score_failures: AtomicU64::new(0),
            bid_batches: AtomicU64::new(0),
            bid_batched: AtomicU64::new(0),
            redecided: AtomicU64::new(0),
            published: (0..routes)
                .map(|_| ArcSwap::from_pointee(new_hist()))
                .collect(),
        }
    }

    /// Requests answered on `route` with `status` so far.
    pub fn requests(&self, route: usize, status: u16) -> u64 {
        self.requests[route][status_index(status)].load(Relaxed)
    }

    /// Records the overload monitor's sample: smoothed loop lag (µs) and
    /// shed fraction.
    pub fn set_load(&self, lag_us: f64, shed_fraction: f64) {
        self.load[0].store(lag_us.to_bits(), Relaxed);
        self.load[1].store(shed_fraction.to_bits(), Relaxed);
    }

    /// The last sample [`set_load`](Self::set_load) recorded.
    pub fn load(&self) -> (f64, f64) {
        let get = |x: &AtomicU64| f64::from_bits(x.load(Relaxed));
        (get(&self.load[0]), get(&self.load[1]))
    }
}

/// All shards' metrics; one per server, shared by every shard.
#[derive(Debug)]
pub struct Registry {
    routes: RouteLabels,
    shards: Vec<Arc<ShardCounters>>,
}

impl Registry {
    /// A registry for `shards` shards serving `routes`.
    pub fn new(routes: RouteLabels, shards: usize) -> Arc<Self> {
        Arc::new(Registry {
            routes,
            shards: (0..shards)
                .map(|_| Arc::new(ShardCounters::new(routes.len())))
                .collect(),
        })
    }

    /// The counters of shard `id`.
    pub fn shard(&self, id: usize) -> &Arc<ShardCounters> {
        &self.shards[id]
    }

    /// Total requests answered on `route` with `status`, over all shards.
    pub fn requests_total(&self, route: usize, status: u16) -> u64 {
        self.shards.iter().map(|s| s.requests(route, status)).sum()
    }
}

/// A shard's own view: its counters plus its live (unpublished) histograms.
/// Owned by one shard, never shared across threads.
#[derive(Debug)]
pub struct LocalMetrics {
    /// This shard's counters (also readable by scrapers).
    pub counters: Arc<ShardCounters>,
    hist: RefCell<Vec<Histogram<u64>>>,
}

impl LocalMetrics {
    /// The local side for shard `id` of `registry`.
    pub fn new(registry: &Registry, id: usize) -> Self {
        let counters = registry.shard(id).clone();
        let routes = registry.routes.len();
        LocalMetrics {
            counters,
            hist: RefCell::new((0..routes).map(|_| new_hist()).collect()),
        }
    }

    /// Counts one answered request and its latency in nanoseconds.
    #[inline]
    pub fn record(&self, route: usize, status: u16, nanos: u64) {
        bump(&self.counters.requests[route][status_index(status)], 1);
        // saturating_record clamps out-of-range values instead of failing.
        self.hist.borrow_mut()[route].saturating_record(nanos.max(1));
    }

    /// Counts an HTTP-layer refusal.
    #[inline]
    pub fn http_error(&self, e: HttpError) {
        bump(&self.counters.http_errors[e.index()], 1);
    }

    /// Counts an event produced.
    #[inline]
    pub fn event(&self, k: Kind) {
        bump(&self.counters.events[k.index()], 1);
    }

    /// Counts a refused notice.
    #[inline]
    pub fn notice_rejected(&self, why: Reason) {
        bump(&self.counters.notice_rejects[why.index()], 1);
    }

    /// Counts `n` impressions answered without a bid for `why`.
    #[inline]
    pub fn no_bid(&self, why: NoBid, n: u64) {
        bump(&self.counters.no_bids[why.index()], n);
    }

    /// Counts a bid request answered contextually only.
    pub fn contextual(&self, c: Contextual) {
        bump(&self.counters.contextual[c as usize], 1);
    }

    /// Counts a bid request refused as invalid traffic.
    pub fn ivt(&self, why: Ivt) {
        bump(&self.counters.ivt[why as usize], 1);
    }

    /// Counts an invalid click.
    pub fn invalid_click(&self, why: InvalidClick) {
        bump(&self.counters.invalid_clicks[why as usize], 1);
    }

    /// Counts a value dropped from a bid request.
    pub fn dropped(&self, d: Dropped) {
        bump(&self.counters.request_drops[d as usize], 1);
    }

    /// Copies the live histograms that recorded since the last call into
    /// the scrape slots (a histogram only grows: one that recorded counts
    /// more values than its published copy).
    pub fn publish(&self) {
        for (h, slot) in self.hist.borrow().iter().zip(&self.counters.published) {
            if h.len() != slot.load().len() {
                slot.store(Arc::new(h.clone()));
            }
        }
    }
}

mod render;

#[cfg(test)]
mod tests;
