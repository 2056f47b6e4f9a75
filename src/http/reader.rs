//! A socket-free request reader. The caller owns the bytes and the socket;
//! it feeds the reader what it has buffered and the reader says what comes
//! next: more of the head, more of the body (and whether to answer
//! `100 Continue` first), or a whole request, parsed in place.
//!
//! Head parse, framing, chunked de-framing and (through [`content`])
//! gzip inflation happen here and nowhere else; the shard's connection loop
//! and the admin listener both read requests through it.

use super::body::{gunzip, BodyKind, ChunkedDecoder, Framing};
use super::parse::{Header, Request, Status};
use super::HttpError;

/// The limits a reader enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Largest head, request line included.
    pub max_header_bytes: usize,
    /// Most header fields (the header storage the caller passes must hold them).
    pub max_headers: usize,
    /// Largest body, on the wire, de-chunked or inflated.
    pub max_body_bytes: usize,
}

/// What [`RequestReader::next`] found in the bytes given.
#[derive(Debug)]
pub enum Progress<'h, 'b> {
    /// The head is incomplete: read more.
    NeedHead,
    /// The head is complete and the body is not: read more. When
    /// `send_continue` is set the client asked `Expect: 100-continue`, and
    /// `HTTP/1.1 100 Continue` should be sent now (it is set once).
    NeedBody {
        /// Send `100 Continue` before reading.
        send_continue: bool,
    },
    /// A whole request.
    Ready(Ready<'h, 'b>),
}

/// A whole request, borrowed from the caller's bytes and header storage.
#[derive(Debug)]
pub struct Ready<'h, 'b> {
    /// The parsed head.
    pub req: Request<'h, 'b>,
    /// How its body is framed and coded.
    pub framing: Framing,
    /// Bytes of the buffer the request took, head and body: drop them
    /// before the next call.
    pub consumed: usize,
    /// The body as it came (content-length framing); `None` when it was
    /// chunked and lies de-chunked in [`RequestReader::body`].
    wire: Option<&'b [u8]>,
}

/// A request whose head is complete but whose body is not yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    head_len: usize,
    framing: Framing,
    /// Wire bytes after the head already fed to the chunk decoder.
    chunk_wire: usize,
    sent_continue: bool,
}

/// The parsed fields of a head, apart from the header storage they index.
#[derive(Debug, Clone, Copy)]
struct Fields<'b> {
    method: &'b str,
    target: &'b str,
    path: &'b str,
    query: Option<&'b str>,
    minor_version: u8,
    /// Header fields parsed into the storage.
    count: usize,
}

impl<'b> Fields<'b> {
    /// The request again, over the storage the fields were parsed into.
    fn request<'h>(self, storage: &'h mut [Header<'b>]) -> Request<'h, 'b> {
        Request {
            method: self.method,
            target: self.target,
            path: self.path,
            query: self.query,
            minor_version: self.minor_version,
            headers: &mut storage[..self.count],
        }
    }
}

/// What the head at the front of the bytes says.
#[derive(Debug)]
enum Head<'b> {
    /// Incomplete.
    Partial,
    /// Complete, and the whole body is here too.
    Whole {
        fields: Fields<'b>,
        framing: Framing,
        head_len: usize,
        body_len: usize,
    },
    /// Complete; the body is incomplete or chunked.
    Pending(Pending),
}

/// Reads one request after another from a byte stream. One per connection;
/// its buffers are reused across requests.
#[derive(Debug)]
pub struct RequestReader {
    limits: ReaderLimits,
    pending: Option<Pending>,
    chunk: ChunkedDecoder,
    /// De-chunked body of the pending (or just returned) request.
    decoded: Vec<u8>,
}

impl RequestReader {
    /// A reader enforcing `limits`.
    pub fn new(limits: ReaderLimits) -> Self {
        RequestReader {
            limits,
            pending: None,
            chunk: ChunkedDecoder::new(),
            decoded: Vec::new(),
        }
    }

    /// Whether a head has been read and its body is still incomplete.
    pub fn in_body(&self) -> bool {
        self.pending.is_some()
    }

    /// Looks at `data` (the unconsumed bytes, starting at a request) and
    /// says what comes next. `storage` holds the parsed header fields and
    /// must have room for `max_headers` of them.
    pub fn next<'h, 'b>(
        &mut self,
        data: &'b [u8],
        storage: &'h mut [Header<'b>],
    ) -> Result<Progress<'h, 'b>, HttpError> {
        let lim = self.limits;
        let storage_len = storage.len().min(lim.max_headers);
        let storage = &mut storage[..storage_len];
        let p = match self.pending {
            Some(p) => p,
            None => match self.head(data, &mut *storage)? {
                Head::Partial => return Ok(Progress::NeedHead),
                Head::Pending(p) => p,
                Head::Whole {
                    fields,
                    framing,
                    head_len,
                    body_len,
                } => {
                    // Fast path: answered from the one parse, with the
                    // storage's full borrow.
                    return Ok(Progress::Ready(Ready {
                        req: fields.request(storage),
                        framing,
                        consumed: head_len + body_len,
                        wire: Some(&data[head_len..head_len + body_len]),
                    }));
                }
            },
        };
        let after_head = &data[p.head_len..];
        let (complete, wire) = match p.framing.body {
            BodyKind::None => (true, 0),
            BodyKind::Length(n) => (after_head.len() >= n, n),
            BodyKind::Chunked => {
                let used = self.chunk.decode(
                    &after_head[p.chunk_wire..],
                    &mut self.decoded,
                    lim.max_body_bytes,
                )?;
                let fed = p.chunk_wire + used;
                if let Some(q) = self.pending.as_mut() {
                    q.chunk_wire = fed;
                }
                (self.chunk.is_done(), fed)
            }
        };
        if !complete {
            let send_continue = p.framing.expect_continue && !p.sent_continue;
            if let Some(q) = self.pending.as_mut() {
                q.sent_continue |= send_continue;
            }
            return Ok(Progress::NeedBody { send_continue });
        }
        self.pending = None;
        let mut req = Request::new(storage);
        // The same bytes parsed Complete before, so this parse cannot differ.
        req.parse(&data[..p.head_len])?;
        let wire_body = match p.framing.body {
            BodyKind::Chunked => None,
            _ => Some(&after_head[..wire]),
        };
        Ok(Progress::Ready(Ready {
            req,
            framing: p.framing,
            consumed: p.head_len + wire,
            wire: wire_body,
        }))
    }

    /// Parses the head at the front of `data` through a short borrow of
    /// `storage` (so [`next`](Self::next) may use the storage again) and
    /// says whether the whole request is here, or starts a pending one.
    fn head<'b>(
        &mut self,
        data: &'b [u8],
        storage: &mut [Header<'b>],
    ) -> Result<Head<'b>, HttpError> {
        let lim = self.limits;
        self.decoded.clear();
        let mut probe = Request::new(storage);
        let head_len = match probe.parse(data)? {
            Status::Partial if data.len() > lim.max_header_bytes => {
                return Err(HttpError::HeadTooLarge)
            }
            Status::Partial => return Ok(Head::Partial),
            Status::Complete(n) if n > lim.max_header_bytes => return Err(HttpError::HeadTooLarge),
            Status::Complete(n) => n,
        };
        let framing = Framing::of(&probe, lim.max_body_bytes)?;
        let body_len = match framing.body {
            BodyKind::None => Some(0),
            BodyKind::Length(n) if data.len() - head_len >= n => Some(n),
            _ => None,
        };
        if let Some(body_len) = body_len {
            return Ok(Head::Whole {
                fields: Fields {
                    method: probe.method,
                    target: probe.target,
                    path: probe.path,
                    query: probe.query,
                    minor_version: probe.minor_version,
                    count: probe.headers.len(),
                },
                framing,
                head_len,
                body_len,
            });
        }
        self.chunk = ChunkedDecoder::new();
        let p = Pending {
            head_len,
            framing,
            chunk_wire: 0,
            sent_continue: false,
        };
        self.pending = Some(p);
        Ok(Head::Pending(p))
    }

    /// The body of `ready` (the request [`next`](Self::next) just returned),
    /// de-chunked but still content-coded (see [`content`]).
    pub fn body<'a>(&'a self, ready: &Ready<'_, 'a>) -> &'a [u8] {
        ready.wire.unwrap_or(&self.decoded)
    }

    /// Chunk bytes already decoded are dead: returns where they start
    /// (counted from the start of the request) and how many there are, and
    /// forgets them, so the caller can cut them out of its buffer.
    pub fn take_dead_chunk_bytes(&mut self) -> Option<(usize, usize)> {
        let p = self.pending.as_mut()?;
        if p.framing.body != BodyKind::Chunked || p.chunk_wire == 0 {
            return None;
        }
        let dead = (p.head_len, p.chunk_wire);
        p.chunk_wire = 0;
        Some(dead)
    }

    /// The buffered size the pending request needs (head plus a declared
    /// body), so the caller can grow its buffer once.
    pub fn wanted(&self) -> Option<usize> {
        match self.pending.map(|p| (p.head_len, p.framing.body)) {
            Some((h, BodyKind::Length(n))) => Some(h + n),
            _ => None,
        }
    }
}

/// The request body with its content coding undone: gzip is inflated into
/// `inflated` (bounded by `max_body`), identity is returned as it is.
pub fn content<'a>(
    framing: &Framing,
    body: &'a [u8],
    inflated: &'a mut Vec<u8>,
    max_body: usize,
) -> Result<&'a [u8], HttpError> {
    if framing.gzip {
        gunzip(body, inflated, max_body)?;
        Ok(&inflated[..])
    } else {
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::EMPTY_HEADER;

    const LIM: ReaderLimits = ReaderLimits {
        max_header_bytes: 256,
        max_headers: 8,
        max_body_bytes: 64,
    };

    /// Feeds `wire` one byte more at a time and returns each step's answer
    /// (as a short word) and the body of the request once ready.
    fn trickle(wire: &[u8]) -> (Vec<&'static str>, Vec<u8>, usize) {
        let mut r = RequestReader::new(LIM);
        let mut seen = Vec::new();
        for end in 1..=wire.len() {
            let mut h = [EMPTY_HEADER; 8];
            match r.next(&wire[..end], &mut h).unwrap() {
                Progress::NeedHead => seen.push("head"),
                Progress::NeedBody { send_continue } => {
                    seen.push(if send_continue { "continue" } else { "body" })
                }
                Progress::Ready(ready) => {
                    let body = r.body(&ready).to_vec();
                    return (seen, body, ready.consumed);
                }
            }
        }
        panic!("never ready: {seen:?}");
    }

    #[test]
    fn a_request_read_byte_by_byte() {
        let wire = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
        let (seen, body, used) = trickle(wire);
        assert_eq!(body, b"hello");
        assert_eq!(used, wire.len());
        assert!(seen.iter().take_while(|s| **s == "head").count() > 10);
        assert_eq!(seen.last(), Some(&"body"));
        assert!(!seen.contains(&"continue"));
    }

    #[test]
    fn chunked_bodies_are_dechunked_and_continue_is_asked_once() {
        let wire = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (seen, body, used) = trickle(wire);
        assert_eq!(body, b"abcde");
        assert_eq!(used, wire.len());
        assert_eq!(seen.iter().filter(|s| **s == "continue").count(), 1);
    }

    #[test]
    fn pipelined_requests_come_one_at_a_time() {
        let wire = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n";
        let mut r = RequestReader::new(LIM);
        let mut at = 0;
        let mut paths = Vec::new();
        while at < wire.len() {
            let mut h = [EMPTY_HEADER; 8];
            match r.next(&wire[at..], &mut h).unwrap() {
                Progress::Ready(ready) => {
                    paths.push(ready.req.path.to_string());
                    at += ready.consumed;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(paths, ["/a", "/b"]);
    }

    #[test]
    fn limits_are_errors() {
        let mut r = RequestReader::new(LIM);
        let mut h = [EMPTY_HEADER; 8];
        let long = [b'a'; 300];
        let mut head = b"GET /".to_vec();
        head.extend_from_slice(&long);
        assert_eq!(r.next(&head, &mut h).unwrap_err(), HttpError::HeadTooLarge);
        let mut r = RequestReader::new(LIM);
        let mut h = [EMPTY_HEADER; 8];
        let big = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n";
        assert_eq!(r.next(big, &mut h).unwrap_err(), HttpError::BodyTooLarge);
    }

    #[test]
    fn dead_chunk_bytes_can_be_cut_out() {
        let head = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"3\r\nabc\r\n");
        let mut r = RequestReader::new(LIM);
        {
            let mut h = [EMPTY_HEADER; 8];
            assert!(matches!(
                r.next(&buf, &mut h).unwrap(),
                Progress::NeedBody { .. }
            ));
        }
        let (from, n) = r.take_dead_chunk_bytes().unwrap();
        assert_eq!((from, n), (head.len(), 8));
        buf.drain(from..from + n);
        buf.extend_from_slice(b"0\r\n\r\n");
        let mut h = [EMPTY_HEADER; 8];
        match r.next(&buf, &mut h).unwrap() {
            Progress::Ready(ready) => {
                assert_eq!(ready.consumed, buf.len());
                assert_eq!(r.body(&ready), b"abc");
            }
            other => panic!("{other:?}"),
        }
    }
}
