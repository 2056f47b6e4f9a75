//! The `/metrics` page: every family the registry holds, summed over the
//! shards, in Prometheus text exposition (version 0.0.4), each with its
//! HELP and TYPE lines.

use super::*;

impl Registry {
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
        let hists: Vec<Vec<Arc<Histogram<u64>>>> = shards
            .iter()
            .map(|s| s.published.iter().map(|h| h.load_full()).collect())
            .collect();
        for (r, label) in self.routes.iter().enumerate() {
            let mut all = new_hist();
            for (i, h) in hists.iter().enumerate() {
                summary(out, &i.to_string(), label, &h[r]);
                // Same bounds on both sides, so add cannot fail.
                let _ = all.add(&*h[r]);
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
