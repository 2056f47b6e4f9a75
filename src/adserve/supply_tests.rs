//! Supply chain rules (`source.schain`): complete chains required, sellers
//! and seller domains blocked.

use super::tests::{banner, run, st, winner};
use crate::index::{Index, IndexError};

const CAMPAIGNS: &str = r#"
[[campaign]]
id = 1
name = "needs a complete chain, blocks a reseller and a domain"
adomain = ["alpha.com"]
bid = { model = "cpm", amount = 2.0 }
budget = { daily = 100.0, lifetime = 1000.0 }
targeting = { require_complete_schain = true, blocked_sellers = ["Reseller.example:9"], blocked_seller_domains = ["www.shady.example"] }
[[campaign.creatives]]
id = "c1"
format = "banner"
w = 300
h = 250
image_url = "https://cdn.alpha.com/a.png"
landing_url = "https://alpha.com/"

[[campaign]]
id = 2
name = "buys anything"
adomain = ["beta.com"]
bid = { model = "cpm", amount = 1.0 }
budget = { daily = 100.0, lifetime = 1000.0 }
[[campaign.creatives]]
id = "c2"
format = "banner"
w = 300
h = 250
image_url = "https://cdn.beta.com/b.png"
landing_url = "https://beta.com/"
"#;

fn chain(complete: u8, nodes: &str) -> String {
    banner(&format!(
        r#","source":{{"schain":{{"complete":{complete},"ver":"1.0","nodes":[{nodes}]}}}}"#
    ))
}

const PUB: &str = r#"{"asi":"exchange.example","sid":"123","hp":1}"#;

#[test]
fn a_complete_chain_is_required_and_blocked_sellers_are_avoided() {
    let ix = Index::load(CAMPAIGNS, "t.toml", 1).unwrap();
    let mut st = st();
    let w = |json: &str, st: &mut _| winner(&run(&ix, st, json)).map(|(c, _)| c);
    // Complete: the better campaign wins.
    assert_eq!(w(&chain(1, PUB), &mut st).as_deref(), Some("1"));
    // The 2.5 location counts the same.
    let ext = banner(&format!(
        r#","source":{{"ext":{{"schain":{{"complete":1,"nodes":[{PUB}]}}}}}}"#
    ));
    assert_eq!(w(&ext, &mut st).as_deref(), Some("1"));
    // No chain, an incomplete one, or a node without its seller id: the
    // campaign sits out, the other bids.
    for json in [
        banner(""),
        chain(0, PUB),
        chain(1, r#"{"asi":"exchange.example","hp":1}"#),
        chain(1, ""),
    ] {
        assert_eq!(w(&json, &mut st).as_deref(), Some("2"), "{json}");
    }
    // A blocked seller (system domain case-insensitive) or seller domain
    // (as `asi` or as the node's `domain`, `www.` ignored) anywhere.
    for node in [
        r#"{"asi":"RESELLER.example","sid":"9","hp":1}"#,
        r#"{"asi":"shady.example","sid":"1","hp":1}"#,
        r#"{"asi":"ok.example","sid":"1","hp":1,"domain":"shady.example"}"#,
    ] {
        let json = chain(1, &format!("{PUB},{node}"));
        assert_eq!(w(&json, &mut st).as_deref(), Some("2"), "{node}");
    }
    // Same seller id at another system: not blocked.
    let json = chain(
        1,
        &format!(r#"{PUB},{{"asi":"other.example","sid":"9","hp":1}}"#),
    );
    assert_eq!(w(&json, &mut st).as_deref(), Some("1"));
}

#[test]
fn a_blocked_seller_must_name_its_system() {
    let bad = CAMPAIGNS.replace("\"Reseller.example:9\"", "\"9\"");
    match Index::load(&bad, "t.toml", 1) {
        Err(IndexError::Invalid { id: 1, message }) => {
            assert!(message.contains("blocked_sellers"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
