//! `application/x-www-form-urlencoded` query strings: splitting, percent
//! decoding (RFC 3986 2.1, `+` as space) and encoding.

use std::borrow::Cow;

/// `key=value` pairs of a query, decoded. Malformed escapes are kept as-is.
pub fn pairs(q: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    })
}

/// First value of `key`.
pub fn get<'q>(q: Option<&'q str>, key: &str) -> Option<Cow<'q, str>> {
    pairs(q.unwrap_or(""))
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decodes; borrows when nothing needs decoding.
pub fn decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

// RFC 3986 2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `s` percent-encoded (everything but unreserved characters).
pub fn encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = s;
    // Runs of unreserved bytes are copied whole (ids rarely need escaping).
    while let Some(at) = rest.bytes().position(|b| !unreserved(b)) {
        out.push_str(&rest[..at]);
        // Every byte before `at` is ASCII, so a character starts at `at`:
        // escape its bytes and go on after it.
        let len = rest[at..].chars().next().map_or(1, char::len_utf8);
        for &b in &rest.as_bytes()[at..at + len] {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        rest = &rest[at + len..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_pairs() {
        let raw = "a b&c=d/é?%";
        let mut enc = String::new();
        encode_into(&mut enc, raw);
        assert_eq!(enc, "a%20b%26c%3Dd%2F%C3%A9%3F%25");
        assert_eq!(decode(&enc), raw);
        let q = "x=1&y=a+b&z=%41%zz&flag&x=2";
        let v: Vec<_> = pairs(q)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(v[0], ("x".into(), "1".into()));
        assert_eq!(v[1], ("y".into(), "a b".into()));
        assert_eq!(v[2], ("z".into(), "A%zz".into()));
        assert_eq!(v[3], ("flag".into(), "".into()));
        assert_eq!(get(Some(q), "x").as_deref(), Some("1"));
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("100%"), "100%");
    }
}
