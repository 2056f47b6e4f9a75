use super::*;
use crate::testkit::tcf::Tc;

const VENDOR: u16 = 755;

fn allows(tc: &Tc) -> bool {
    let (c, errors) = Consent::read(&tc.encode(), "");
    assert!(errors.is_empty(), "{errors:?}");
    c.tcf_allows(VENDOR)
}

#[test]
fn personalisation_needs_purposes_1_3_4_and_our_vendor() {
    let ok = Tc {
        purposes: vec![1, 2, 3, 4, 7],
        vendors: vec![2, VENDOR, 900],
        restrictions: vec![],
    };
    assert!(allows(&ok));
    let (c, _) = Consent::read(&ok.encode(), "");
    assert!(!c.tcf_allows(754), "another vendor");
    assert!(
        !allows(&Tc {
            purposes: vec![1, 3],
            ..ok.clone()
        }),
        "purpose 4 missing"
    );
    assert!(
        !allows(&Tc {
            purposes: vec![3, 4],
            ..ok.clone()
        }),
        "purpose 1 missing"
    );
    assert!(
        !allows(&Tc {
            vendors: vec![2, 900],
            ..ok.clone()
        }),
        "vendor missing"
    );
    // A publisher restriction "not allowed" (type 0) on purpose 3 for us.
    assert!(!allows(&Tc {
        restrictions: vec![(3, 0, VENDOR)],
        ..ok.clone()
    }));
    // "Require consent" (type 1) we meet; a restriction on another vendor
    // or another purpose does not touch us.
    assert!(allows(&Tc {
        restrictions: vec![(3, 1, VENDOR), (4, 0, 2), (7, 0, VENDOR)],
        ..ok.clone()
    }));
}

#[test]
fn published_example_strings() {
    // The IAB TCF v2 example decoded by the IAB's reference libraries:
    // purposes 1-3 and vendors 2, 6, 8 consented; no purpose 4.
    let (c, e) = Consent::read("COvFyGBOvFyGBAbAAAENAPCAAOAAAAAAAAAAAEEUACCKAAA", "");
    assert!(e.is_empty());
    let t = c.tcf.as_ref().unwrap();
    assert_eq!(t.cmp_id, 27);
    assert_eq!(t.purposes_consent, [1, 2, 3]);
    assert_eq!(t.vendors_consent, [2, 6, 8]);
    assert!(!c.tcf_allows(8), "purpose 4 not consented");
    // The GPP specification's example: TCF EU v2 (no consents) and US
    // Privacy 1YNN (no opt-out).
    let (c, e) = Consent::read(
        "",
        "DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN",
    );
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(c.tcf.as_ref().unwrap().cmp_id, 31);
    assert!(!c.us_opt_out && !c.tcf_allows(8));
    // A user.consent string wins over GPP's section 2.
    let ours = Tc {
        purposes: vec![1, 3, 4],
        vendors: vec![VENDOR],
        restrictions: vec![],
    }
    .encode();
    let (c, _) = Consent::read(
        &ours,
        "DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN",
    );
    assert!(c.tcf_allows(VENDOR));
}

#[test]
fn gpp_us_sections_opt_out() {
    for (gpp, out) in [
        ("DBABTA~1YYN", true), // US Privacy v1 in GPP: opted out of sale
        ("DBABTA~1YNN", false),
        ("DBABLA~BVVVVVVVVWA", true),  // US National v1: opted out
        ("DBABLA~BAAAAAAAAQA", false), // US National v1: not applicable
        ("DBABBg~BVVVVVVY", true),     // California: opted out
        ("DBABRg~BAAAABA", false),     // Virginia: not applicable
    ] {
        let (c, e) = Consent::read("", gpp);
        assert!(e.is_empty(), "{gpp}: {e:?}");
        assert_eq!(c.us_opt_out, out, "{gpp}");
    }
}

#[test]
fn strings_that_do_not_decode_give_nothing() {
    for (tc, gpp) in [
        ("garbage", ""),
        ("", "not-gpp"),
        ("", "DBABMA~x"),
        ("C", ""),
    ] {
        let (c, e) = Consent::read(tc, gpp);
        assert_eq!(e.len(), 1, "{tc:?} {gpp:?}");
        assert!(c.tcf.is_none() && !c.us_opt_out);
    }
}
