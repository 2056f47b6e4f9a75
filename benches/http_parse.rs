//! Parser benchmark: adshard's head parser against httparse on the same inputs.
#![allow(clippy::unwrap_used)]
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const INPUTS: &[(&str, &[u8])] = &[
    ("healthz", b"GET /healthz HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"),
    (
        "wrk",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    ),
    (
        "bid",
        b"POST /openrtb2/bid HTTP/1.1\r\nHost: bidder.example.com\r\nContent-Type: application/json\r\nContent-Length: 1024\r\nContent-Encoding: gzip\r\nx-openrtb-version: 2.6\r\nUser-Agent: exchange/1.0\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n",
    ),
    (
        "browser",
        b"GET /ad?slot=home-top&w=300&h=250&site=news.example.com&cb=8812731 HTTP/1.1\r\nHost: ads.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nReferer: https://news.example.com/story/1234\r\nCookie: uid=8c1e2f8a-1f7c-4f0a-9a55-3b3c0f1ad7e2; seg=12,55,91\r\nConnection: keep-alive\r\n\r\n",
    ),
];

fn parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_head");
    for (name, input) in INPUTS {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_with_input(BenchmarkId::new("adshard", name), input, |b, input| {
            b.iter(|| {
                let mut h = [adshard::http::EMPTY_HEADER; 32];
                let mut r = adshard::http::Request::new(&mut h);
                black_box(r.parse(black_box(input)).ok())
            })
        });
        g.bench_with_input(BenchmarkId::new("httparse", name), input, |b, input| {
            b.iter(|| {
                let mut h = [httparse::EMPTY_HEADER; 32];
                let mut r = httparse::Request::new(&mut h);
                black_box(r.parse(black_box(input)).ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parsers);
criterion_main!(benches);
