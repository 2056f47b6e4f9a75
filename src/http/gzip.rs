//! gzip content coding of responses (RFC 9110 8.4.1): whether a request
//! accepts it (`Accept-Encoding`, q-values honoured), and a per-shard
//! encoder that reuses its deflate state and buffer (a fresh encoder
//! allocates a few hundred KiB of state per use).

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

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

/// A reusable gzip encoder.
pub struct Gzip {
    z: Compress,
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
            z: Compress::new(Compression::fast(), false),
            out: Vec::new(),
        }
    }
}

/// gzip member header: deflate, no flags, no mtime, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl Gzip {
    /// Replaces `body` with its gzip encoding.
    pub fn encode(&mut self, body: &mut Vec<u8>) {
        self.z.reset();
        self.out.clear();
        self.out.extend_from_slice(&HEADER);
        self.out.reserve(body.len() / 2 + 64);
        loop {
            let fed = self.z.total_in() as usize;
            let status = self
                .z
                .compress_vec(&body[fed..], &mut self.out, FlushCompress::Finish);
            match status {
                Ok(Status::StreamEnd) => break,
                // Out of room: more, and go on.
                Ok(_) => self.out.reserve(self.out.capacity().max(256)),
                // Not reachable with a valid state; send the body as it was.
                Err(_) => return,
            }
        }
        let mut crc = Crc::new();
        crc.update(body);
        self.out.extend_from_slice(&crc.sum().to_le_bytes());
        self.out
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        std::mem::swap(body, &mut self.out);
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
    fn encodes_what_any_gzip_reader_inflates_and_reuses_its_state() {
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
        }
    }
}
