use super::*;

pub(crate) const SMALL: &str = r#"
[currencies]
EUR = 1.1

[[campaign]]
id = 1
name = "a"
adomain = ["a.com"]
bid = { model = "cpm", amount = 2.0 }
budget = { daily = 100.0, lifetime = 1000.0 }
targeting = { countries = ["USA"], os = ["iOS"] }
[[campaign.creatives]]
id = "a1"
format = "banner"
w = 300
h = 250
image_url = "https://cdn/a.png"
landing_url = "https://a.com/"

[[campaign]]
id = 2
name = "b"
adomain = ["b.com"]
bid = { model = "cpm", amount = 1.0 }
budget = { daily = 100.0, lifetime = 1000.0 }
targeting = { deals = ["D1"] }
[[campaign.creatives]]
id = "b1"
format = "video"
video_url = "https://cdn/b.mp4"
duration = 15
landing_url = "https://b.com/"
"#;

#[test]
fn builds_posting_lists() {
    let ix = Index::load(SMALL, "t.toml", 1).unwrap();
    assert_eq!(ix.len(), 2);
    assert!(ix.open.get(0) && !ix.open.get(1));
    assert!(ix.deals["D1"].get(1));
    assert!(ix.format_sets[&FormatKey::Banner(300, 250)].get(0));
    // Campaign 1 targets the USA and iOS; campaign 2 targets neither.
    let listed = |b: Option<&Bitset>| b.map(|b| b.iter().collect::<Vec<_>>());
    assert_eq!(listed(ix.country.by("USA")), Some(vec![0]));
    assert_eq!(listed(ix.country.by("FRA")), None);
    assert_eq!(listed(Some(ix.country.any())), Some(vec![1]));
    assert_eq!(listed(ix.os.by("ios")), Some(vec![0]));
    assert!(ix.region.untargeted() && !ix.os.untargeted());
    assert!(ix.postings_bytes() > 0);
    assert_eq!(ix.to_usd(10.0, "EUR"), Some(11.0));
    assert_eq!(ix.to_usd(10.0, "JPY"), None);
}

#[test]
fn bad_files_are_refused_with_reason() {
    let e = Index::load("[[campaign]]\nid = 1\n", "x.toml", 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("campaign[0]") && e.contains("name"), "{e}");
    let e = Index::load(&SMALL.replace("amount = 2.0", "amount = -2.0"), "x.toml", 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("campaign 1") && e.contains("bid.amount"), "{e}");
    let e = Index::load(&SMALL.replace("id = 2\n", "id = 1\n"), "x.toml", 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate"), "{e}");
    let e = Index::load(&SMALL.replace("duration = 15\n", ""), "x.toml", 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("creative b1"), "{e}");
    // A cap's window past what a stored count outlives is refused, not
    // left to overflow into a cap that never holds.
    let capped = SMALL.replace(
        "name = \"a\"\n",
        "name = \"a\"\nfrequency_cap = { max = 1, window_secs = 9223372036854775807 }\n",
    );
    let e = Index::load(&capped, "x.toml", 1).unwrap_err().to_string();
    assert!(
        e.contains("campaign 1") && e.contains("window_secs is at most"),
        "{e}"
    );
    let capped = capped.replace("9223372036854775807", "630720000");
    assert!(Index::load(&capped, "x.toml", 1).is_ok());
    // A creative id travels in every event of its bids: bounded.
    let long = format!("id = \"{}\"", "c".repeat(MAX_CREATIVE_ID_BYTES + 1));
    let e = Index::load(&SMALL.replace("id = \"b1\"", &long), "x.toml", 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("campaign 2") && e.contains("creative id longer than 1024"),
        "{e}"
    );
    let ok = format!("id = \"{}\"", "c".repeat(MAX_CREATIVE_ID_BYTES));
    assert!(Index::load(&SMALL.replace("id = \"b1\"", &ok), "x.toml", 1).is_ok());
    let e = Index::load("{\"campaign\":[{\"id\":\"x\"}]}", "x.json", 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("campaign[0].id"), "{e}");
}

#[test]
fn bitset_iter() {
    let b = Bitset::from_positions(200, vec![199, 0, 64, 63]);
    assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 63, 64, 199]);
    assert!(!b.is_empty());
    assert!(Bitset::new(200).is_empty());
}

#[test]
fn keys_normalise_and_borrow_when_already_normal() {
    use std::borrow::Cow;
    assert_eq!(norm_domain(" WWW.News.Example "), "news.example");
    assert_eq!(norm_domain("www.news.example"), "news.example");
    assert_eq!(norm_domain("wwwnews.example"), "wwwnews.example");
    assert_eq!(norm_upper("usa"), "USA");
    assert_eq!(norm_lower("iOS"), "ios");
    // Already normal: no allocation.
    assert!(matches!(
        norm_domain("www.news.example"),
        Cow::Borrowed("news.example")
    ));
    assert!(matches!(norm_upper("USA"), Cow::Borrowed(_)));
    assert!(matches!(norm_lower("ios"), Cow::Borrowed(_)));
    assert_eq!(seller_key("EXCHANGE.com: 42 "), "exchange.com:42");
}
