//! Bid path benchmarks: decode + decide + encode on the IAB fixtures against
//! 10k synthetic campaigns, with a latency distribution (p50/p99/p99.9) per
//! fixture printed after the criterion runs; decide alone (decode excluded)
//! at 100k campaigns, best-first beside the exhaustive reference, with its
//! own latency distribution; index build for 10k and 100k; signing one
//! bid's notice URLs and verifying one notice.
#![allow(clippy::unwrap_used)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use adshard::adserve::signing::{NoticeKeys, Signed};
use adshard::adserve::{bid_response, decide, decide_exhaustive, Now, ShardState};
use adshard::config::BidderConfig;
use adshard::index::{synth, Index};
use adshard::openrtb::{decode_json, encode_json, JsonDecoder};
use criterion::{black_box, BenchmarkId, Criterion};
use std::time::{Duration, Instant};

/// The IAB examples, named by what follows `bid-request-` (2.5_mobile, ...).
fn fixtures() -> Vec<(String, Vec<u8>)> {
    adshard::testkit::fixtures::bid_requests_short()
}

/// One full request: decode, decide, render, encode. Returns the response size.
#[allow(clippy::too_many_arguments)]
fn once(
    ix: &Index,
    st: &mut ShardState,
    cfg: &BidderConfig,
    keys: &NoticeKeys,
    json: &mut JsonDecoder,
    body: &[u8],
    out: &mut Vec<u8>,
    now: Now,
) -> usize {
    out.clear();
    let req = json.decode(body).unwrap();
    let d = decide(ix, st, &req, cfg, now);
    if let Some(r) = bid_response(ix, &req, &d, cfg, keys) {
        encode_json(&r, out);
    }
    out.len()
}

fn bench_bid(c: &mut Criterion, ix: &Index) {
    let cfg = BidderConfig::default();
    let mut st = ShardState::new(0, 1, &cfg);
    let keys = NoticeKeys::new(&[[7u8; 32]], 72 * 3600);
    let now = Now::wall();
    let mut out = Vec::with_capacity(8192);
    let mut json = JsonDecoder::default();
    let mut g = c.benchmark_group("bid_10k_campaigns");
    for (name, body) in fixtures() {
        g.bench_with_input(BenchmarkId::from_parameter(&name), &body, |b, body| {
            b.iter(|| {
                once(
                    ix,
                    &mut st,
                    &cfg,
                    &keys,
                    &mut json,
                    black_box(body),
                    &mut out,
                    now,
                )
            })
        });
    }
    g.finish();
}

/// Decide alone (the request decoded once, outside the loop) against 100k
/// campaigns: best-first (what serves) and the exhaustive reference that
/// visits every candidate, side by side.
fn bench_decide(c: &mut Criterion, ix: &Index) {
    let cfg = BidderConfig::default();
    let now = Now::wall();
    let mut g = c.benchmark_group("decide_100k_campaigns");
    for (name, body) in fixtures() {
        let req = decode_json(&body).unwrap();
        let mut st = ShardState::new(0, 1, &cfg);
        g.bench_function(BenchmarkId::new("best_first", &name), |b| {
            b.iter(|| {
                decide(ix, &mut st, black_box(&req), &cfg, now)
                    .winners
                    .len()
            })
        });
        let mut st = ShardState::new(0, 1, &cfg);
        g.bench_function(BenchmarkId::new("exhaustive", &name), |b| {
            b.iter(|| {
                decide_exhaustive(ix, &mut st, black_box(&req), &cfg, now, None)
                    .winners
                    .len()
            })
        });
    }
    g.finish();
}

/// Per-call latency of decide alone at 100k campaigns.
fn decide_report(ix: &Index) {
    let cfg = BidderConfig::default();
    let now = Now::wall();
    println!(
        "\nper-request latency, decide alone (decode excluded), {} campaigns (ns):",
        ix.len()
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "fixture", "p50", "p99", "p99.9", "max", "bid"
    );
    for (name, body) in fixtures() {
        let req = decode_json(&body).unwrap();
        let mut st = ShardState::new(0, 1, &cfg);
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let mut bid = false;
        for i in 0..22_000 {
            let t = Instant::now();
            let d = decide(ix, &mut st, black_box(&req), &cfg, now);
            let ns = t.elapsed().as_nanos() as u64;
            bid = !d.winners.is_empty();
            drop(d);
            if i >= 2_000 {
                h.record(ns).unwrap();
            }
        }
        print_row(&name, &h, &bid.to_string());
    }
}

/// JSON alone: decoding each fixture with the shard's decoder (simd-json)
/// and with the reference (serde_json), and decode + encode of the simple
/// banner's answer (the bid decided once, outside the loop).
fn bench_json(c: &mut Criterion, ix: &Index) {
    let cfg = BidderConfig::default();
    let mut st = ShardState::new(0, 1, &cfg);
    let keys = NoticeKeys::new(&[[7u8; 32]], 72 * 3600);
    let mut g = c.benchmark_group("json");
    for (name, body) in fixtures() {
        let mut json = JsonDecoder::default();
        g.bench_with_input(BenchmarkId::new("decode", &name), &body, |b, body| {
            b.iter(|| json.decode(black_box(body)).unwrap().imp.len())
        });
        g.bench_with_input(BenchmarkId::new("serde_json", &name), &body, |b, body| {
            b.iter(|| decode_json(black_box(body)).unwrap().imp.len())
        });
    }
    // The fixtures in turn through one decoder, as a shard sees a mix of
    // requests (each fixture alone above keeps the branch predictor and the
    // caches trained on one body): per request.
    let bodies: Vec<Vec<u8>> = fixtures().into_iter().map(|(_, b)| b).collect();
    let mut json = JsonDecoder::default();
    let mut k = 0usize;
    g.bench_function("decode/all_fixtures_in_turn", |b| {
        b.iter(|| {
            k = (k + 1) % bodies.len();
            json.decode(black_box(&bodies[k])).unwrap().imp.len()
        })
    });
    let (_, body) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "2.5_simple-banner")
        .unwrap();
    let req = decode_json(&body).unwrap();
    let d = decide(ix, &mut st, &req, &cfg, Now::wall());
    let resp = bid_response(ix, &req, &d, &cfg, &keys)
        .unwrap()
        .into_owned();
    let mut out = Vec::with_capacity(8192);
    let mut json = JsonDecoder::default();
    g.bench_function("decode_encode/2.5_simple-banner", |b| {
        b.iter(|| {
            out.clear();
            let r = json.decode(black_box(&body)).unwrap();
            encode_json(black_box(&resp), &mut out);
            r.imp.len() + out.len()
        })
    });
    // What `Accept-Encoding: gzip` adds to that answer (the shard's reused
    // encoder, level 1), and the sizes, printed once.
    out.clear();
    encode_json(&resp, &mut out);
    let mut gz = adshard::http::gzip::Gzip::default();
    let mut once = out.clone();
    gz.encode(&mut once);
    eprintln!(
        "bid response: {} bytes, gzipped {} bytes",
        out.len(),
        once.len()
    );
    let mut buf = Vec::with_capacity(8192);
    g.bench_function("gzip/2.5_simple-banner_response", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(&out));
            gz.encode(&mut buf);
            buf.len()
        })
    });
    g.finish();
}

/// What every bid pays (one MAC for all its URLs) and every notice pays
/// (one verification), with typical field lengths.
fn bench_signing(c: &mut Criterion) {
    let keys = NoticeKeys::new(&[[7u8; 32], [8u8; 32]], 72 * 3600);
    let s = Signed {
        bid: "9f2c61d0a4b3e7f1-3-1234567",
        auction: "a7c3f0e2-51b4-4d3c-9e0a-2b7d6c1f8e90",
        imp: "1",
        campaign: 1_000_123,
        creative: "cr-300x250-17",
        price: "2.4375",
        cur: "USD",
        fx: "1",
        test: false,
        issued: 1_800_000_000,
        src: "rtb",
    };
    let sig = String::from_utf8(keys.sign(&s).to_vec()).unwrap();
    let mut g = c.benchmark_group("notice_signing");
    g.bench_function("sign", |b| b.iter(|| keys.sign(black_box(&s))));
    g.bench_function("verify", |b| {
        b.iter(|| keys.verify(black_box(&s), Some(black_box(&sig)), 1_800_000_100))
    });
    g.bench_function("sign_and_verify", |b| {
        b.iter(|| {
            let t = keys.sign(black_box(&s));
            keys.verify(&s, std::str::from_utf8(&t).ok(), 1_800_000_100)
        })
    });
    g.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("index_build");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        let file = synth::campaigns(n, 1);
        // The build takes the parsed campaigns by value, as the loader hands
        // them over: the clone is set-up, and the index is dropped outside
        // the timing (criterion drops a batch's outputs after measuring it).
        g.bench_with_input(BenchmarkId::from_parameter(n), &file, |b, file| {
            b.iter_batched(
                || file.clone(),
                |f| Index::build(f, 1).unwrap(),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    // The creative briefs alone (a part of the build above).
    let file = synth::campaigns(100_000, 1);
    let (rank, _) = adshard::index::order::positions(&file.campaign);
    g.bench_function("briefs/100000", |b| {
        b.iter(|| adshard::index::Briefs::build(&file.campaign, &rank))
    });
    let json = serde_json::to_string(&synth::campaigns(100_000, 1)).unwrap();
    g.bench_function("parse_and_build_json/100000", |b| {
        b.iter(|| Index::load(&json, "bench.json", 1).unwrap())
    });
    g.finish();
}

/// Per-request latency distribution, measured call by call.
fn latency_report(ix: &Index) {
    let cfg = BidderConfig::default();
    let mut st = ShardState::new(0, 1, &cfg);
    let keys = NoticeKeys::new(&[[7u8; 32]], 72 * 3600);
    let now = Now::wall();
    let mut out = Vec::with_capacity(8192);
    let mut json = JsonDecoder::default();
    println!(
        "\nper-request latency, decode+decide+encode, {} campaigns (ns):",
        ix.len()
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "fixture", "p50", "p99", "p99.9", "max", "bid"
    );
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for (name, body) in fixtures() {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for _ in 0..2_000 {
            once(ix, &mut st, &cfg, &keys, &mut json, &body, &mut out, now);
        }
        let mut bid = false;
        for _ in 0..20_000 {
            let t = Instant::now();
            bid = once(
                ix,
                &mut st,
                &cfg,
                &keys,
                &mut json,
                black_box(&body),
                &mut out,
                now,
            ) > 0;
            let ns = t.elapsed().as_nanos() as u64;
            h.record(ns).unwrap();
            all.record(ns).unwrap();
        }
        print_row(&name, &h, &bid.to_string());
    }
    print_row("ALL", &all, "");
}

/// One row of a latency table: p50, p99, p99.9 and max (ns), and `bid`.
fn print_row(name: &str, h: &hdrhistogram::Histogram<u64>, bid: &str) {
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>6}",
        name,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        bid
    );
}

/// A banner request from browser `ua`, request `i` of a stream: its own
/// public IP (81.2.0.1 on, 250 per /24) and its own user id.
fn browser_request(i: usize, ua: &str) -> String {
    let ua = serde_json::to_string(ua).unwrap();
    format!(
        r#"{{"id":"r","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"device":{{"ua":{ua},"ip":"81.{}.{}.{}"}},"user":{{"id":"user-{i}"}}}}"#,
        2 + i / 64_000,
        i / 250 % 256,
        i % 250 + 1
    )
}

/// One pass of `reqs` through `warm` after a reload of `lists` (the
/// version moved: its verdict cache starts empty), a millisecond apart.
fn unseen_pass(
    warm: &mut adshard::quality::Checker,
    lists: &mut adshard::quality::Lists,
    reqs: &[adshard::openrtb::BidRequest<'_>],
) {
    lists.version += 1;
    for (k, r) in reqs.iter().enumerate() {
        black_box(warm.check(lists, black_box(r), 1_800_000_000_000 + k as u64));
    }
}

/// The invalid-traffic check of one bid request that passes (the common
/// case, every check run): a browser user agent, a public IP, a user id;
/// 256 IPs and users cycled so the rate table is not one hot slot. And the
/// same request from a crawler (stops at the user agent).
fn bench_ivt(c: &mut Criterion) {
    use adshard::quality::{Checker, Lists};
    let lists = Lists::shipped();
    let cfg = adshard::config::IvtConfig {
        max_per_ip: u32::MAX,
        max_per_device: u32::MAX,
        ..Default::default()
    };
    let mut checker = Checker::new(&cfg);
    let bodies: Vec<String> = (0..256)
        .map(|i| {
            format!(
                r#"{{"id":"r","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"domain":"news.example"}},"device":{{"ua":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","ip":"81.2.{}.{}"}},"user":{{"id":"user-{i}"}}}}"#,
                i / 16,
                i % 16 + 1
            )
        })
        .collect();
    let reqs: Vec<_> = bodies
        .iter()
        .map(|b| adshard::openrtb::decode_json(b.as_bytes()).unwrap())
        .collect();
    let bot_body = bodies[0].replace(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0)",
    );
    let bot = adshard::openrtb::decode_json(bot_body.as_bytes()).unwrap();
    let mut g = c.benchmark_group("ivt");
    let mut i = 0u64;
    g.bench_function("check/browser_public_ip", |b| {
        b.iter(|| {
            i += 1;
            let r = &reqs[(i & 255) as usize];
            checker.check(&lists, black_box(r), 1_800_000_000_000 + i)
        })
    });
    g.bench_function("check/crawler", |b| {
        b.iter(|| checker.check(&lists, black_box(&bot), 1_800_000_000_000))
    });
    // The ranges lookup alone, for IPv4 addresses spread over the whole
    // space (as a shard's traffic is): 4,096 cycled.
    let mut rng = synth::Rng(0x9e37_79b9_7f4a_7c15);
    let spread: Vec<std::net::IpAddr> = (0..4096)
        .map(|_| std::net::IpAddr::V4((rng.bits() as u32).into()))
        .collect();
    let mut j = 0usize;
    g.bench_function("ranges/random_ipv4", |b| {
        b.iter(|| {
            j = (j + 1) & 4095;
            lists.ranges.tag(black_box(spread[j]))
        })
    });
    // A user agent never seen before: the pattern automaton reads it all.
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    g.bench_function("bot_patterns/unseen_browser_ua", |b| {
        b.iter(|| lists.bots.is_bot(black_box(ua)))
    });
    // Every browser user agent of the isbot fixtures (2,072, mean 147
    // bytes), each a first sighting: the whole check of a request carrying
    // it on a shard that has not seen it, per request (criterion's
    // elements: time / 2,072), and the pattern test alone, one user agent
    // per iteration.
    let uas: Vec<String> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ivt/browser-user-agents.txt"
    ))
    .unwrap()
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(str::to_string)
    .collect();
    let fixture_bodies: Vec<String> = uas
        .iter()
        .enumerate()
        .map(|(i, ua)| browser_request(i, ua))
        .collect();
    let fixture_reqs: Vec<_> = fixture_bodies
        .iter()
        .map(|b| adshard::openrtb::decode_json(b.as_bytes()).unwrap())
        .collect();
    // One warm checker; the lists' version moves before each pass, which
    // empties its verdict cache (as a reload does; 64 KB, a few ns per
    // request of the pass), so every user agent is new to it.
    let mut fresh_lists = Lists::shipped();
    let mut warm = Checker::new(&cfg);
    g.throughput(criterion::Throughput::Elements(fixture_reqs.len() as u64));
    g.bench_function("check/unseen_browser_fixtures", |b| {
        b.iter(|| unseen_pass(&mut warm, &mut fresh_lists, &fixture_reqs))
    });
    // A stream whose user agents repeat as real traffic's do: the Avazu
    // sample's 15,000 rows in file order, each row's user agent the browser
    // fixture given to its device model at first sighting (1,599 models:
    // 10.7% of rows show a model for the first time, a direct-mapped
    // 4,096-entry cache misses on about 14%), every row its own IP and user
    // (each a rate-table slot of its own). The sample is drawn across a
    // whole day, so it repeats less than one shard's minute of traffic;
    // a user agent varies more than its device model. One warm checker,
    // its verdict cache emptied before each pass; time per request.
    let avazu = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/data/avazu-15k.csv"
    ))
    .unwrap();
    let mut head = avazu.lines().next().unwrap().split(',');
    let model_col = head.position(|c| c == "device_model").unwrap();
    let mut model_ua = std::collections::HashMap::new();
    let stream_bodies: Vec<String> = avazu
        .lines()
        .skip(1)
        .enumerate()
        .map(|(i, row)| {
            let model = row.split(',').nth(model_col).unwrap().to_string();
            let next = model_ua.len() % uas.len();
            browser_request(i, &uas[*model_ua.entry(model).or_insert(next)])
        })
        .collect();
    let stream: Vec<_> = stream_bodies
        .iter()
        .map(|b| adshard::openrtb::decode_json(b.as_bytes()).unwrap())
        .collect();
    g.throughput(criterion::Throughput::Elements(stream.len() as u64));
    g.bench_function("check/avazu_stream", |b| {
        b.iter(|| unseen_pass(&mut warm, &mut fresh_lists, &stream))
    });
    g.throughput(criterion::Throughput::Elements(1));
    let mut k = 0usize;
    g.bench_function("bot_patterns/browser_fixtures", |b| {
        b.iter(|| {
            k = (k + 1) % uas.len();
            lists.bots.is_bot(black_box(&uas[k]))
        })
    });
    g.finish();
}

fn main() {
    let ix = Index::build(synth::campaigns(10_000, 1), 1).unwrap();
    let big = Index::build(synth::campaigns(100_000, 1), 1).unwrap();
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    bench_bid(&mut c, &ix);
    bench_decide(&mut c, &big);
    bench_json(&mut c, &ix);
    bench_signing(&mut c);
    bench_ivt(&mut c);
    bench_build(&mut c);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` (test mode) does not.
    if std::env::args().any(|a| a == "--bench") {
        latency_report(&ix);
        decide_report(&big);
    }
}
