//! Consent strings in the decision: GDPR requests are personalised (user
//! id for caps and events, segments) only with our TCF vendor's consent to
//! purposes 1, 3 and 4; GPP US opt-outs mean contextual bidding.

use super::tests::{ran, st, TARGETED};
use super::{BidderConfig, Now};
use crate::index::Index;
use crate::openrtb::{decode_json, Contextual as C};
use crate::testkit::tcf::Tc;

const VENDOR: u16 = 755;

fn cfg(vendor: u16) -> BidderConfig {
    BidderConfig {
        public_url: "http://bidder.test".into(),
        tcf_vendor_id: vendor,
        ..Default::default()
    }
}

/// The targeted request (segment `auto`) with `regs` and `user` additions.
fn req(regs: &str, user: &str) -> String {
    format!(
        r#"{{"id":"r","imp":[{{"id":"1","banner":{{"w":320,"h":50}}}}],"app":{{"bundle":"com.news","cat":["IAB2-3"]}},"device":{{"devicetype":4,"os":"iOS","geo":{{"country":"USA"}}}},"regs":{{{regs}}},"user":{{"id":"u1","data":[{{"id":"d","segment":[{{"id":"auto"}}]}}]{user}}}}}"#
    )
}

#[test]
fn gdpr_requests_are_personalised_only_with_our_vendors_consent() {
    let ix = Index::load(TARGETED, "t.toml", 1).unwrap();
    let yes = Tc {
        purposes: vec![1, 2, 3, 4],
        vendors: vec![VENDOR],
        restrictions: vec![],
    };
    let no4 = Tc {
        purposes: vec![1, 2, 3],
        ..yes.clone()
    }
    .encode();
    let yes = yes.encode();
    for (regs, user, vendor, want) in [
        // 2.6 location, 2.5 location, GPP section 2: personalised.
        (
            r#""gdpr":1"#.to_string(),
            format!(r#","consent":"{yes}""#),
            VENDOR,
            None,
        ),
        (
            r#""ext":{"gdpr":1}"#.into(),
            format!(r#","ext":{{"consent":"{yes}"}}"#),
            VENDOR,
            None,
        ),
        (
            // GPP header for sections 2 and 6, then the TC string and US Privacy.
            format!(r#""gpp":"DBACNY~{yes}~1YNN","gpp_sid":[2,6]"#),
            String::new(),
            VENDOR,
            None,
        ),
        // No vendor id configured, another vendor, purpose 4 missing, no
        // string, or one that does not decode: contextual.
        (
            r#""gdpr":1"#.into(),
            format!(r#","consent":"{yes}""#),
            0,
            Some(C::Gdpr),
        ),
        (
            r#""gdpr":1"#.into(),
            format!(r#","consent":"{yes}""#),
            12,
            Some(C::Gdpr),
        ),
        (
            r#""gdpr":1"#.into(),
            format!(r#","consent":"{no4}""#),
            VENDOR,
            Some(C::Gdpr),
        ),
        (r#""gdpr":1"#.into(), String::new(), VENDOR, Some(C::Gdpr)),
        (
            r#""gdpr":1"#.into(),
            r#","consent":"BOgus""#.into(),
            VENDOR,
            Some(C::Gdpr),
        ),
        // Consent without GDPR applying changes nothing.
        (
            r#""gdpr":0"#.into(),
            r#","consent":"BOgus""#.into(),
            VENDOR,
            None,
        ),
        // GPP US opt-outs: US Privacy in GPP, US National, California.
        (
            r#""gpp":"DBABTA~1YYN","gpp_sid":[6]"#.into(),
            String::new(),
            VENDOR,
            Some(C::UsPrivacy),
        ),
        (
            r#""gpp":"DBABLA~BVVVVVVVVWA","gpp_sid":[7]"#.into(),
            String::new(),
            VENDOR,
            Some(C::UsPrivacy),
        ),
        (
            r#""gpp":"DBABBg~BVVVVVVY","gpp_sid":[8]"#.into(),
            String::new(),
            VENDOR,
            Some(C::UsPrivacy),
        ),
        (
            r#""gpp":"DBABLA~BAAAAAAAAQA","gpp_sid":[7]"#.into(),
            String::new(),
            VENDOR,
            None,
        ),
    ] {
        let json = req(&regs, &user);
        let r = decode_json(json.as_bytes()).unwrap();
        let d = ran(
            &ix,
            &mut st(),
            &r,
            &cfg(vendor),
            Now::at(super::tests::NOON),
        );
        assert_eq!(d.contextual, want, "{json} vendor {vendor}");
        // The only campaign targets segment `auto`: it bids only when
        // segments may be used.
        assert_eq!(d.response.is_some(), want.is_none(), "{json}");
    }
}
