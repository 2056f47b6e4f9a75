//! JSON bid requests in, JSON bid responses out.
//!
//! Requests are decoded by simd-json into the borrowed [`BidRequest`] types
//! (about 30% faster than serde_json here: `cargo bench --bench bid -- json`),
//! from a per-shard copy of the body, since simd-json unescapes strings in
//! place. Anything simd-json refuses, and any document that could nest deeper
//! than [`MAX_DEPTH`], is decoded by serde_json from the untouched body: it
//! accepts the same documents as before, skips unknown values of any depth
//! without recursing, and names the field that failed.

use super::{Bid, BidRequest, BidResponse, RequestError};

/// The deepest nesting simd-json is handed: its serde layer recurses once per
/// level of an ignored value, so a hostile body could exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// A shard's reusable decoding buffers.
#[derive(Default)]
pub struct JsonDecoder {
    copy: Vec<u8>,
    buffers: Option<simd_json::Buffers>,
}

impl std::fmt::Debug for JsonDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonDecoder").finish_non_exhaustive()
    }
}

impl JsonDecoder {
    /// Decodes and validates a JSON bid request. Strings borrow from this
    /// decoder's copy of `body` (or from `body` itself on the serde_json path).
    pub fn decode<'a>(&'a mut self, body: &'a [u8]) -> Result<BidRequest<'a>, RequestError> {
        object(body)?;
        if openings(body) <= MAX_DEPTH {
            super::lenient::clear();
            self.copy.clear();
            self.copy.extend_from_slice(body);
            let buffers = self
                .buffers
                .get_or_insert_with(|| simd_json::Buffers::new(body.len()));
            if let Ok(mut req) =
                simd_json::serde::from_slice_with_buffers::<BidRequest<'a>>(&mut self.copy, buffers)
            {
                req.sanitize()?;
                return Ok(req);
            }
        }
        decode_json(body)
    }
}

/// A request is a JSON object (serde would take an array for a struct too).
fn object(body: &[u8]) -> Result<(), RequestError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(RequestError::new("body", "not a JSON object")),
    }
}

/// `[` and `{` bytes in `body`: a bound on its nesting depth (brackets
/// inside strings count too, so it can only overestimate). One vectorised
/// pass; typical requests hold 10 to 40.
fn openings(body: &[u8]) -> usize {
    // Byte-wide counters (at most 255 per chunk) vectorise 32 bytes a step;
    // a `usize` count does 4.
    body.chunks(255)
        .map(|c| {
            c.iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b | 0x20 == b'{'))) as usize
        })
        .sum()
}

/// Decodes and validates a JSON bid request with serde_json (the reference
/// decoder; [`JsonDecoder`] is the fast one).
pub fn decode_json(body: &[u8]) -> Result<BidRequest<'_>, RequestError> {
    object(body)?;
    // Only a request that fails is decoded again with path tracking, which
    // names the field but costs microseconds.
    super::lenient::clear();
    let mut req: BidRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => return Err(locate_error(body)),
    };
    req.sanitize()?;
    Ok(req)
}

/// Decodes again with path tracking to name the field that failed.
fn locate_error(body: &[u8]) -> RequestError {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, BidRequest<'_>>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." || path == "?" || path.is_empty() {
                "body".to_string()
            } else {
                path
            };
            RequestError::new(field, e.inner().to_string())
        }
        Ok(_) => match de.end() {
            Err(e) => RequestError::new("body", e.to_string()),
            Ok(()) => RequestError::new("body", "malformed JSON"),
        },
    }
}

/// Encodes a bid response as JSON into `out`: the bytes serde_json writes
/// for it (the `Serialize` derive is the reference; a test holds them equal),
/// with strings copied 16 bytes at a time where nothing needs escaping (our
/// URLs and markup never do) instead of byte by byte.
pub fn encode_json(resp: &BidResponse, out: &mut Vec<u8>) {
    out.reserve(
        256 + resp
            .seatbid
            .iter()
            .map(|s| s.bid.len() * 1536)
            .sum::<usize>(),
    );
    out.extend_from_slice(b"{\"id\":");
    string(out, &resp.id);
    out.extend_from_slice(b",\"seatbid\":[");
    for (i, sb) in resp.seatbid.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"seat\":");
        string(out, &sb.seat);
        out.extend_from_slice(b",\"bid\":[");
        for (j, b) in sb.bid.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            bid(out, b);
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"],\"bidid\":");
    string(out, &resp.bidid);
    out.extend_from_slice(b",\"cur\":");
    string(out, &resp.cur);
    out.push(b'}');
}

fn bid(out: &mut Vec<u8>, b: &Bid<'_>) {
    out.extend_from_slice(b"{\"id\":");
    string(out, &b.id);
    out.extend_from_slice(b",\"impid\":");
    string(out, &b.impid);
    out.extend_from_slice(b",\"price\":");
    if b.price.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(b.price).as_bytes());
    } else {
        // What serde_json writes for NaN and infinities (never produced:
        // the auction refuses them).
        out.extend_from_slice(b"null");
    }
    for (key, v) in [
        (&b",\"nurl\":"[..], &b.nurl),
        (b",\"burl\":", &b.burl),
        (b",\"lurl\":", &b.lurl),
        (b",\"adm\":", &b.adm),
    ] {
        out.extend_from_slice(key);
        string(out, v);
    }
    out.extend_from_slice(b",\"adomain\":");
    strings(out, &b.adomain);
    out.extend_from_slice(b",\"cid\":");
    string(out, &b.cid);
    out.extend_from_slice(b",\"crid\":");
    string(out, &b.crid);
    out.extend_from_slice(b",\"cat\":");
    strings(out, &b.cat);
    for (key, v) in [
        (&b",\"cattax\":"[..], b.cattax.map(u32::from)),
        (b",\"w\":", b.w),
        (b",\"h\":", b.h),
    ] {
        if let Some(v) = v {
            out.extend_from_slice(key);
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
    }
    if let Some(d) = &b.dealid {
        out.extend_from_slice(b",\"dealid\":");
        string(out, d);
    }
    out.extend_from_slice(b",\"mtype\":");
    out.extend_from_slice(itoa::Buffer::new().format(b.mtype).as_bytes());
    out.push(b'}');
}

fn strings(out: &mut Vec<u8>, list: &[String]) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// Bytes JSON strings must escape: `"`, `\` and controls (serde_json
/// escapes exactly these, and writes everything else, `/` and non-ASCII
/// included, as it is).
fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        // No early exit inside a chunk: the check vectorises.
        if c.iter().fold(false, |any, &b| any | escaped(b)) {
            c.iter().for_each(|&b| byte(out, b));
        } else {
            out.extend_from_slice(c);
        }
    }
    chunks.remainder().iter().for_each(|&b| byte(out, b));
    out.push(b'"');
}

fn byte(out: &mut Vec<u8>, b: u8) {
    if !escaped(b) {
        out.push(b);
        return;
    }
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => 0,
    };
    if short != 0 {
        out.extend_from_slice(&[b'\\', short]);
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(b"\\u00");
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
}

#[cfg(test)]
mod tests {
    use super::openings;

    #[test]
    fn openings_count_every_bracket_across_chunks() {
        assert_eq!(openings(b""), 0);
        assert_eq!(openings(br#"{"a":[1,{"b":"[{"}],"c":"]}"}"#), 5);
        let mut big = vec![b'['; 1000];
        big.extend(vec![b'{'; 300]);
        big.extend(vec![b'x'; 77]);
        assert_eq!(openings(&big), 1300);
    }
}
