use super::*;

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
            assert!(!r.imp.is_empty());
            n += 1;
        }
    }
    assert_eq!(n, 11);
}

#[test]
fn errors_name_the_field() {
    assert_eq!(err("{\"imp\":[{\"id\":\"1\",\"banner\":{}}]}").field, "id");
    assert_eq!(err("{\"id\":\"a\"}").field, "imp");
    assert_eq!(
        err("{\"id\":\"a\",\"imp\":[{\"banner\":{}}]}").field,
        "imp[0].id"
    );
    assert_eq!(
        err("{\"id\":\"a\",\"imp\":[{\"id\":\"1\"}]}").field,
        "imp[0]"
    );
    assert_eq!(
        err("{\"id\":\"a\",\"imp\":[{\"id\":\"1\",\"banner\":{}},{\"id\":\"1\",\"banner\":{}}]}")
            .field,
        "imp[1].id"
    );
    let e = err("{\"id\":\"a\",\"imp\":[{\"id\":\"1\",\"banner\":{},\"bidfloor\":\"cheap\"}]}");
    assert_eq!(e.field, "imp[0].bidfloor");
    let e = err("{\"id\":\"a\",\"imp\":[{\"id\":\"1\",\"banner\":{\"w\":-3}}]}");
    assert_eq!(e.field, "imp[0].banner.w");
    assert_eq!(
        err("{\"id\":\"a\",\"imp\":[{\"id\":\"1\",\"banner\":{}}],\"site\":{},\"app\":{}}").field,
        "app"
    );
    assert_eq!(err("not json").field, "body");
    assert_eq!(
        err("{\"id\":\"a\",\"imp\":[{\"id\":\"1\",\"banner\":{}}]} trailing").field,
        "body"
    );
    let e = err("{\"id\":\"a\",\"imp\":[{\"id\":\"1\",\"banner\":{},\"pmp\":{\"deals\":[{\"bidfloor\":1}]}}]}");
    assert_eq!(e.field, "imp[0].pmp.deals[0].id");
    assert!(e.to_json().contains("\"field\":\"imp[0].pmp.deals[0].id\""));
}

#[test]
fn unknown_fields_and_escapes_tolerated() {
    let r = decode_json(br#"{"id":"a\"b","imp":[{"id":"1","native":{"request":"{\"x\":1}"},"ext":{"zz":[1,2]}}],"ext":{"q":1},"source":{"fd":1}}"#)
        .unwrap();
    assert_eq!(r.id, "a\"b");
    assert_eq!(r.imp[0].native.as_ref().unwrap().request, "{\"x\":1}");
    assert_eq!(r.at, 2, "second price is the default");
    assert_eq!(r.imp[0].bidfloorcur, "USD");
}
