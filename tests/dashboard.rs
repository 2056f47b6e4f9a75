//! deploy/grafana/adshard.json queries only metrics the server exposes.
#![allow(clippy::unwrap_used)]

use adshard::testkit::*;

#[test]
fn every_dashboard_metric_is_on_the_metrics_page() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/adshard.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("adshard_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                names.insert(name);
            }
        }
    }
    assert!(names.len() >= 15, "{names:?}");
    // Every subsystem on: a database (not reachable: its families still
    // show), the fleet, CTR scoring, overload shedding.
    let dead = format!("127.0.0.1:{}", adshard::testkit::cassandra::free_port());
    let app = start_api(&format!(
        "[scoring]\nenabled = true\n[overload]\nenabled = true\n\
         [events.db]\nnodes = [\"{dead}\"]\nconnect_timeout_ms = 100\n"
    ));
    let page = get(app.local_addr(), "/metrics").text();
    app.stop();
    let exposed: std::collections::BTreeSet<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !exposed.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exposed: {missing:?}\n{page}"
    );
}
