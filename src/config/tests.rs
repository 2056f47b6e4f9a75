use super::*;
use std::time::Duration;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, "test", Vec::new())
}

#[test]
fn embedded_default_is_valid() {
    let c = Config::from_toml(EMBEDDED_DEFAULT, "embedded default", Vec::new()).unwrap();
    assert!(
        c.server.spin_before_park_us > 0,
        "spinning is on by default for serving"
    );
    // Idle keep-alive connections outlive the pools of common clients
    // (nginx 75 s, Go's http.Transport and Prebid Server 90 s): they close
    // first, and never send a request on a connection being closed.
    for t in [&c.timeouts, &crate::config::Timeouts::default()] {
        assert!(t.idle_keepalive_ms > 90_000, "{}", t.idle_keepalive_ms);
    }
    assert_eq!(
        c.bidder.hold_ms,
        crate::config::BidderConfig::default().hold_ms
    );
}

#[test]
fn unknown_key_is_named() {
    let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisn = 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.lisn") || e.contains("lisn"), "{e}");
    let e = parse("[limits]\nmax_body_bytes = \"big\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("limits.max_body_bytes"), "{e}");
    let e = parse("[bogus]\n").unwrap_err().to_string();
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn invalid_values_are_named() {
    let cases = [
        ("[server]\nlisten = \"nope\"", "server.listen"),
        ("[limits]\nmax_headers = 0", "limits.max_headers"),
        ("[timeouts]\nheader_read_ms = 0", "timeouts.header_read_ms"),
        ("[server]\ncores = \"3-1\"", "server.cores"),
        ("[server]\nmax_connections = 0", "server.max_connections"),
        ("[bidder]\nmax_batch = 0", "bidder.max_batch"),
        (
            "[bidder]\nbatch_budget_us = 100001",
            "bidder.batch_budget_us",
        ),
        ("[bidder]\nmax_scored = 0", "bidder.max_scored"),
        // Sizes allocated at start: an absurd one is an error, not an abort.
        (
            "[bidder]\ndedupe_slots = 9223372036854775807",
            "bidder.dedupe_slots",
        ),
        (
            "[events]\nqueue_capacity = 100000000000",
            "events.queue_capacity",
        ),
        ("[[shard]]\ncore = 0\n[[shard]]\ncore = 0", "shard[1].core"),
        (
            "[overload]\nstanding_window_ms = 0",
            "overload.standing_window_ms",
        ),
        (
            "[overload]\nshed_decay_per_s = 0.0",
            "overload.shed_decay_per_s",
        ),
    ];
    for (text, key) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
    assert!(parse("[server\n")
        .unwrap_err()
        .to_string()
        .contains("invalid TOML"));
}

#[test]
fn helpers_take_the_cores_without_a_shard() {
    let c = parse("[server]\ncores = \"1-2\"").unwrap();
    assert_eq!(c.helper_cores(&[0, 1, 2, 3]).unwrap(), vec![0, 3]);
    // Every allowed core runs a shard: helpers go where the system puts them.
    let c = parse("[server]\ncores = \"all\"").unwrap();
    assert!(c.helper_cores(&[0, 1]).unwrap().is_empty());
    // Unpinned shards may run anywhere, so helpers are not confined either.
    let c = parse("[server]\ncores = [0]\npin = false").unwrap();
    assert!(c.helper_cores(&[0, 1]).unwrap().is_empty());
    let e = parse("[server]\ncores = [4]")
        .unwrap()
        .helper_cores(&[0, 1]);
    assert!(e.unwrap_err().to_string().contains("server.cores"));
}

#[test]
fn cores_and_overrides() {
    let c = parse("[server]\ncores = \"0-1\"\nspin_before_park_us = 5\n[[shard]]\ncore = 1\nspin_before_park_us = 0\nmax_connections = 7").unwrap();
    let s = c.shards(&[0, 1]).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].spin_before_park, Duration::from_micros(5));
    assert_eq!(s[1].spin_before_park, Duration::ZERO);
    assert_eq!(s[1].max_connections, 7);
    let e = c.shards(&[0]).unwrap_err().to_string();
    assert!(e.contains("server.cores") && e.contains("core 1"), "{e}");
    let c = parse("[server]\ncores = [1]").unwrap();
    assert_eq!(c.shards(&[0, 1]).unwrap()[0].core, 1);
    let c = parse("[server]\ncores = \"all\"").unwrap();
    assert_eq!(c.shards(&[0, 1, 2]).unwrap().len(), 3);
    assert_eq!(parse_core_spec("0-2,5").unwrap(), Some(vec![0, 1, 2, 5]));
    assert!(parse_core_spec("a").is_err());
}

#[test]
fn env_overrides_apply_and_are_named() {
    let env = vec![
        (
            "ADSHARD__SERVER__LISTEN".to_string(),
            "127.0.0.1:9999".to_string(),
        ),
        ("ADSHARD__LIMITS__MAX_HEADERS".to_string(), "12".to_string()),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let c = Config::from_toml("", "t", env).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9999");
    assert_eq!(c.limits.max_headers, 12);
    let env = vec![(
        "ADSHARD__LIMITS__MAX_HEADERS".to_string(),
        "many".to_string(),
    )];
    let e = Config::from_toml("", "t", env).unwrap_err().to_string();
    assert!(
        e.contains("ADSHARD__LIMITS__MAX_HEADERS") && e.contains("limits.max_headers"),
        "{e}"
    );
}

#[test]
fn notice_keys_are_required_off_loopback_and_never_echoed() {
    let short =
        "[bidder]\nnotice_keys = [\"0123456789abcdef0123456789abcdef\", \"tooshort-secret\"]";
    let e = parse(short).unwrap_err().to_string();
    assert!(
        e.contains("bidder.notice_keys[1]") && !e.contains("tooshort"),
        "{e}"
    );
    let public = "[bidder]\npublic_url = \"https://bidder.example.com\"";
    let e = parse(public).unwrap_err().to_string();
    assert!(e.contains("bidder.notice_keys"), "{e}");
    let keyed = format!("{public}\nnotice_keys = [\"0123456789abcdef0123456789abcdef\"]");
    assert!(parse(&keyed).is_ok());
    for url in [
        "http://localhost:8080",
        "http://127.0.0.1:9",
        "http://[::1]:80/x",
    ] {
        let c = parse(&format!("[bidder]\npublic_url = \"{url}\"")).unwrap();
        assert!(c.bidder.public_url_is_loopback(), "{url}");
    }
    let c = parse("[bidder]\nnotice_ttl = \"90m\"").unwrap();
    assert_eq!(c.bidder.notice_ttl_secs(), Some(5400));
    for bad in ["72", "0h", "3w", "h"] {
        let e = parse(&format!("[bidder]\nnotice_ttl = \"{bad}\"")).unwrap_err();
        assert!(e.to_string().contains("bidder.notice_ttl"), "{bad}: {e}");
    }
    let e = parse("[bidder]\ncpc_cap_multiple = 0.5").unwrap_err();
    assert!(e.to_string().contains("bidder.cpc_cap_multiple"));
}

#[test]
fn fleet_settings_are_range_checked_by_key() {
    for (bad, key) in [
        ("[fleet]\nsync_interval_ms = 50", "fleet.sync_interval_ms"),
        (
            "[fleet]\nsync_interval_ms = 600000",
            "fleet.sync_interval_ms",
        ),
        ("[fleet]\nfallback_decay = 1.5", "fleet.fallback_decay"),
        ("[fleet]\nfallback_decay = -0.1", "fleet.fallback_decay"),
        ("[campaigns]\nmax_shrink = 2", "campaigns.max_shrink"),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(key), "{bad}: {e}");
    }
    let c = parse("[fleet]\nenabled = false\nsync_interval_ms = 250\nfallback_decay = 1").unwrap();
    assert!(!c.fleet.enabled);
    assert_eq!(c.fleet.sync_interval_ms, 250);
    assert!(
        parse("[fleet]\nsync_every = 1").is_err(),
        "unknown keys refused"
    );
}
