//! Response writer: serialises a status line, headers and body into the
//! connection's output buffer, which is flushed once per batch of pipelined
//! requests. The per-connection [`Response`] is reused, so steady-state
//! serving allocates nothing.

use std::time::{SystemTime, UNIX_EPOCH};

/// A response being built by a handler. Owned by one connection and reset for
/// every request; its buffers keep their capacity across requests.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type value; empty means none is sent.
    pub content_type: &'static str,
    /// Extra header lines, already rendered as `Name: value\r\n`.
    headers: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
    /// Something the response must wait for before it is written (money
    /// answered only once recorded); see [`Hold`].
    pub hold: Option<Hold>,
}

/// A condition a response waits on (see [`Released`]). The connection
/// answers nothing else meanwhile, so pipelined responses keep their order.
pub struct Hold(pub std::pin::Pin<Box<dyn std::future::Future<Output = Released>>>);

/// How a held response goes out.
#[derive(Debug)]
pub enum Released {
    /// As built.
    Send,
    /// As `503` with `Retry-After` (the client retries): what it waited
    /// for failed.
    Retry,
    /// This response in its place: the answer was made later (a bid
    /// decided in the shard's next batch).
    Replace(Response),
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold")
    }
}

impl Default for Response {
    fn default() -> Self {
        Response {
            status: 200,
            content_type: "",
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
            hold: None,
        }
    }
}

impl Response {
    /// Clears for the next request, keeping capacity.
    pub fn reset(&mut self) {
        self.status = 200;
        self.content_type = "";
        self.headers.clear();
        self.body.clear();
        self.close = false;
        self.hold = None;
    }

    /// Sets status, content type and body in one go.
    pub fn set(&mut self, status: u16, content_type: &'static str, body: &[u8]) {
        self.status = status;
        self.content_type = content_type;
        self.body.clear();
        self.body.extend_from_slice(body);
    }

    /// Adds a header line. The value must not contain CR or LF; such bytes are
    /// dropped so a handler can never split the response.
    pub fn header(&mut self, name: &str, value: &[u8]) {
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers
            .extend(value.iter().copied().filter(|&b| b != b'\r' && b != b'\n'));
        self.headers.extend_from_slice(b"\r\n");
    }

    /// Whether a handler already set a `Content-Encoding`.
    pub fn encoded(&self) -> bool {
        self.headers
            .split(|&b| b == b'\n')
            .any(|l| l.len() > 17 && l[..17].eq_ignore_ascii_case(b"content-encoding:"))
    }

    /// Appends the serialised response to `out`. `head_only` for HEAD requests.
    pub fn write_to(&self, out: &mut Vec<u8>, date: &HttpDate, keep_alive: bool, head_only: bool) {
        out.extend_from_slice(b"HTTP/1.1 ");
        push_u64(out, self.status as u64);
        out.push(b' ');
        out.extend_from_slice(super::reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nServer: adshard\r\nDate: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
        if !self.content_type.is_empty() {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(self.content_type.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.headers);
        // RFC 9110 8.6: no Content-Length in 1xx or 204 responses.
        if self.status != 204 && self.status >= 200 {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, self.body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        if !keep_alive || self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only && self.status != 204 {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Appends the decimal digits of `n`.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), re-rendered at most once
/// a second. Each shard owns one.
#[derive(Debug, Clone)]
pub struct HttpDate {
    secs: u64,
    text: [u8; 29],
}

impl Default for HttpDate {
    fn default() -> Self {
        let mut d = HttpDate {
            secs: u64::MAX,
            text: [b' '; 29],
        };
        d.refresh();
        d
    }
}

impl HttpDate {
    /// Re-renders if the wall-clock second has changed.
    pub fn refresh(&mut self) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs != self.secs {
            self.secs = secs;
            self.text = imf_fixdate(secs);
        }
    }

    /// The rendered date.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }
}

/// Renders seconds since the epoch as an IMF-fixdate (RFC 9110 5.6.7).
pub fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86400;
    let sod = secs % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    let (y, m, d) = (y as u64, m as usize, u64::from(d));
    let mut t = [0u8; 29];
    t[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    t[3..5].copy_from_slice(b", ");
    two(&mut t[5..7], d);
    t[7] = b' ';
    t[8..11].copy_from_slice(MONTHS[m - 1]);
    t[11] = b' ';
    two(&mut t[12..14], y / 100);
    two(&mut t[14..16], y % 100);
    t[16] = b' ';
    two(&mut t[17..19], sod / 3600);
    t[19] = b':';
    two(&mut t[20..22], sod / 60 % 60);
    t[22] = b':';
    two(&mut t[23..25], sod % 60);
    t[25..29].copy_from_slice(b" GMT");
    t
}

/// The civil date (year, month 1-12, day 1-31) of a day number, days since
/// 1970-01-01, proleptic Gregorian (Howard Hinnant's civil_from_days).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn two(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixdate_known_values() {
        assert_eq!(&imf_fixdate(784111777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(951782400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            &imf_fixdate(1_795_392_000),
            b"Mon, 23 Nov 2026 00:00:00 GMT"
        );
    }

    #[test]
    fn writes_head_and_body() {
        let mut r = Response::default();
        r.set(200, "text/plain", b"ok\n");
        r.header("X-A", b"1\r\nInjected: yes");
        let date = HttpDate {
            secs: 0,
            text: imf_fixdate(0),
        };
        let mut out = Vec::new();
        r.write_to(&mut out, &date, false, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: adshard\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Type: text/plain\r\nX-A: 1Injected: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        );
        out.clear();
        r.set(204, "", b"");
        r.write_to(&mut out, &date, true, false);
        assert!(!out.windows(14).any(|w| w == b"Content-Length"));
        out.clear();
        r.set(200, "text/plain", b"body");
        r.write_to(&mut out, &date, true, true);
        assert!(
            out.ends_with(b"Content-Length: 4\r\n\r\n"),
            "HEAD keeps length, drops body"
        );
    }

    #[test]
    fn push_u64_digits() {
        for n in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(v, n.to_string().as_bytes());
        }
    }
}
