//! Property tests: no input reachable from a client can panic the HTTP
//! parser, the body decoders, or the OpenRTB decoders; and the parser's answer
//! never depends on how the bytes were split across reads. Failing cases are
//! kept by proptest in tests/fuzz.proptest-regressions.
#![allow(clippy::unwrap_used)]

use adshard::http::{body::gunzip, ChunkedDecoder, Framing, Request, Status, EMPTY_HEADER};
use proptest::prelude::*;

fn parse(buf: &[u8]) -> Result<Status<usize>, adshard::http::HttpError> {
    let mut h = [EMPTY_HEADER; 16];
    let mut r = Request::new(&mut h);
    let res = r.parse(buf);
    if let Ok(Status::Complete(_)) = res {
        // Framing must not panic on anything the parser accepts.
        let _ = Framing::of(&r, 4096);
    }
    res
}

/// Byte strings that look like HTTP often enough to reach deep states.
fn http_like() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::collection::vec(
        prop_oneof![
            Just(b"GET ".to_vec()),
            Just(b"POST /openrtb2/bid?x=1 ".to_vec()),
            Just(b"HTTP/1.1".to_vec()),
            Just(b"HTTP/1.0".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"Host: a\r\n".to_vec()),
            Just(b"Content-Length: 3\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Content-Encoding: gzip\r\n".to_vec()),
            Just(b": ".to_vec()),
            Just(b" ".to_vec()),
            prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..24,
    );
    pieces.prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&buf);
    }

    #[test]
    fn parser_never_panics_on_http_like(buf in http_like()) {
        let _ = parse(&buf);
    }

    #[test]
    fn prefixes_of_a_complete_head_are_partial(buf in http_like()) {
        // If the whole is a complete head, every proper prefix is Partial or
        // the same error: the answer never depends on read boundaries.
        if let Ok(Status::Complete(n)) = parse(&buf) {
            for i in 0..n {
                prop_assert_eq!(parse(&buf[..i]), Ok(Status::Partial), "prefix {}", i);
            }
        }
    }

    #[test]
    fn chunked_decoder_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let split = split.min(buf.len());
        if let Ok(n) = d.decode(&buf[..split], &mut out, 1024) {
            if !d.is_done() {
                prop_assert_eq!(n, split);
                let _ = d.decode(&buf[split..], &mut out, 1024);
            }
        }
        prop_assert!(out.len() <= 1024);
    }

    #[test]
    fn gunzip_never_panics(buf in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut out = Vec::new();
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        gz.extend_from_slice(&buf);
        let _ = gunzip(&buf, &mut out, 1024);
        let _ = gunzip(&gz, &mut out, 1024);
        prop_assert!(out.len() <= 1024);
    }

    #[test]
    fn openrtb_json_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = adshard::openrtb::decode_json(&buf);
        let _ = adshard::openrtb::JsonDecoder::default().decode(&buf);
    }

    #[test]
    fn bid_responses_encode_as_serde_json_does(
        texts in prop::collection::vec(".{0,40}", 8),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        price in prop_oneof![any::<f64>(), 0.0..1000.0f64],
        nums in (any::<Option<u16>>(), any::<Option<u32>>(), any::<Option<u32>>(), any::<u8>()),
        bids in 0usize..3,
    ) {
        use adshard::openrtb::{Bid, BidResponse, SeatBid};
        use std::borrow::Cow;
        // Controls and quotes among arbitrary Unicode, in the markup.
        let adm = String::from_utf8_lossy(&bytes).into_owned() + &texts[7];
        let bid = Bid {
            id: Cow::Owned(texts[0].clone()),
            impid: Cow::Owned(texts[1].clone()),
            price,
            nurl: texts[2].clone(),
            burl: texts[3].clone(),
            lurl: String::new(),
            adm,
            adomain: Cow::Owned(vec![texts[4].clone(), "a\"b".into()]),
            cid: texts[5].clone(),
            crid: Cow::Owned(texts[6].clone()),
            cat: Cow::Owned(vec![]),
            cattax: nums.0,
            w: nums.1,
            h: nums.2,
            dealid: nums.1.map(|_| Cow::Owned(texts[0].clone())),
            mtype: nums.3,
        };
        let resp = BidResponse {
            id: Cow::Owned(texts[1].clone()),
            seatbid: vec![SeatBid { seat: Cow::Borrowed("s\u{7f}"), bid: vec![bid; bids] }; bids.min(2)],
            bidid: Cow::Owned(texts[2].clone()),
            cur: Cow::Borrowed("USD"),
        };
        let mut ours = Vec::new();
        adshard::openrtb::encode_json(&resp, &mut ours);
        prop_assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&resp).unwrap());
    }

    #[test]
    fn capnp_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = adshard::openrtb::capnp_codec::decode_request(&buf);
        let _ = adshard::events::decode(&buf);
    }

    #[test]
    fn mutated_fixtures_decode_or_fail_cleanly(idx in 0usize..11, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let reqs = adshard::testkit::fixtures::bid_requests();
        let mut body = reqs[idx % reqs.len()].1.clone();
        let i = pos.index(body.len());
        body[i] = byte;
        // The shard's decoder (simd-json) answers as the reference does.
        let mut fast = adshard::openrtb::JsonDecoder::default();
        let quick = fast.decode(&body).map(|r| format!("{r:?}")).map_err(|e| e.field);
        let reference = adshard::openrtb::decode_json(&body);
        prop_assert_eq!(quick, reference.as_ref().map(|r| format!("{r:?}")).map_err(|e| e.field.clone()));
        match reference {
            Ok(req) => {
                // Whatever decodes must be decidable without panicking.
                let ix = adshard::index::Index::load(adshard::api::EMBEDDED_CAMPAIGNS, "embedded", 1).unwrap();
                let cfg = adshard::config::BidderConfig::default();
                let mut st = adshard::adserve::ShardState::new(0, 1, &cfg);
                let d = adshard::adserve::decide(&ix, &mut st, &req, &cfg, adshard::adserve::Now::wall());
                // And whatever is decided must render.
                let keys = adshard::adserve::signing::NoticeKeys::new(&[[1u8; 32]], 3600);
                let _ = adshard::adserve::bid_response(&ix, &req, &d, &cfg, &keys);
            }
            Err(e) => prop_assert!(!e.field.is_empty() && !e.reason.is_empty()),
        }
    }
}
