use super::*;

#[test]
fn counts_sum_across_shards_and_render() {
    let reg = Registry::new(&["a", "b"], 2);
    let m0 = LocalMetrics::new(&reg, 0);
    let m1 = LocalMetrics::new(&reg, 1);
    m0.record(0, 200, 1000);
    m1.record(0, 200, 3000);
    m1.record(1, 404, 10);
    m1.record(1, 418, 10);
    m0.http_error(HttpError::BadChunk);
    assert_eq!(reg.requests_total(0, 200), 2);
    assert_eq!(reg.requests_total(1, 404), 1);
    assert_eq!(
        reg.requests_total(1, 418),
        1,
        "unlisted codes land in `other`"
    );
    m0.publish();
    m1.publish();
    let mut s = String::new();
    bump(&reg.shard(0).conns_accepted, 1);
    reg.render(&mut s);
    assert!(
        s.contains("adshard_http_requests_total{shard=\"1\",route=\"b\",status=\"other\"} 1"),
        "{s}"
    );
    assert!(s.contains("adshard_http_errors_total{shard=\"0\",reason=\"bad_chunk\"} 1"));
    assert!(s.contains("adshard_http_request_duration_seconds_count{shard=\"all\",route=\"a\"} 2"));
    assert!(s.contains("adshard_connections_open{shard=\"0\"} 1"));
    reg.shard(1).set_load(2500.0, 0.25);
    assert!(s.contains("adshard_shed_ratio{shard=\"0\"} 0\n"), "{s}");
    s.clear();
    reg.render(&mut s);
    assert!(s.contains("adshard_loop_lag_seconds{shard=\"1\"} 0.0025\n"));
    assert!(s.contains("adshard_shed_ratio{shard=\"1\"} 0.25\n"));
    assert!(
        !s.contains("route=\"b\",status=\"200\""),
        "zero series are left out"
    );
}

#[test]
fn unpublished_latency_is_not_visible() {
    let reg = Registry::new(&["a"], 1);
    let m = LocalMetrics::new(&reg, 0);
    m.record(0, 200, 5);
    let mut s = String::new();
    reg.render(&mut s);
    assert!(!s.contains("_count"));
    m.publish();
    s.clear();
    reg.render(&mut s);
    assert!(s.contains("adshard_http_request_duration_seconds_count{shard=\"0\",route=\"a\"} 1"));
}

#[test]
fn a_publish_copies_only_routes_that_answered_since_the_last() {
    let reg = Registry::new(&["a", "b"], 1);
    let m = LocalMetrics::new(&reg, 0);
    m.record(0, 200, 5);
    m.publish();
    let a = reg.shard(0).published[0].load_full();
    m.record(1, 200, 7);
    m.publish();
    // Route a recorded nothing more: its slot is the same copy, not a new one.
    assert!(Arc::ptr_eq(&a, &reg.shard(0).published[0].load_full()));
    let mut s = String::new();
    reg.render(&mut s);
    assert!(
        s.contains("adshard_http_request_duration_seconds_count{shard=\"0\",route=\"a\"} 1"),
        "{s}"
    );
    assert!(
        s.contains("adshard_http_request_duration_seconds_count{shard=\"0\",route=\"b\"} 1"),
        "{s}"
    );
    // An idle publish changes nothing a scrape sees.
    m.publish();
    let mut again = String::new();
    reg.render(&mut again);
    assert_eq!(s, again);
}
