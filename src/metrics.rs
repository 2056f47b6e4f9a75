//! Per-shard counters and latency histograms, summed when scraped.
//!
//! Counters are atomics with a single writer (the owning shard), bumped with a
//! relaxed load and store: no locked instruction and no shared lock on the
//! request path; a scrape from any core reads them exactly. Latency histograms
//! (hdrhistogram) are shard-local and copied into a per-shard slot every
//! `metrics.publish_interval_ms` by a timer task, so a scrape sees quantiles at
//! most one interval old; the scraping shard publishes its own fresh.

use crate::adserve::{NoBid, Reason};
use crate::events::Kind;
use crate::http::HttpError;
use crate::openrtb::lenient::Dropped;
use crate::openrtb::Contextual;
use crate::prom::family;
use crate::quality::clicks::InvalidClick;
use crate::quality::Ivt;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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
    published: Mutex<Vec<Histogram<u64>>>,
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
            published: Mutex::new((0..routes).map(|_| new_hist()).collect()),
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

    /// Renders Prometheus text exposition (version 0.0.4) into `out`.
    pub fn render(&self, out: &mut String) {
        let shards = &self.shards;
        family(
            out,
            "adshard_http_requests_total",
            "counter",
            "HTTP requests answered, by shard, route and status.",
        );
        for (i, s) in shards.iter().enumerate() {
            for (r, label) in self.routes.iter().enumerate() {
                for (k, code) in STATUS_CODES.iter().enumerate() {
                    let v = s.requests[r][k].load(Relaxed);
                    if v > 0 {
                        let code = if *code == 0 {
                            "other".to_string()
                        } else {
                            code.to_string()
                        };
                        let _ = writeln!(out, "adshard_http_requests_total{{shard=\"{i}\",route=\"{label}\",status=\"{code}\"}} {v}");
                    }
                }
            }
        }
        family(
            out,
            "adshard_http_errors_total",
            "counter",
            "Requests refused at the HTTP layer, by cause.",
        );
        for (i, s) in shards.iter().enumerate() {
            for e in HttpError::ALL {
                let v = s.http_errors[e.index()].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "adshard_http_errors_total{{shard=\"{i}\",reason=\"{}\"}} {v}",
                        e.label()
                    );
                }
            }
        }
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&ShardCounters) -> u64,
        );
        let gauges: [Family; 13] = [
            (
                "adshard_shed_total",
                "counter",
                "Requests answered 204 (bids) or 503 (/ad) because the shard was overloaded.",
                |s| s.shed.load(Relaxed),
            ),
            (
                "adshard_scored_candidates_total",
                "counter",
                "Candidates scored by the CTR model.",
                |s| s.scored.load(Relaxed),
            ),
            (
                "adshard_score_failures_total",
                "counter",
                "CTR model runs that failed (rule-based values used).",
                |s| s.score_failures.load(Relaxed),
            ),
            (
                "adshard_bid_batches_total",
                "counter",
                "Batches of bid requests decided together (one CTR model run each).",
                |s| s.bid_batches.load(Relaxed),
            ),
            (
                "adshard_bid_batched_requests_total",
                "counter",
                "Bid requests that reached the auction, in batches (divided by batches: the mean batch size).",
                |s| s.bid_batched.load(Relaxed),
            ),
            (
                "adshard_bid_redecided_total",
                "counter",
                "Impressions of a batch decided afresh because a campaign they counted on bid earlier in the batch.",
                |s| s.redecided.load(Relaxed),
            ),
            (
                "adshard_connections_accepted_total",
                "counter",
                "Connections accepted.",
                |s| s.conns_accepted.load(Relaxed),
            ),
            (
                "adshard_connections_closed_total",
                "counter",
                "Connections closed.",
                |s| s.conns_closed.load(Relaxed),
            ),
            (
                "adshard_connections_refused_total",
                "counter",
                "Connections refused with 503 at max_connections.",
                |s| s.conns_refused.load(Relaxed),
            ),
            (
                "adshard_bytes_read_total",
                "counter",
                "Bytes read from client sockets.",
                |s| s.bytes_in.load(Relaxed),
            ),
            (
                "adshard_bytes_written_total",
                "counter",
                "Bytes written to client sockets.",
                |s| s.bytes_out.load(Relaxed),
            ),
            (
                "adshard_frequency_evictions_total",
                "counter",
                "Frequency-cap entries (user x campaign) evicted, oldest first, to stay within bidder.max_tracked_users.",
                |s| s.freq_evictions.load(Relaxed),
            ),
            (
                "adshard_spend_micros_total",
                "counter",
                "Micro-USD charged to campaigns by verified notices (all campaigns; per campaign: the admin listener's /admin/spend).",
                |s| s.spend_micros.load(Relaxed),
            ),
        ];
        for (name, kind, help, get) in gauges {
            family(out, name, kind, help);
            for (i, s) in shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", get(s));
            }
        }
        type Labeled = (
            &'static str,
            &'static str,
            &'static str,
            &'static [&'static str],
            fn(&ShardCounters) -> &[AtomicU64],
        );
        let labeled: [Labeled; 7] = [
            (
                "adshard_events_total",
                "kind",
                "Events produced by decisions and notices.",
                &EVENT_KINDS,
                |s| &s.events,
            ),
            (
                "adshard_no_bids_total",
                "reason",
                "Impressions answered without a bid, by reason.",
                &NO_BID_REASONS,
                |s| &s.no_bids,
            ),
            (
                "adshard_notices_rejected_total",
                "reason",
                "Notices refused (nothing charged or recorded), by reason.",
                &NOTICE_REJECTS,
                |s| &s.notice_rejects,
            ),
            (
                "adshard_request_values_dropped_total",
                "field",
                "Bid request values (or impressions, deals, objects) dropped as unusable, by field; the rest of the request was answered.",
                &REQUEST_DROPS,
                |s| &s.request_drops,
            ),
            (
                "adshard_contextual_requests_total",
                "signal",
                "Bid requests answered contextually only (no user id for frequency caps or events, no audience segments), by the privacy signal that required it.",
                &CONTEXTUAL,
                |s| &s.contextual,
            ),
            (
                "adshard_ivt_requests_total",
                "reason",
                "Bid requests answered without a bid as invalid traffic (GIVT), by reason.",
                &IVT,
                |s| &s.ivt,
            ),
            (
                "adshard_invalid_clicks_total",
                "reason",
                "Clicks that do not count (never charged, not clicks in reports), by reason.",
                &INVALID_CLICKS,
                |s| &s.invalid_clicks,
            ),
        ];
        for (name, label, help, values, get) in labeled {
            family(out, name, "counter", help);
            for (i, s) in shards.iter().enumerate() {
                for (k, v) in values.iter().enumerate() {
                    let n = get(s)[k].load(Relaxed);
                    let _ = writeln!(out, "{name}{{shard=\"{i}\",{label}=\"{v}\"}} {n}");
                }
            }
        }
        family(
            out,
            "adshard_duplicate_notices_total",
            "counter",
            "Notices seen before (no effect).",
        );
        for (i, s) in shards.iter().enumerate() {
            let _ = writeln!(
                out,
                "adshard_duplicate_notices_total{{shard=\"{i}\"}} {}",
                s.duplicate_notices.load(Relaxed)
            );
        }
        family(
            out,
            "adshard_connections_open",
            "gauge",
            "Connections open now.",
        );
        for (i, s) in shards.iter().enumerate() {
            let n = s
                .conns_accepted
                .load(Relaxed)
                .saturating_sub(s.conns_closed.load(Relaxed));
            let _ = writeln!(out, "adshard_connections_open{{shard=\"{i}\"}} {n}");
        }
        type LoadGauge = (&'static str, &'static str, fn((f64, f64)) -> f64);
        let load: [LoadGauge; 2] = [
            (
                "adshard_loop_lag_seconds",
                "Smoothed event-loop lag (how late the overload monitor's timer fires).",
                |l| l.0 / 1e6,
            ),
            (
                "adshard_shed_ratio",
                "Share of sheddable requests the shard sheds now.",
                |l| l.1,
            ),
        ];
        for (name, help, get) in load {
            family(out, name, "gauge", help);
            for (i, s) in shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", get(s.load()));
            }
        }
        family(
            out,
            "adshard_http_request_duration_seconds",
            "summary",
            "Time from the read that completed a request to its response being queued; shard=\"all\" merges shards.",
        );
        let hists: Vec<Vec<Histogram<u64>>> = shards
            .iter()
            .map(|s| match s.published.lock() {
                Ok(g) => g.clone(),
                // A poisoned slot only means a publisher panicked mid-copy; the
                // data is still a valid histogram.
                Err(p) => p.into_inner().clone(),
            })
            .collect();
        for (r, label) in self.routes.iter().enumerate() {
            let mut all = new_hist();
            for (i, h) in hists.iter().enumerate() {
                summary(out, &i.to_string(), label, &h[r]);
                // Same bounds on both sides, so add cannot fail.
                let _ = all.add(&h[r]);
            }
            if shards.len() > 1 {
                summary(out, "all", label, &all);
            }
        }
    }
}

fn summary(out: &mut String, shard: &str, route: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        return;
    }
    let name = "adshard_http_request_duration_seconds";
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        let v = h.value_at_quantile(q) as f64 / 1e9;
        let _ = writeln!(
            out,
            "{name}{{shard=\"{shard}\",route=\"{route}\",quantile=\"{q}\"}} {v:.9}"
        );
    }
    let sum: f64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum::<f64>()
        / 1e9;
    let _ = writeln!(
        out,
        "{name}_sum{{shard=\"{shard}\",route=\"{route}\"}} {sum:.9}"
    );
    let _ = writeln!(
        out,
        "{name}_count{{shard=\"{shard}\",route=\"{route}\"}} {}",
        h.len()
    );
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

    /// Copies the live histograms into the scrape slot.
    pub fn publish(&self) {
        let live = self.hist.borrow();
        let mut slot = match self.counters.published.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for (dst, src) in slot.iter_mut().zip(live.iter()) {
            dst.clone_from(src);
        }
    }
}

#[cfg(test)]
mod tests;
