//! Message framing (RFC 9112 6) and request-body decoding: Content-Length,
//! chunked transfer coding (RFC 9112 7.1) and gzip content coding.
//!
//! The chunked decoder is resumable: it consumes what has arrived, remembers
//! where it stopped, and is called again after the next read. Partial input is
//! a normal state here too.

use super::{HttpError, Request};
use std::io::Read;

/// How the body of a request is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    None,
    /// Exactly this many bytes follow the head.
    Length(usize),
    /// Chunked transfer coding.
    Chunked,
}

/// What the head says about framing and the connection, owned (no borrows),
/// so it survives while more body bytes are read into the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Body delimitation.
    pub body: BodyKind,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// `Content-Encoding: gzip` (the body must be inflated).
    pub gzip: bool,
}

impl Framing {
    /// Reads framing from a parsed head. `max_body` bounds a declared length.
    pub fn of(req: &Request<'_, '_>, max_body: usize) -> Result<Framing, HttpError> {
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut te_seen = false;
        let mut keep_alive = req.minor_version == 1;
        let mut expect_continue = false;
        let mut gzip = false;
        let mut host = false;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_decimal(h.value).ok_or(HttpError::BadContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                te_seen = true;
                // Only a lone `chunked` is accepted; any other coding is 501.
                for coding in list(h.value) {
                    if coding.eq_ignore_ascii_case(b"chunked") && !chunked {
                        chunked = true;
                    } else {
                        return Err(HttpError::UnsupportedTransferEncoding);
                    }
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for opt in list(h.value) {
                    if opt.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
            } else if name.eq_ignore_ascii_case("content-encoding") {
                for coding in list(h.value) {
                    if coding.eq_ignore_ascii_case(b"gzip")
                        || coding.eq_ignore_ascii_case(b"x-gzip")
                    {
                        if gzip {
                            return Err(HttpError::UnsupportedContentEncoding);
                        }
                        gzip = true;
                    } else if !coding.eq_ignore_ascii_case(b"identity") {
                        return Err(HttpError::UnsupportedContentEncoding);
                    }
                }
            } else if name.eq_ignore_ascii_case("host") {
                if host {
                    return Err(HttpError::DuplicateHost);
                }
                host = true;
            }
        }
        if req.minor_version == 1 && !host {
            return Err(HttpError::MissingHost);
        }
        if te_seen && !chunked {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        let body = match (length, chunked) {
            (Some(_), true) => return Err(HttpError::LengthAndChunked),
            (Some(n), false) if n > max_body => return Err(HttpError::BodyTooLarge),
            (Some(0), false) | (None, false) => BodyKind::None,
            (Some(n), false) => BodyKind::Length(n),
            (None, true) => BodyKind::Chunked,
        };
        Ok(Framing {
            body,
            keep_alive,
            expect_continue,
            gzip,
        })
    }
}

/// Comma-separated list elements, trimmed (RFC 9110 5.6.1), empties skipped.
fn list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// `1*DIGIT` into usize, refusing overflow, signs and empties.
fn parse_decimal(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: usize = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((b - b'0') as usize)?;
    }
    Some(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; the value so far and whether a digit was seen.
    Size,
    /// Skipping a chunk extension up to CRLF.
    Ext,
    /// Saw CR after the size line.
    SizeLf,
    /// Copying chunk data; bytes left in this chunk.
    Data,
    /// Expecting CR after data.
    DataCr,
    /// Expecting LF after data.
    DataLf,
    /// In the trailer section, at the start of a line.
    TrailerStart,
    /// In a trailer field line.
    Trailer,
    /// Saw CR at the start of a trailer line (end of message if LF follows).
    TrailerEndLf,
    /// Saw CR at the end of a trailer line.
    TrailerLf,
    /// Message complete.
    Done,
}

/// Resumable decoder for the chunked transfer coding (RFC 9112 7.1).
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*("0") [ chunk-ext ] CRLF
/// ```
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: usize,
    digits: u8,
    remaining: usize,
    trailer_bytes: usize,
}

/// Maximum bytes of chunk extensions plus trailers we skip before refusing.
const MAX_CHUNK_OVERHEAD: usize = 8 * 1024;

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            digits: 0,
            remaining: 0,
            trailer_bytes: 0,
        }
    }

    /// Whether the last chunk and trailers have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending chunk data to `out` (never past
    /// `max_body` bytes in total). Returns how many input bytes were consumed;
    /// check [`is_done`](Self::is_done) for completion.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_body: usize,
    ) -> Result<usize, HttpError> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as usize;
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(HttpError::BadChunk);
                        }
                        self.size = self.size * 16 + d;
                        i += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => {
                        self.state = Ext;
                        i += 1;
                    }
                    b'\r' if self.digits > 0 => {
                        self.state = SizeLf;
                        i += 1;
                    }
                    _ => return Err(HttpError::BadChunk),
                },
                Ext => {
                    self.bump_overhead()?;
                    if b == b'\r' {
                        self.state = SizeLf;
                    } else if b == b'\n' {
                        return Err(HttpError::BadChunk);
                    }
                    i += 1;
                }
                SizeLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk);
                    }
                    i += 1;
                    if self.size == 0 {
                        self.state = TrailerStart;
                    } else {
                        if out.len() + self.size > max_body {
                            return Err(HttpError::BodyTooLarge);
                        }
                        self.remaining = self.size;
                        self.state = Data;
                    }
                    self.size = 0;
                    self.digits = 0;
                }
                Data => {
                    let take = self.remaining.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.remaining -= take;
                    if self.remaining == 0 {
                        self.state = DataCr;
                    }
                }
                DataCr => {
                    if b != b'\r' {
                        return Err(HttpError::BadChunk);
                    }
                    self.state = DataLf;
                    i += 1;
                }
                DataLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk);
                    }
                    self.state = Size;
                    i += 1;
                }
                TrailerStart => {
                    self.state = if b == b'\r' { TrailerEndLf } else { Trailer };
                    self.bump_overhead()?;
                    i += 1;
                }
                Trailer => {
                    self.bump_overhead()?;
                    if b == b'\r' {
                        self.state = TrailerLf;
                    }
                    i += 1;
                }
                TrailerLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk);
                    }
                    self.state = TrailerStart;
                    i += 1;
                }
                TrailerEndLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk);
                    }
                    self.state = Done;
                    i += 1;
                    return Ok(i);
                }
                Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn bump_overhead(&mut self) -> Result<(), HttpError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_CHUNK_OVERHEAD {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(())
        }
    }
}

/// Inflates a gzip body into `out` (cleared first), refusing more than
/// `max_body` inflated bytes so a small bomb cannot exhaust memory.
pub fn gunzip(input: &[u8], out: &mut Vec<u8>, max_body: usize) -> Result<(), HttpError> {
    out.clear();
    // Every member: a gzip file may be several concatenated (RFC 1952 2.2).
    let mut dec = flate2::read::MultiGzDecoder::new(input).take(max_body as u64 + 1);
    let res = match dec.read_to_end(out) {
        Err(_) => Err(HttpError::BadGzip),
        Ok(_) if out.len() > max_body => Err(HttpError::BodyTooLarge),
        Ok(_) => Ok(()),
    };
    // On refusal leave nothing behind: the buffer never holds more than the limit.
    if res.is_err() {
        out.clear();
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Request, EMPTY_HEADER};
    use std::io::Write;

    fn framing(head: &[u8]) -> Result<Framing, HttpError> {
        let mut h = [EMPTY_HEADER; 16];
        let mut r = Request::new(&mut h);
        r.parse(head).expect("test heads are well-formed");
        Framing::of(&r, 1000)
    }

    #[test]
    fn framing_rules() {
        let f = framing(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(f.body, BodyKind::Length(5));
        assert!(f.keep_alive);
        let f = framing(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(f.body, BodyKind::Chunked);
        assert!(!f.keep_alive);
        let f = framing(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!f.keep_alive);
        let f = framing(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(f.keep_alive);
        let f = framing(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\n").unwrap();
        assert!(f.expect_continue && f.gzip);
    }

    #[test]
    fn framing_errors() {
        use HttpError::*;
        let cases: &[(&[u8], HttpError)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", MissingHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", DuplicateHost),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", BodyTooLarge),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", LengthAndChunked),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Encoding: br\r\n\r\n", UnsupportedContentEncoding),
        ];
        for (head, want) in cases {
            assert_eq!(
                framing(head),
                Err(*want),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    fn dechunk_split(wire: &[u8], max: usize) -> Result<(Vec<u8>, usize), HttpError> {
        // Feed every split point: the result must not depend on read boundaries.
        let mut first: Option<(Vec<u8>, usize)> = None;
        for split in 0..=wire.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let n1 = d.decode(&wire[..split], &mut out, max)?;
            let mut used = n1;
            if !d.is_done() {
                // The decoder consumes all it was given unless done.
                assert_eq!(n1, split);
                used += d.decode(&wire[split..], &mut out, max)?;
            }
            assert!(d.is_done(), "split {split}");
            match &first {
                None => first = Some((out, used)),
                Some(f) => assert_eq!((&f.0, f.1), (&out, used), "split {split}"),
            }
        }
        Ok(first.unwrap_or_default())
    }

    #[test]
    fn chunked_all_splits() {
        let wire =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nGET";
        let (out, used) = dechunk_split(wire, 100).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(
            used,
            wire.len() - 3,
            "stops before the next pipelined request"
        );
    }

    #[test]
    fn chunked_errors() {
        let mut out = Vec::new();
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\r\nWikiXX",
            b"4\nWiki",
            b"1000000000000000\r\n",
        ] {
            let mut d = ChunkedDecoder::new();
            assert_eq!(
                d.decode(bad, &mut out, 100),
                Err(HttpError::BadChunk),
                "{bad:?}"
            );
        }
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"65\r\n", &mut out, 100),
            Err(HttpError::BodyTooLarge)
        );
    }

    #[test]
    fn gzip_roundtrip_and_bomb() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[b'a'; 5000]).unwrap();
        let gz = enc.finish().unwrap();
        let mut out = Vec::new();
        gunzip(&gz, &mut out, 5000).unwrap();
        assert_eq!(out.len(), 5000);
        assert_eq!(gunzip(&gz, &mut out, 4999), Err(HttpError::BodyTooLarge));
        assert_eq!(gunzip(b"not gzip", &mut out, 100), Err(HttpError::BadGzip));
        assert_eq!(
            gunzip(&gz[..gz.len() - 4], &mut out, 5000),
            Err(HttpError::BadGzip)
        );
    }
}
