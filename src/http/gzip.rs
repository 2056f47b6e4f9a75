//! gzip content coding of responses (RFC 9110 8.4.1): whether a request
//! accepts it (`Accept-Encoding`, q-values honoured), and a per-shard
//! encoder that reuses its compressor and buffer.

/// Whether an `Accept-Encoding` value accepts gzip: `gzip` or `x-gzip`, or
/// `*` when gzip is not named, with a q-value above 0.
pub fn accepts_gzip(value: Option<&[u8]>) -> bool {
    let Some(v) = value else { return false };
    let mut star = false;
    for item in v.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        let q_zero = parts.any(|p| {
            let p = p.trim_ascii();
            p.len() >= 2
                && p[..2].eq_ignore_ascii_case(b"q=")
                && std::str::from_utf8(&p[2..])
                    .ok()
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
            return !q_zero;
        }
        if name == b"*" {
            star = !q_zero;
        }
    }
    star
}

/// A reusable gzip encoder (libdeflate, level 1: non-streaming, nothing to
/// reset between responses).
pub struct Gzip {
    c: libdeflater::Compressor,
    out: Vec<u8>,
}

impl std::fmt::Debug for Gzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gzip").finish_non_exhaustive()
    }
}

impl Default for Gzip {
    fn default() -> Self {
        Gzip {
            // Level 1: most of the size saved for a fraction of the time.
            // (libdeflate's `fastest` is level 0: stored, not compressed.)
            c: libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(1).unwrap_or_default(),
            ),
            out: Vec::new(),
        }
    }
}

impl Gzip {
    /// Replaces `body` with its gzip encoding (left as it is if that fails,
    /// which the bound makes unreachable).
    pub fn encode(&mut self, body: &mut Vec<u8>) {
        let bound = self.c.gzip_compress_bound(body.len());
        self.out.clear();
        self.out.resize(bound, 0);
        if let Ok(n) = self.c.gzip_compress(body, &mut self.out) {
            self.out.truncate(n);
            std::mem::swap(body, &mut self.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn accept_encoding_is_read_with_q_values() {
        for (v, ok) in [
            ("gzip", true),
            ("deflate, gzip;q=0.5", true),
            ("GZIP", true),
            ("x-gzip", true),
            ("*", true),
            ("br, *;q=0.1", true),
            ("gzip;q=0", false),
            ("gzip; q=0.0, *", false),
            ("*;q=0", false),
            ("br, deflate", false),
            ("identity", false),
            ("", false),
        ] {
            assert_eq!(accepts_gzip(Some(v.as_bytes())), ok, "{v:?}");
        }
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn encodes_what_any_gzip_reader_inflates_with_one_compressor() {
        let mut gz = Gzip::default();
        for body in [
            b"{\"id\":\"x\"}".to_vec(),
            br#"{"id":"1","seatbid":[]}"#.repeat(200),
            Vec::new(),
            (0..70_000u32).flat_map(|i| i.to_le_bytes()).collect(),
        ] {
            let mut b = body.clone();
            gz.encode(&mut b);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&b[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, body);
            if body.len() > 1000 {
                assert!(
                    b.len() < body.len(),
                    "compressed: {} of {}",
                    b.len(),
                    body.len()
                );
            }
        }
    }
}
