use super::*;
use std::borrow::Cow;

fn err(json: &str) -> RequestError {
    decode_json(json.as_bytes()).unwrap_err()
}

#[test]
fn fixtures_decode() {
    let dir = crate::testkit::fixtures::DIR;
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("fixtures present") {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("bid-request") {
            let body = std::fs::read(&p).unwrap();
            let r = decode_json(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            if name.contains("native") {
                // The spec's example elides its assets (`[ ... ]`): nothing
                // to fill, so the impression goes, noted, not the request.
                assert!(r.imp.is_empty(), "{name}");
                assert!(lenient::take().contains(&lenient::Dropped::NativeRequest));
            } else {
                assert!(!r.imp.is_empty(), "{name}");
            }
            n += 1;
        }
    }
    assert_eq!(n, 11);
}

#[test]
fn only_unanswerable_requests_are_errors_naming_the_field() {
    assert_eq!(err("{\"imp\":[{\"id\":\"1\",\"banner\":{}}]}").field, "id");
    assert_eq!(err("{\"id\":\"a\"}").field, "imp");
    assert_eq!(err("{\"id\":\"a\",\"imp\":[]}").field, "imp");
    assert_eq!(err("{\"id\":\"a\",\"imp\":null}").field, "imp");
    assert_eq!(err("not json").field, "body");
    assert_eq!(err("[1,2]").field, "body");
    assert_eq!(
        err("{\"id\":\"a\",\"imp\":[{\"id\":\"1\",\"banner\":{}}]} trailing").field,
        "body"
    );
    assert!(err("{}").to_json().contains("\"field\":\"id\""));
    // An id travels in every event the request makes: bounded.
    let long = "a".repeat(MAX_ID_BYTES + 1);
    let e = err(&format!(
        r#"{{"id":"{long}","imp":[{{"id":"1","banner":{{}}}}]}}"#
    ));
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("id", "longer than 1024 bytes")
    );
    let most = "a".repeat(MAX_ID_BYTES);
    assert!(decode_json(
        format!(r#"{{"id":"{most}","imp":[{{"id":"1","banner":{{}}}}]}}"#).as_bytes()
    )
    .is_ok());
}

/// Decodes `json` with both decoders (simd-json and serde_json); the
/// request and the fields whose values were dropped.
fn lenient(json: &str) -> (BidRequest<'static>, Vec<&'static str>) {
    let reference = decode_json(json.as_bytes()).map(|r| format!("{r:?}"));
    let ref_log: Vec<_> = lenient::take().iter().map(|d| d.label()).collect();
    let mut dec = JsonDecoder::default();
    let body = json.as_bytes().to_vec();
    let fast = dec.decode(&body).unwrap_or_else(|e| panic!("{json}: {e}"));
    let log: Vec<_> = lenient::take().iter().map(|d| d.label()).collect();
    assert_eq!(Ok(format!("{fast:?}")), reference, "{json}");
    assert_eq!(log, ref_log, "{json}");
    let owned: BidRequest<'static> =
        decode_json(Box::leak(json.as_bytes().to_vec().into_boxed_slice())).unwrap();
    lenient::clear();
    (owned, log)
}

#[test]
fn unusable_values_are_dropped_not_the_request() {
    let imp = |extra: &str| {
        format!(
            r#"{{"id":"a","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}},{{"id":"2",{extra}}}]}}"#
        )
    };
    // A bad value drops the value.
    let (r, log) = lenient(&imp(
        r#""banner":{"pos":-1,"w":"300","h":250.0},"bidfloor":-2"#,
    ));
    assert_eq!(log, ["imp.banner.pos", "imp.bidfloor"]);
    let b = r.imp[1].banner.as_ref().unwrap();
    assert_eq!(
        (b.pos, b.w, b.h, r.imp[1].bidfloor),
        (None, Some(300), Some(250), 0.0)
    );
    let (r, log) = lenient(&imp(
        r#""video":{"minduration":-1,"maxduration":30,"protocols":[2,"x",3,null],"mimes":null}"#,
    ));
    assert_eq!(
        log,
        [
            "imp.video.minduration|maxduration|rqddurs",
            "imp.video.protocols|protocol"
        ]
    );
    let v = r.imp[1].video.as_ref().unwrap();
    assert_eq!(
        (v.minduration, v.maxduration, v.protocols.clone()),
        (None, Some(30), vec![2, 3])
    );
    assert!(v.mimes.is_empty());
    // `null` is absent everywhere; numbers where strings belong are their text.
    let (r, log) = lenient(&imp(
        r#""banner":null,"native":{"request":{"assets":[{"id":1,"title":{}}]}},"pmp":null,"tagid":7"#,
    ));
    assert!(log.is_empty(), "{log:?}");
    assert!(r.imp[1].banner.is_none() && r.imp[1].pmp.is_none());
    assert_eq!(r.imp[1].tagid, "7");
    // A bad impression drops the impression: no id, a duplicate id, no media.
    let (r, log) = lenient(&imp(r#""video":{},"id":"1""#).replacen(r#""id":"2","#, "", 1));
    assert_eq!((r.imp.len(), log), (1, vec!["imp.id"]));
    // Impressions past MAX_IMPS are dropped (noted once); the first are kept.
    let many: Vec<String> = (0..MAX_IMPS + 72)
        .map(|i| format!(r#"{{"id":"{i}","banner":{{"w":1,"h":1}}}}"#))
        .collect();
    let (r, log) = lenient(&format!(r#"{{"id":"a","imp":[{}]}}"#, many.join(",")));
    assert_eq!((r.imp.len(), log), (MAX_IMPS, vec!["imp"]));
    assert_eq!(r.imp[MAX_IMPS - 1].id, (MAX_IMPS - 1).to_string());
    let long = format!(r#""video":{{}},"id":"{}""#, "i".repeat(MAX_ID_BYTES + 1));
    let (r, log) = lenient(&imp(&long).replacen(r#""id":"2","#, "", 1));
    assert_eq!((r.imp.len(), log), (1, vec!["imp.id"]));
    let (r, log) = lenient(&imp(r#""bidfloor":1"#));
    assert_eq!(
        (r.imp.len(), log),
        (1, vec!["imp.banner|video|audio|native"])
    );
    let (r, log) = lenient(r#"{"id":"a","imp":["x",{"id":"1","banner":"big"}]}"#);
    assert_eq!(
        (r.imp.len(), log),
        (
            0,
            vec![
                "imp",
                "imp.banner|video|audio|native",
                "imp.banner|video|audio|native"
            ]
        )
    );
    // Contradictions: site beside app keeps the site; an unknown auction
    // type is taken as first price; a deal without an id is dropped.
    let (r, log) = lenient(
        r#"{"id":"a","at":7,"site":{"id":5},"app":{"id":"x"},"device":{"devicetype":"4","geo":[]},"user":{"data":null},"cur":["USD",2,{}],"imp":[{"id":"1","banner":{},"pmp":{"deals":[{"bidfloor":1},{"id":"d","bidfloor":"x"}]}}]}"#,
    );
    assert_eq!(
        log,
        [
            "device|user.geo",
            "wseat|bseat|cur|bcat|badv|bapp",
            "imp.pmp.deals.bidfloor",
            "app",
            "at",
            "imp.pmp.deals"
        ]
    );
    assert_eq!(
        (r.at, r.app.is_none(), r.site.as_ref().unwrap().id.as_ref()),
        (1, true, "5")
    );
    assert_eq!(r.cur, ["USD", "2"]);
    assert_eq!(r.device.as_ref().unwrap().devicetype, Some(4));
    let deals = &r.imp[0].pmp.as_ref().unwrap().deals;
    assert_eq!(
        (deals.len(), deals[0].id.as_ref(), deals[0].bidfloor),
        (1, "d", 0.0)
    );
}

#[test]
fn unknown_fields_and_escapes_tolerated() {
    let r = decode_json(br#"{"id":"a\"b","imp":[{"id":"1","native":{"request":"{\"x\":1,\"assets\":[{\"id\":4,\"title\":{\"len\":9}}]}"},"ext":{"zz":[1,2]}}],"ext":{"q":1},"source":{"fd":1}}"#)
        .unwrap();
    assert_eq!(r.id, "a\"b");
    let spec = r.imp[0].native.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(spec.assets[0].id, 4);
    assert_eq!(r.at, 2, "second price is the default");
    assert_eq!(r.imp[0].bidfloorcur, "USD");
}

#[test]
fn string_lists_borrow_from_the_body_unless_escaped() {
    let r = decode_json(
        br#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"cur":["USD","E\u0055R"],"bcat":["IAB25"],"badv":["x.example"]}"#,
    )
    .unwrap();
    assert!(matches!(r.cur[0], Cow::Borrowed("USD")));
    assert!(matches!(r.cur[1], Cow::Owned(ref s) if s == "EUR"));
    assert!(matches!(r.bcat[0], Cow::Borrowed("IAB25")));
    assert!(matches!(r.badv[0], Cow::Borrowed("x.example")));
}

#[test]
fn strings_borrow_from_the_body_unless_escaped() {
    let r = decode_json(br#"{"id":"auc-1","imp":[{"id":"1","tagid":"t\/1","banner":{"w":1,"h":1}}],"site":{"id":"s","page":"https://p.example/"}}"#)
        .unwrap();
    assert!(matches!(r.id, Cow::Borrowed("auc-1")));
    assert!(matches!(r.imp[0].id, Cow::Borrowed("1")));
    assert!(matches!(r.imp[0].tagid, Cow::Owned(ref s) if s == "t/1"));
    assert!(matches!(
        r.site.as_ref().unwrap().page,
        Cow::Borrowed("https://p.example/")
    ));
}

/// The fast decoder gives what the reference decoder gives: the same request,
/// or an error naming the same field.
fn same_as_reference(body: &[u8]) {
    let mut fast = JsonDecoder::default();
    let a = fast.decode(body).map(|r| format!("{r:?}"));
    let b = decode_json(body).map(|r| format!("{r:?}"));
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(body)),
        (Err(a), Err(b)) => assert_eq!(a.field, b.field, "{}", String::from_utf8_lossy(body)),
        (a, b) => panic!(
            "{}: fast {:?}, reference {:?}",
            String::from_utf8_lossy(body),
            a.map_err(|e| e.field),
            b.map_err(|e| e.field)
        ),
    }
}

#[test]
#[allow(clippy::useless_format)] // one spelling for every document in the list
fn fast_decoder_agrees_with_the_reference_on_fixtures_and_odd_documents() {
    for (name, body) in crate::testkit::fixtures::bid_requests_short() {
        same_as_reference(&body);
        // And it took the fast path: strings borrow from the decoder's copy.
        let mut fast = JsonDecoder::default();
        let r = fast.decode(&body).unwrap();
        let at = body.as_ptr_range();
        assert!(matches!(r.id, Cow::Borrowed(_)), "{name}");
        assert!(
            !at.contains(&r.id.as_ptr()),
            "{name}: decoded by the fallback"
        );
    }
    let imp = r#""imp":[{"id":"1","banner":{"w":300,"h":250}}]"#;
    let odd = [
        format!(r#"{{"id":"a",{imp}}} x"#),
        format!(r#"{{"id":"a",{imp}}}  "#),
        format!(r#"{{"id":"a",{imp},"id":"b"}}"#),
        format!(r#"{{"id":"a\u00e9\ud83d\ude00",{imp}}}"#),
        format!(r#"{{"id":"a\ud800",{imp}}}"#),
        format!(r#"{{"id":"a",{imp},"tmax":01}}"#),
        format!(r#"{{"id":"a",{imp},"tmax":-1}}"#),
        format!(r#"{{"id":"a",{imp},"tmax":1.5}}"#),
        format!(r#"{{"id":"a",{imp},"tmax":99999999999}}"#),
        format!(r#"{{"id":"a",{imp},"test":256}}"#),
        format!(r#"{{"id":"a",{imp},"cur":null}}"#),
        format!(r#"{{"id":"a",{imp},"cur":["USD",]}}"#),
        format!(r#"{{"id":"a",{imp},"ext":{{"a":[1,2,{{"b":null}}],"c":1e999}}}}"#),
        format!(
            r#"{{"id":"a","imp":[{{"id":"1","bidfloor":0.1000000000000000055511151231257827}}]}}"#
        ),
        format!(r#"{{"id":"a","imp":[{{"id":"1","bidfloor":1.7976931348623157e308}}]}}"#),
        format!(r#"{{"id":"a","imp":[{{"id":"1","bidfloor":"1"}}]}}"#),
        format!(r#"{{"id":"a",{imp},"site":{{"page":"p"}},"app":{{"bundle":"b"}}}}"#),
        format!(r#"{{"id":"a",{imp}"#),
        format!(r#"{{"id":"a","imp":[]}}"#),
        "[]".to_string(),
        "null".to_string(),
        String::new(),
        format!("{{\"id\":\"a\x01\",{imp}}}"),
    ];
    for body in odd {
        same_as_reference(body.as_bytes());
    }
    same_as_reference(b"{\"id\":\"\xff\",\"imp\":[{\"id\":\"1\"}]}");
}

#[test]
fn deep_nesting_is_decoded_without_recursing_to_a_crash() {
    for depth in [100, 129, 100_000] {
        let body = format!(
            r#"{{"id":"a","imp":[{{"id":"1","banner":{{"w":1,"h":1}}}}],"ext":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let mut fast = JsonDecoder::default();
        assert_eq!(
            fast.decode(body.as_bytes()).unwrap().imp.len(),
            1,
            "depth {depth}"
        );
        same_as_reference(body.as_bytes());
    }
}

#[test]
fn consent_strings_that_do_not_decode_are_noted() {
    let (r, log) = lenient(
        r#"{"id":"a","imp":[{"id":"1","banner":{}}],"regs":{"gdpr":1,"gpp":"nope","gpp_sid":[2]},"user":{"consent":"BOgus"}}"#,
    );
    assert_eq!(log, vec!["user.consent|ext.consent, regs.gpp"]);
    assert!(r.consent.tcf.is_none());
    let tc = crate::testkit::tcf::Tc {
        purposes: vec![1, 3, 4],
        vendors: vec![9],
        restrictions: vec![],
    }
    .encode();
    let (r, log) = lenient(&format!(
        r#"{{"id":"a","imp":[{{"id":"1","banner":{{}}}}],"regs":{{"gdpr":1}},"user":{{"ext":{{"consent":"{tc}"}}}}}}"#
    ));
    assert!(log.is_empty(), "{log:?}");
    assert!(r.consent.tcf_allows(9));
}
