use super::*;
use crate::openrtb::decode_json;

fn cfg() -> IvtConfig {
    IvtConfig {
        max_per_ip: 5,
        max_per_device: 3,
        ..Default::default()
    }
}

const GOOD_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn req(device: &str, user: &str) -> String {
    format!(
        r#"{{"id":"r","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}],"site":{{"domain":"news.example"}},"device":{device}{user}}}"#
    )
}

fn check(c: &mut Checker, json: &str, now_ms: u64) -> Option<Ivt> {
    let r = decode_json(json.as_bytes()).unwrap();
    c.check(&Lists::shipped(), &r, now_ms)
}

#[test]
fn each_kind_of_invalid_traffic_is_named() {
    let mut c = Checker::new(&cfg());
    let dev = |ua: &str, ip: &str| format!(r#"{{"ua":"{ua}","ip":"{ip}"}}"#);
    for (json, want) in [
        (req(&dev(GOOD_UA, "81.2.69.142"), ""), None),
        (
            req(
                &dev(
                    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                    "66.249.66.1",
                ),
                "",
            ),
            Some(Ivt::BotUa),
        ),
        (
            req(&dev("python-requests/2.31.0", "81.2.69.143"), ""),
            Some(Ivt::BotUa),
        ),
        (req(&dev(GOOD_UA, "10.1.2.3"), ""), Some(Ivt::ReservedIp)),
        (req(&dev(GOOD_UA, "192.0.2.44"), ""), Some(Ivt::ReservedIp)),
        (
            req(r#"{"ua":"Mozilla/5.0 (X11)","ipv6":"fe80::1"}"#, ""),
            Some(Ivt::ReservedIp),
        ),
        (req(&dev(GOOD_UA, "999.1.1.1"), ""), Some(Ivt::Device)),
        (
            req(&dev("Mozilla/5.0\\u0001", "81.2.69.144"), ""),
            Some(Ivt::Device),
        ),
        // Missing signals: no user agent on a site, no IP at all.
        (req(r#"{"ip":"81.2.69.145"}"#, ""), Some(Ivt::Device)),
        (
            req(&format!(r#"{{"ua":"{GOOD_UA}"}}"#), ""),
            Some(Ivt::Device),
        ),
    ] {
        assert_eq!(check(&mut c, &json, 1_000), want, "{json}");
    }
    // In an app, the advertising id stands in for the user agent.
    let app = r#"{"id":"r","imp":[{"id":"1","banner":{"w":320,"h":50}}],"app":{"bundle":"com.x"},"device":{"ifa":"6D92078A-8246-4BA4-AE5B-76104861E7DC","ip":"81.2.69.146"}}"#;
    assert_eq!(check(&mut c, app, 1_000), None);
    // Not required: missing signals pass, malformed ones never do.
    let mut lax = Checker::new(&IvtConfig {
        require_device: false,
        ..cfg()
    });
    assert_eq!(
        check(&mut lax, &req(r#"{"ip":"81.2.69.147"}"#, ""), 1_000),
        None
    );
    // Not an address, or one of the other family in the field.
    for dev in [
        r#"{"ip":"1.2.3"}"#,
        r#"{"ip":"2a00:1450::1"}"#,
        r#"{"ipv6":"81.2.69.147"}"#,
        r#"{"ipv6":"::ffff:81.2.69.147:1"}"#,
    ] {
        assert_eq!(
            check(&mut lax, &req(dev, ""), 1_000),
            Some(Ivt::Device),
            "{dev}"
        );
    }
}

#[test]
fn a_cached_verdict_is_the_checked_one() {
    let mut c = Checker::new(&IvtConfig {
        require_device: false,
        ..cfg()
    });
    for (i, (ua, want)) in [
        (GOOD_UA, None),
        ("Mozilla/5.0 (compatible; Googlebot/2.1)", Some(Ivt::BotUa)),
        ("Mozilla/5.0\\u0001 (X11)", Some(Ivt::Device)),
        ("Mozilla/5.0 (X11)\\u007f", Some(Ivt::Device)),
        ("Mozilla/5.0\\t(X11)", Some(Ivt::Device)),
        ("curl/8.0\\u001f", Some(Ivt::Device)),
    ]
    .into_iter()
    .enumerate()
    {
        // The second time from the cache (each from its own IP, under the rate limits).
        for round in 0..2 {
            let json = req(
                &format!(r#"{{"ua":"{ua}","ip":"81.2.70.{}"}}"#, i * 2 + round),
                "",
            );
            assert_eq!(check(&mut c, &json, 1_000), want, "{json} (round {round})");
        }
    }
    for b in 0..=255u8 {
        let control = b < 0x20 || b == 0x7f;
        for at in [0, 15, 16, 40] {
            let mut s = vec![b'a'; 41];
            s[at] = b;
            assert_eq!(has_control(&s), control, "byte {b} at {at}");
        }
    }
}

#[test]
fn a_data_centre_range_is_its_own_reason() {
    let lists = Lists {
        ranges: cidr::Ranges::parse("3.5.140.0/22 datacenter\n10.0.0.0/8 reserved\n").unwrap(),
        ..Lists::shipped()
    };
    let mut c = Checker::new(&cfg());
    let json = req(&format!(r#"{{"ua":"{GOOD_UA}","ip":"3.5.141.7"}}"#), "");
    let r = decode_json(json.as_bytes()).unwrap();
    assert_eq!(c.check(&lists, &r, 0), Some(Ivt::DatacenterIp));
    assert_eq!(
        (Ivt::DatacenterIp.nbr(), Ivt::BotUa.nbr(), Ivt::RateIp.nbr()),
        (5, 3, 4)
    );
}

#[test]
fn the_shipped_ranges_hold_the_cloud_providers_snapshot() {
    let shipped = Lists::shipped();
    let tag = |ip: &str| shipped.ranges.tag(ip.parse().unwrap()).map(str::to_string);
    // AWS (EU Paris), Google Cloud, DigitalOcean, Azure (IPv4 and IPv6),
    // Oracle Cloud, Googlebot, as their lists had them in late 2023.
    for ip in [
        "3.5.141.7",
        "35.180.1.1",
        "34.64.65.1",
        "104.131.0.1",
        "20.36.0.1",
        "2603:1000::1",
        "129.146.0.1",
        "66.249.66.1",
    ] {
        assert_eq!(tag(ip).as_deref(), Some("datacenter"), "{ip}");
    }
    assert_eq!(tag("10.1.2.3").as_deref(), Some("reserved"));
    // The IAB examples' addresses and a residential one are not data
    // centres; nor are Google's public DNS and services and Cloudflare's
    // edge (left out: people's traffic comes through them).
    for ip in [
        "123.145.167.10",
        "64.124.253.1",
        "81.2.69.142",
        "8.8.8.8",
        "2a00:1450::1",
        "104.16.0.1",
    ] {
        assert_eq!(tag(ip), None, "{ip}");
    }
    assert!(shipped.ranges.len() > 6000, "{}", shipped.ranges.len());
}

#[test]
fn rates_per_ip_and_per_device_over_a_sliding_window() {
    let mut c = Checker::new(&cfg());
    let dev = format!(r#"{{"ua":"{GOOD_UA}","ip":"81.2.69.150"}}"#);
    // Five requests a minute from one IP pass, the sixth does not.
    for i in 0..5 {
        assert_eq!(check(&mut c, &req(&dev, ""), 60_000 + i), None, "{i}");
    }
    assert_eq!(check(&mut c, &req(&dev, ""), 60_010), Some(Ivt::RateIp));
    // Other IPs are not affected; two minutes later the IP is clean again.
    let other = format!(r#"{{"ua":"{GOOD_UA}","ip":"81.2.69.151"}}"#);
    assert_eq!(check(&mut c, &req(&other, ""), 60_020), None);
    assert_eq!(check(&mut c, &req(&dev, ""), 181_000), None);
    // A device id (user.id here) past three a minute, from many IPs.
    let mut hits = Vec::new();
    for i in 0..4 {
        let d = format!(r#"{{"ua":"{GOOD_UA}","ip":"81.2.70.{i}"}}"#);
        hits.push(check(
            &mut c,
            &req(&d, r#","user":{"id":"u-9"}"#),
            300_000 + i,
        ));
    }
    assert_eq!(hits, [None, None, None, Some(Ivt::RateDevice)]);
    // Off: nothing is counted.
    let mut off = Checker::new(&IvtConfig {
        enabled: false,
        ..cfg()
    });
    let bot = req(r#"{"ua":"Googlebot/2.1","ip":"10.0.0.1"}"#, "");
    assert_eq!(check(&mut off, &bot, 0), None);
}
