use super::*;

#[test]
fn request_roundtrips_through_capnp() {
    let dir = crate::testkit::fixtures::DIR;
    for name in [
        "bid-request-2.5_mobile.json",
        "bid-request-2.6_pmp-with-direct-deal.json",
        "bid-request-2.6_video.json",
    ] {
        let json = std::fs::read(format!("{dir}/{name}")).unwrap();
        let a = decode_json(&json).unwrap();
        let mut wire = Vec::new();
        encode_request(&a, &mut wire);
        let b = decode_request(&wire).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.imp.len(), b.imp.len());
        assert_eq!(a.bcat, b.bcat);
        assert_eq!(a.imp[0].bidfloor, b.imp[0].bidfloor);
        assert_eq!(
            a.imp[0].pmp.as_ref().map(|p| p.deals.len()),
            b.imp[0].pmp.as_ref().map(|p| p.deals.len())
        );
        assert_eq!(
            a.device.as_ref().map(|d| d.os.clone()),
            b.device.as_ref().map(|d| d.os.clone())
        );
    }
}

#[test]
fn corpus_media_and_supply_chain_roundtrip() {
    let mut n = 0;
    for (name, body) in crate::testkit::fixtures::corpus_requests() {
        let a = decode_json(&body).unwrap();
        let mut wire = Vec::new();
        encode_request(&a, &mut wire);
        let b = decode_request(&wire).unwrap();
        assert_eq!(a.imp.len(), b.imp.len(), "{name}");
        for (x, y) in a.imp.iter().zip(&b.imp) {
            let spec = |i: &Imp<'_>| i.native.as_ref().and_then(|n| n.spec.clone());
            assert_eq!(spec(x), spec(y), "{name}: native");
            let audio = |i: &Imp<'_>| {
                i.audio
                    .as_ref()
                    .map(|a| (a.protocols.clone(), a.mimes.join(","), a.minduration))
            };
            assert_eq!(audio(x), audio(y), "{name}: audio");
            let video = |i: &Imp<'_>| {
                i.video
                    .as_ref()
                    .map(|v| (v.protocols.clone(), v.rqddurs.clone(), v.plcmt()))
            };
            assert_eq!(video(x), video(y), "{name}: video");
            assert_eq!(x.secure, y.secure, "{name}: secure");
        }
        let chain = |r: &BidRequest<'_>| {
            r.schain().map(|c| {
                let nodes: Vec<String> = c
                    .nodes
                    .iter()
                    .map(|n| format!("{}:{}", n.asi, n.sid))
                    .collect();
                (c.is_complete(), nodes)
            })
        };
        assert_eq!(chain(&a), chain(&b), "{name}: schain");
        n += 1;
    }
    assert!(n >= 20);
}

#[test]
fn hostile_or_invalid_capnp_is_400_material() {
    assert_eq!(decode_request(b"\x00\x00").unwrap_err().field, "body");
    assert_eq!(
        decode_request(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f])
            .unwrap_err()
            .field,
        "body"
    );
    // Well-formed but invalid: no impressions.
    let mut wire = Vec::new();
    encode_request(
        &BidRequest {
            id: "x".into(),
            ..Default::default()
        },
        &mut wire,
    );
    assert_eq!(decode_request(&wire).unwrap_err().field, "imp");
}

#[test]
fn response_roundtrips() {
    let r = BidResponse {
        id: "a".into(),
        bidid: "b".into(),
        cur: "USD".into(),
        seatbid: vec![SeatBid {
            seat: "s".into(),
            bid: vec![Bid {
                id: "1".into(),
                impid: "1".into(),
                price: 1.5,
                dealid: Some("d".into()),
                w: Some(300),
                h: Some(250),
                cattax: Some(1),
                mtype: 1,
                adomain: vec!["x.com".to_string()].into(),
                ..Default::default()
            }],
        }],
    };
    let mut wire = Vec::new();
    encode_response(&r, &mut wire);
    assert_eq!(decode_response(&wire).unwrap(), r);
}
