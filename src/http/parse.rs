//! Incremental, zero-copy HTTP/1.1 request-head parser (RFC 9112).
//!
//! The caller owns both the bytes and the header storage (`[EMPTY_HEADER; N]`),
//! as in httparse: a parsed [`Request`] borrows slices of the input and never
//! copies. Partial input is a normal state: [`Status::Partial`] means "read more
//! and call again", never an error. Errors are `Copy`, allocate nothing and map
//! to a status code through [`HttpError`].

use super::HttpError;

/// Outcome of one parse attempt over the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// The head is complete; the value is its length in bytes (through the
    /// blank line).
    Complete(T),
    /// More bytes are needed; nothing is wrong so far.
    Partial,
}

/// One header field, borrowed from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'b> {
    /// Field name as sent (ASCII `tchar`s; compare case-insensitively).
    pub name: &'b str,
    /// Field value with surrounding whitespace removed (may hold obs-text).
    pub value: &'b [u8],
}

/// Storage filler for a caller-provided header array.
pub const EMPTY_HEADER: Header<'static> = Header {
    name: "",
    value: b"",
};

/// A parsed request head. `'h` is the caller's header storage, `'b` the bytes.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    /// Request method (a `token`), e.g. `GET`.
    pub method: &'b str,
    /// The request-target as sent, e.g. `/ad?slot=1`.
    pub target: &'b str,
    /// The path part of the target (before `?`).
    pub path: &'b str,
    /// The query part of the target (after `?`), if any.
    pub query: Option<&'b str>,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The headers that were parsed; shrinks to the count found.
    pub headers: &'h mut [Header<'b>],
}

/// Builds a 256-entry byte-class table at compile time from a predicate on `b`.
macro_rules! byte_table {
    (|$b:ident| $pred:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            t[i] = $pred;
            i += 1;
        }
        t
    }};
}

// RFC 9110 5.6.2:
//   token  = 1*tchar
//   tchar  = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//            "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
static TCHAR: [bool; 256] = byte_table!(|b| {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
});

/// The origin-form part of a target: an absolute-form target
/// (`http://host:port/path?q`, RFC 9112 3.2.2: a server must accept it) is
/// served by its path and query (`/` when it has no path); any other form as
/// it is.
fn origin_form(target: &str) -> &str {
    let rest = if target.len() > 7 && target[..7].eq_ignore_ascii_case("http://") {
        &target[7..]
    } else if target.len() > 8 && target[..8].eq_ignore_ascii_case("https://") {
        &target[8..]
    } else {
        return target;
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        // `http://host?q`: the path is `/`; the query stays attached.
        Some(i) => &rest[i..],
        None => "/",
    }
}

// RFC 9112 3.2 / RFC 3986: the request-target is visible ASCII with no spaces.
//   origin-form = absolute-path [ "?" query ]; VCHAR = %x21-7E
static TARGET: [bool; 256] = byte_table!(|b| b >= 0x21 && b <= 0x7e);

// RFC 9110 5.5:
//   field-value = *field-content
//   field-vchar = VCHAR / obs-text ; obs-text = %x80-FF
//   plus SP / HTAB between field-vchars
static FIELD_VALUE: [bool; 256] = byte_table!(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));

impl<'h, 'b> Request<'h, 'b> {
    /// Wraps caller-provided header storage.
    pub fn new(headers: &'h mut [Header<'b>]) -> Self {
        Request {
            method: "",
            target: "",
            path: "",
            query: None,
            minor_version: 1,
            headers,
        }
    }

    /// Parses a request head from `buf`.
    ///
    /// Returns `Complete(len)` when the head through the empty line is present,
    /// `Partial` when more bytes are needed, or an error naming the fault.
    /// Empty lines before the request line are skipped (RFC 9112 2.2).
    pub fn parse(&mut self, buf: &'b [u8]) -> Result<Status<usize>, HttpError> {
        let mut pos = 0;
        // RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF)
        // received prior to the request-line.
        while pos < buf.len() && (buf[pos] == b'\r' || buf[pos] == b'\n') {
            if buf[pos] == b'\r' {
                match buf.get(pos + 1) {
                    None => return Ok(Status::Partial),
                    Some(b'\n') => pos += 2,
                    Some(_) => return Err(HttpError::BadRequestLine),
                }
            } else {
                return Err(HttpError::BareLf);
            }
        }
        // method SP request-target SP HTTP-version CRLF
        let start = pos;
        while pos < buf.len() && TCHAR[buf[pos] as usize] {
            pos += 1;
        }
        if pos == buf.len() {
            return Ok(Status::Partial);
        }
        if pos == start || buf[pos] != b' ' {
            return Err(HttpError::BadMethod);
        }
        let method = ascii(&buf[start..pos]);
        pos += 1;
        let tstart = pos;
        pos = scan(buf, pos, &TARGET, 0x21);
        if pos == buf.len() {
            return Ok(Status::Partial);
        }
        if pos == tstart || buf[pos] != b' ' {
            return Err(HttpError::BadTarget);
        }
        let target = ascii(&buf[tstart..pos]);
        pos += 1;
        // HTTP-version = "HTTP/" DIGIT "." DIGIT
        const V: &[u8] = b"HTTP/1.";
        let avail = &buf[pos..];
        let n = avail.len().min(V.len());
        if avail[..n] != V[..n] {
            return Err(HttpError::BadVersion);
        }
        if avail.len() < V.len() + 1 {
            return Ok(Status::Partial);
        }
        let minor_version = match avail[V.len()] {
            b'0' => 0,
            b'1' => 1,
            b'2'..=b'9' => return Err(HttpError::VersionNotSupported),
            _ => return Err(HttpError::BadVersion),
        };
        pos += V.len() + 1;
        pos = match eol(buf, pos, HttpError::BadVersion)? {
            Some(p) => p,
            None => return Ok(Status::Partial),
        };

        let mut count = 0;
        loop {
            // End of head: an empty line.
            match buf.get(pos) {
                None => return Ok(Status::Partial),
                Some(b'\r') => match buf.get(pos + 1) {
                    None => return Ok(Status::Partial),
                    Some(b'\n') => {
                        pos += 2;
                        break;
                    }
                    Some(_) => return Err(HttpError::BadHeader),
                },
                Some(b'\n') => return Err(HttpError::BareLf),
                // RFC 9112 5.2: obs-fold is rejected with 400.
                Some(b' ' | b'\t') => return Err(HttpError::ObsFold),
                Some(_) => {}
            }
            // field-line = field-name ":" OWS field-value OWS
            let nstart = pos;
            while pos < buf.len() && TCHAR[buf[pos] as usize] {
                pos += 1;
            }
            if pos == buf.len() {
                return Ok(Status::Partial);
            }
            // RFC 9112 5.1: no whitespace between name and colon.
            if pos == nstart || buf[pos] != b':' {
                return Err(HttpError::BadHeader);
            }
            let name = ascii(&buf[nstart..pos]);
            pos += 1;
            while pos < buf.len() && (buf[pos] == b' ' || buf[pos] == b'\t') {
                pos += 1;
            }
            let vstart = pos;
            pos = scan(buf, pos, &FIELD_VALUE, 0x20);
            let mut vend = pos;
            let next = match eol(buf, pos, HttpError::BadHeader)? {
                Some(p) => p,
                None => return Ok(Status::Partial),
            };
            while vend > vstart && (buf[vend - 1] == b' ' || buf[vend - 1] == b'\t') {
                vend -= 1;
            }
            if count == self.headers.len() {
                return Err(HttpError::TooManyHeaders);
            }
            self.headers[count] = Header {
                name,
                value: &buf[vstart..vend],
            };
            count += 1;
            pos = next;
        }

        self.method = method;
        self.target = target;
        let origin = origin_form(target);
        match origin.find('?') {
            Some(q) => {
                self.path = &origin[..q];
                self.query = Some(&origin[q + 1..]);
            }
            None => {
                self.path = origin;
                self.query = None;
            }
        }
        self.minor_version = minor_version;
        let headers = std::mem::take(&mut self.headers);
        self.headers = &mut headers[..count];
        Ok(Status::Complete(pos))
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Advances from `pos` over bytes that `table` accepts. Eight bytes at a time
/// while a whole word is printable ASCII in `lo..=0x7e` (every such byte is
/// accepted by the tables this is used with), then byte by byte: the table
/// stays the authority, the word test only skips what it would accept.
#[inline]
fn scan(buf: &[u8], mut pos: usize, table: &[bool; 256], lo: u8) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = buf.get(pos..pos + 8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let w = u64::from_le_bytes(b);
        // Some byte < lo (exact for lo <= 0x80), or some byte >= 0x7f (its high
        // bit, or the carry of +1 into it). False alarms only end the fast path.
        let below = w.wrapping_sub(ONES * u64::from(lo)) & !w & HIGH;
        let above = (w.wrapping_add(ONES) | w) & HIGH;
        if below | above != 0 {
            break;
        }
        pos += 8;
    }
    while pos < buf.len() && table[buf[pos] as usize] {
        pos += 1;
    }
    pos
}

/// Expects CRLF at `pos`; returns the position after it, `None` if partial.
fn eol(buf: &[u8], pos: usize, err: HttpError) -> Result<Option<usize>, HttpError> {
    match buf.get(pos) {
        None => Ok(None),
        Some(b'\r') => match buf.get(pos + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(pos + 2)),
            Some(_) => Err(err),
        },
        Some(b'\n') => Err(HttpError::BareLf),
        Some(_) => Err(err),
    }
}

fn ascii(b: &[u8]) -> &str {
    // Every caller passes bytes already checked against TCHAR or TARGET, which
    // admit only ASCII, so this conversion cannot fail.
    std::str::from_utf8(b).unwrap_or("")
}

#[cfg(test)]
mod tests {

    #[test]
    fn absolute_form_targets_are_served_by_their_path() {
        for (target, origin) in [
            ("/a?b", "/a?b"),
            ("http://h/a?b", "/a?b"),
            ("HTTPS://h:8443/x", "/x"),
            ("http://h", "/"),
            ("http://h?q=1", "?q=1"),
            ("*", "*"),
        ] {
            assert_eq!(origin_form(target), origin, "{target}");
        }
    }
    use super::*;

    /// Table of parser cases, in the style of httparse's `req!`.
    macro_rules! req {
        ($name:ident, $buf:expr, |$r:ident| $body:block) => {
            #[test]
            fn $name() {
                let mut h = [EMPTY_HEADER; 16];
                let mut $r = Request::new(&mut h);
                let status = $r.parse($buf);
                assert_eq!(status, Ok(Status::Complete($buf.len())), "{:?}", status);
                $body
            }
        };
        ($name:ident, $buf:expr, Err($e:expr)) => {
            #[test]
            fn $name() {
                let mut h = [EMPTY_HEADER; 16];
                let mut r = Request::new(&mut h);
                assert_eq!(r.parse($buf), Err($e));
            }
        };
        ($name:ident, $buf:expr, Partial) => {
            #[test]
            fn $name() {
                let mut h = [EMPTY_HEADER; 16];
                let mut r = Request::new(&mut h);
                assert_eq!(r.parse($buf), Ok(Status::Partial));
            }
        };
    }

    req!(simple_get, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", |r| {
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/");
        assert_eq!(r.query, None);
        assert_eq!(r.minor_version, 1);
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].name, "Host");
        assert_eq!(r.headers[0].value, b"a");
    });
    req!(query_split, b"GET /ad?slot=3&w=300 HTTP/1.0\r\n\r\n", |r| {
        assert_eq!(r.path, "/ad");
        assert_eq!(r.query, Some("slot=3&w=300"));
        assert_eq!(r.minor_version, 0);
        assert_eq!(r.headers.len(), 0);
    });
    req!(
        value_ows_trimmed,
        b"GET / HTTP/1.1\r\nX-A: \t v v \t\r\nX-B:\r\n\r\n",
        |r| {
            assert_eq!(r.header("x-a"), Some(&b"v v"[..]));
            assert_eq!(r.header("X-B"), Some(&b""[..]));
            assert_eq!(r.header("x-c"), None);
        }
    );
    req!(
        leading_crlf_skipped,
        b"\r\n\r\nPOST /x HTTP/1.1\r\n\r\n",
        |r| {
            assert_eq!(r.method, "POST");
        }
    );
    req!(
        obs_text_value,
        b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
        |r| {
            assert_eq!(r.header("x"), Some(&b"caf\xc3\xa9"[..]));
        }
    );
    req!(partial_empty, b"", Partial);
    req!(partial_method, b"GE", Partial);
    req!(partial_version, b"GET / HTTP/1", Partial);
    req!(partial_cr, b"GET / HTTP/1.1\r", Partial);
    req!(partial_header, b"GET / HTTP/1.1\r\nHost: a", Partial);
    req!(partial_no_blank, b"GET / HTTP/1.1\r\nHost: a\r\n", Partial);
    req!(partial_last_cr, b"GET / HTTP/1.1\r\nHost: a\r\n\r", Partial);
    req!(
        bad_method_space,
        b" GET / HTTP/1.1\r\n\r\n",
        Err(HttpError::BadMethod)
    );
    req!(
        bad_method_char,
        b"G(T / HTTP/1.1\r\n\r\n",
        Err(HttpError::BadMethod)
    );
    req!(
        bad_target_empty,
        b"GET  HTTP/1.1\r\n\r\n",
        Err(HttpError::BadTarget)
    );
    req!(
        bad_target_ctl,
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        Err(HttpError::BadTarget)
    );
    req!(
        bad_version,
        b"GET / HTTP/2.0\r\n\r\n",
        Err(HttpError::BadVersion)
    );
    req!(
        bad_version_minor,
        b"GET / HTTP/1.x\r\n\r\n",
        Err(HttpError::BadVersion)
    );
    req!(
        version_too_new,
        b"GET / HTTP/1.2\r\n\r\n",
        Err(HttpError::VersionNotSupported)
    );
    req!(
        bare_lf,
        b"GET / HTTP/1.1\nHost: a\n\n",
        Err(HttpError::BareLf)
    );
    req!(
        space_before_colon,
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        Err(HttpError::BadHeader)
    );
    req!(
        obs_fold,
        b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
        Err(HttpError::ObsFold)
    );
    req!(
        ctl_in_value,
        b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
        Err(HttpError::BadHeader)
    );
    req!(
        no_colon,
        b"GET / HTTP/1.1\r\nAbc\r\n\r\n",
        Err(HttpError::BadHeader)
    );

    #[test]
    fn too_many_headers() {
        let mut h = [EMPTY_HEADER; 2];
        let mut r = Request::new(&mut h);
        assert_eq!(
            r.parse(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
            Err(HttpError::TooManyHeaders)
        );
    }

    #[test]
    fn every_prefix_is_partial() {
        let full: &[u8] =
            b"POST /openrtb2/bid?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n";
        for i in 0..full.len() {
            let mut h = [EMPTY_HEADER; 8];
            let mut r = Request::new(&mut h);
            assert_eq!(r.parse(&full[..i]), Ok(Status::Partial), "prefix {i}");
        }
        let mut h = [EMPTY_HEADER; 8];
        let mut r = Request::new(&mut h);
        assert_eq!(r.parse(full), Ok(Status::Complete(full.len())));
    }

    #[test]
    fn word_scan_agrees_with_byte_scan() {
        // Every byte value at every offset of a 24-byte run: the word path must
        // stop exactly where the table says, never skip a rejected byte.
        for table_lo in [(&TARGET, 0x21u8), (&FIELD_VALUE, 0x20u8)] {
            let (table, lo) = table_lo;
            for bad in 0..=255u8 {
                for at in 0..24 {
                    let mut buf = vec![b'a'; 24];
                    buf[at] = bad;
                    let mut want = 0;
                    while want < buf.len() && table[buf[want] as usize] {
                        want += 1;
                    }
                    assert_eq!(scan(&buf, 0, table, lo), want, "byte {bad:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn tables_match_grammar() {
        assert!(TCHAR[b'a' as usize] && TCHAR[b'~' as usize] && !TCHAR[b':' as usize]);
        assert!(!TCHAR[b' ' as usize] && !TCHAR[b'(' as usize] && !TCHAR[0x80]);
        assert!(TARGET[b'/' as usize] && !TARGET[b' ' as usize] && !TARGET[0x7f]);
        assert!(FIELD_VALUE[b'\t' as usize] && FIELD_VALUE[0xff] && !FIELD_VALUE[b'\r' as usize]);
    }
}
