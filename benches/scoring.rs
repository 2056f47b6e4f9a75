//! CTR scoring cost per request: feature hashing for 20 candidates plus one
//! batched ONNX Runtime run (target <= 5 us), beside batch sizes 1 and 64;
//! the model run alone for 1, 16, 32 and 96 rows (a batch of 8 requests);
//! and a batch of 8 IAB requests decided with the model, as a shard does
//! (`decide_batch`, decode excluded), against the built-in campaigns and
//! 100k synthetic ones: the bidder's own cost per request at index scale.
//! Needs ORT_DYLIB_PATH (deploy/dev.sh sets it; `deploy/dev.sh bench scoring`).
#![allow(clippy::unwrap_used)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use adshard::adserve::{decide_batch, Now, ShardState};
use adshard::config::BidderConfig;
use adshard::index::{synth, Index};
use adshard::openrtb::{decode_json, BidRequest};
use adshard::scoring::{self, CtrModel, FEATURES};
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

fn main() {
    let lib = scoring::library_path("");
    let env = scoring::init_runtime(&lib).unwrap_or_else(|e| panic!("{e}"));
    // ADSHARD_BENCH_MODEL=<file.onnx>: weigh another model (a graph variant) beside the embedded one.
    let bytes = std::env::var("ADSHARD_BENCH_MODEL")
        .map(|p| std::fs::read(p).unwrap())
        .unwrap_or_else(|_| scoring::EMBEDDED_MODEL.to_vec());
    let mut model = scoring::Scorer::from_session(scoring::session(env, &bytes, "bench").unwrap());
    let body = adshard::testkit::fixtures::read("bid-request-2.5_mobile.json");
    let req = decode_json(&body).unwrap();
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut g = c.benchmark_group("score_request");
    let mut out = Vec::new();
    // What the bidder does per impression: one request row, one row per candidate.
    let names: Vec<String> = (0..96).map(|k| format!("creative-{k}")).collect();
    let build = |rows: &mut Vec<[i64; FEATURES]>, n: usize| {
        rows.clear();
        let base = scoring::request_row(&req, &req.imp[0], 13);
        rows.extend((0..n).map(|k| scoring::with_ad(base, 1000 + k as u64, &names[k])));
    };
    for n in [1usize, 16, 32, 64] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("hash_and_predict", n), &n, |b, &n| {
            let mut rows = Vec::with_capacity(n);
            b.iter(|| {
                build(&mut rows, n);
                assert!(model.predict(black_box(&rows), &mut out));
                out[0]
            })
        });
    }
    // 96: a batch of 8 requests at 100k campaigns (12 rows an impression).
    for n in [1usize, 16, 32, 96] {
        let mut rows = Vec::new();
        build(&mut rows, n);
        g.bench_with_input(BenchmarkId::new("predict_only", n), &rows, |b, rows| {
            b.iter(|| {
                assert!(model.predict(black_box(rows), &mut out));
                out[0]
            })
        });
        g.bench_with_input(BenchmarkId::new("hash_only", n), &n, |b, &n| {
            let mut rows = Vec::with_capacity(n);
            b.iter(|| {
                build(&mut rows, n);
                rows.len()
            })
        });
    }
    g.finish();
    bench_batch(&mut c, &mut model);
    c.final_summary();
}

/// The requests `benches/scripts/bid.lua` sends (the native example from
/// the corpus, with its assets), sorted by name with the native one last.
fn corpus() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = adshard::testkit::fixtures::bid_requests()
        .into_iter()
        .filter(|(n, _)| !n.contains("native"))
        .map(|(_, b)| b)
        .collect();
    v.push(adshard::testkit::fixtures::corpus(
        "native-1.0_iab-2.5-example-with-assets.json",
    ));
    v
}

/// `decide_batch` with the model over batches of 8 requests (the corpus in
/// turn), per batch; divide by 8 for a request.
fn bench_batch(c: &mut Criterion, model: &mut scoring::Scorer) {
    let bodies = corpus();
    let reqs: Vec<BidRequest<'_>> = bodies.iter().map(|b| decode_json(b).unwrap()).collect();
    let built_in = Index::parse(adshard::api::EMBEDDED_CAMPAIGNS, "campaigns.toml").unwrap();
    let mut g = c.benchmark_group("decide_batch_of_8_scored");
    g.throughput(Throughput::Elements(8));
    for (name, file) in [
        ("built_in", built_in),
        ("100k", synth::campaigns(100_000, 1)),
    ] {
        let ix = Index::build(file, 1).unwrap();
        let cfg = BidderConfig::default();
        let mut st = ShardState::new(0, 1, &cfg);
        let mut k = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                let batch: Vec<&BidRequest<'_>> =
                    (0..8).map(|i| &reqs[(k + i) % reqs.len()]).collect();
                k += 8;
                let m: &mut dyn CtrModel = model;
                decide_batch(&ix, &mut st, black_box(&batch), &cfg, Now::wall(), Some(m)).len()
            })
        });
    }
    g.finish();
}
