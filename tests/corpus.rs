//! The request corpus (tests/fixtures/corpus, described in its README):
//! requests assembled from the IAB OpenRTB 2.5/2.6 and Native 1.2 examples
//! and the variations real exchanges send, each with the answer it must
//! get (expect.json). Every answer is checked as an exchange would check
//! it: ids, prices, `mtype` against what the impression offered, native
//! markup against the native request's asset ids and version, VAST and
//! DAAST documents parsed as XML with the version the player asked for,
//! https on secure impressions.
#![allow(clippy::unwrap_used)]

use adshard::testkit::*;
use serde_json::Value;

const DIR: &str = fixtures::CORPUS_DIR;

/// The native request of an impression, as an object.
fn native_request(imp: &Value) -> Option<Value> {
    let r = &imp["native"]["request"];
    let v = match r {
        Value::String(s) => serde_json::from_str(s).ok()?,
        Value::Object(_) => r.clone(),
        _ => return None,
    };
    Some(v.get("native").cloned().unwrap_or(v))
}

fn check_native(name: &str, imp: &Value, adm: &str, e: &Value) {
    let adm: Value = serde_json::from_str(adm).unwrap_or_else(|e| panic!("{name}: adm: {e}"));
    let ver = e["native_ver"].as_str();
    let body = if ver == Some("1.0") {
        adm.get("native")
            .unwrap_or_else(|| panic!("{name}: 1.0 is wrapped"))
    } else {
        assert!(adm.get("native").is_none(), "{name}: 1.1+ is not wrapped");
        &adm
    };
    if let Some(v) = ver {
        assert_eq!(body["ver"], v, "{name}");
    }
    let req = native_request(imp).unwrap();
    let ids: Vec<u64> = body["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    if let Some(want) = e.get("native_ids") {
        let want: Vec<u64> = serde_json::from_value(want.clone()).unwrap();
        assert_eq!(ids, want, "{name}: asset ids");
    }
    for a in req["assets"].as_array().unwrap() {
        let id = a["id"].as_u64().or_else(|| a["id"].as_str()?.parse().ok());
        let required = a["required"] == 1 || a["required"] == "1";
        if required {
            assert!(ids.contains(&id.unwrap()), "{name}: required asset {id:?}");
        }
    }
    for a in body["assets"].as_array().unwrap() {
        if let Some(img) = a.get("img") {
            let q = req["assets"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["id"] == a["id"] || q["id"].as_str() == Some(&a["id"].to_string()))
                .unwrap();
            let num = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok());
            if let Some(wmin) = num(&q["img"]["wmin"]) {
                assert!(img["w"].as_u64().unwrap() >= wmin, "{name}: wmin");
            }
            if let Some(hmin) = num(&q["img"]["hmin"]) {
                assert!(img["h"].as_u64().unwrap() >= hmin, "{name}: hmin");
            }
        }
        if let (Some(t), Some(q)) = (
            a["title"]["text"].as_str(),
            req["assets"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["id"] == a["id"]),
        ) {
            if let Some(len) = q["title"]["len"].as_u64() {
                assert!(t.chars().count() as u64 <= len, "{name}: title len");
            }
        }
    }
    assert!(body["link"]["url"].as_str().unwrap().contains("/click?"));
    if e["eventtrackers"] == true {
        assert_eq!(body["eventtrackers"][0]["event"], 1, "{name}");
        assert_eq!(body["eventtrackers"][0]["method"], 1, "{name}");
        assert!(
            body.get("imptrackers").is_none(),
            "{name}: one impression pixel"
        );
    } else {
        assert!(body["imptrackers"][0].as_str().unwrap().contains("/imp?"));
    }
}

fn check_vast(name: &str, adm: &str, e: &Value) {
    let doc = roxmltree::Document::parse(adm).unwrap_or_else(|x| panic!("{name}: XML: {x}"));
    let root = doc.root_element();
    let want = e["vast"].as_str().unwrap_or("3.0");
    let (tag, version) = match want.strip_prefix("DAAST ") {
        Some(v) => ("DAAST", v),
        None => ("VAST", want),
    };
    assert_eq!(root.tag_name().name(), tag, "{name}");
    assert_eq!(root.attribute("version"), Some(version), "{name}");
    let has = |t: &str| root.descendants().any(|n| n.tag_name().name() == t);
    for t in [
        "Ad",
        "InLine",
        "AdSystem",
        "Impression",
        "Duration",
        "MediaFile",
    ] {
        assert!(has(t), "{name}: {t}");
    }
    if version.starts_with('4') {
        assert!(has("UniversalAdId"), "{name}: 4.x needs UniversalAdId");
    }
    if version >= "4.1" && tag == "VAST" {
        assert!(has("AdServingId"), "{name}: 4.1+ needs AdServingId");
    }
}

#[test]
fn every_corpus_request_gets_the_answer_it_should() {
    let expect: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(format!("{DIR}/expect.json")).unwrap()).unwrap();
    let requests = fixtures::corpus_requests();
    let files: Vec<String> = requests.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        files,
        expect.keys().cloned().collect::<Vec<_>>(),
        "every corpus file has an expectation and every expectation a file"
    );
    assert!(files.len() >= 20);
    let app = start_api("[bidder]\nsecure_url = \"https://ads.adshard.example\"\n");
    let mut r = Reader::new(connect(app.local_addr()));
    for (name, body) in &requests {
        let e = &expect[name];
        let req: Value = serde_json::from_slice(body).unwrap();
        let resp = post(&mut r, "/openrtb2/bid", "application/json", "", body);
        assert_eq!(
            u64::from(resp.status),
            e["status"].as_u64().unwrap(),
            "{name} ({}): {}",
            e["why"],
            resp.text()
        );
        if resp.status != 200 {
            assert!(resp.body.is_empty(), "{name}");
            continue;
        }
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["id"], req["id"], "{name}");
        let bids: Vec<&Value> = v["seatbid"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|sb| sb["bid"].as_array().unwrap())
            .collect();
        assert!(
            bids.len() as u64 >= e["min_bids"].as_u64().unwrap_or(1),
            "{name}: {} bids",
            bids.len()
        );
        for b in bids {
            let imp = req["imp"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] == b["impid"])
                .unwrap_or_else(|| panic!("{name}: bid for an unknown imp"));
            let floor = imp["bidfloor"].as_f64().filter(|f| *f > 0.0).unwrap_or(0.0);
            assert!(
                b["price"].as_f64().unwrap() >= floor,
                "{name}: price >= floor"
            );
            let mtype = b["mtype"].as_u64().unwrap();
            let offered = ["banner", "video", "audio", "native"][mtype as usize - 1];
            assert!(
                imp.get(offered).is_some(),
                "{name}: mtype {mtype} was offered"
            );
            if let Some(want) = e.get("mtype") {
                assert_eq!(mtype, want.as_u64().unwrap(), "{name}");
            }
            let adm = b["adm"].as_str().unwrap();
            match mtype {
                4 => check_native(name, imp, adm, e),
                2 | 3 => check_vast(name, adm, e),
                _ => assert!(adm.contains("<img"), "{name}"),
            }
            if e["secure"] == true {
                for u in ["nurl", "burl", "lurl"] {
                    assert!(
                        b[u].as_str().unwrap().starts_with("https://"),
                        "{name}: {u}"
                    );
                }
                assert!(!adm.contains("http://"), "{name}: https only in {adm}");
            }
        }
    }
    app.stop();
}
