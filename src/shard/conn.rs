//! The connection loop of a shard: accept, read into a per-connection
//! buffer, answer every whole request in it (pipelining) through the
//! [`RequestReader`], write the batch of responses with one write, read
//! again. A partial request is a normal state: the loop reads more, under
//! the header or body deadline. Also the registry of open connections that
//! a drain walks, and the answer to a connection over the shard's limit.

use super::{Load, Service, Shared};
use crate::config::{Config, ShardSettings, MAX_HEADERS_CEILING};
use crate::http::write::Released;
use crate::http::{
    self, HttpError, Progress, ReaderLimits, Request, RequestReader, Response, EMPTY_HEADER,
};
use crate::metrics::{bump, LocalMetrics};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A registered connection: its socket and whether it sits idle between
/// requests (set by its task, read by the drain).
pub(crate) type ConnEntry = (RawFd, Rc<Cell<bool>>);

/// One shard's runtime: its settings, service, metrics, date cache and the
/// registry of its open connections (for draining). Lives on its thread for
/// the life of the shard.
pub(crate) struct ShardRt<S> {
    pub(crate) settings: ShardSettings,
    pub(crate) cfg: Arc<Config>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) svc: S,
    pub(crate) metrics: Rc<LocalMetrics>,
    pub(crate) date: RefCell<http::write::HttpDate>,
    /// The shard's gzip encoder (responses, see `limits.gzip_min_bytes`).
    pub(crate) gzip: RefCell<http::gzip::Gzip>,
    /// Open connections: fd and whether it is idle between requests.
    pub(crate) conns: RefCell<HashMap<u64, ConnEntry>>,
    pub(crate) next_conn: Cell<u64>,
    pub(crate) load: Rc<Load>,
}

pub(crate) async fn accept_loop<S: Service>(listener: TcpListener, rt: Rc<ShardRt<S>>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                bump(&rt.metrics.counters.conns_accepted, 1);
                if rt.conns.borrow().len() >= rt.settings.max_connections {
                    bump(&rt.metrics.counters.conns_refused, 1);
                    glommio::spawn_local(refuse(stream, rt.clone())).detach();
                } else {
                    glommio::spawn_local(serve_conn(stream, rt.clone())).detach();
                }
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly rather than spin.
                tracing::warn!(shard = rt.settings.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn refuse<S: Service>(mut stream: TcpStream, rt: Rc<ShardRt<S>>) {
    let mut resp = Response::default();
    resp.set(
        503,
        "application/json",
        b"{\"error\":\"server at connection limit\"}",
    );
    resp.close = true;
    let mut out = Vec::new();
    resp.write_to(&mut out, &rt.date.borrow(), false, false);
    let _ = stream.set_write_timeout(Some(rt.cfg.timeouts.write()));
    let _ = stream.write_all(&out).await;
    rt.metrics.record(0, 503, 0);
    bump(&rt.metrics.counters.conns_closed, 1);
}

/// Removes a connection from the shard's registry when its task ends.
struct ConnGuard<S: Service> {
    rt: Rc<ShardRt<S>>,
    key: u64,
}

impl<S: Service> Drop for ConnGuard<S> {
    fn drop(&mut self) {
        self.rt.conns.borrow_mut().remove(&self.key);
        bump(&self.rt.metrics.counters.conns_closed, 1);
    }
}

/// Where a connection is between requests, which decides its read deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request bytes buffered: the idle keep-alive timeout applies.
    Idle,
    /// Part of a head is buffered: the header deadline applies.
    Head,
    /// A head is complete and its body is incomplete: the body deadline applies.
    Body,
    /// A response waits on its [`Hold`](crate::http::write::Hold) before
    /// anything else is answered.
    Held,
}

/// One connection's buffers, reused across its requests.
struct Conn {
    /// Read buffer; valid bytes are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Responses waiting to be written, and the buffers that build them.
    io: Output,
    /// Reads requests out of `buf`.
    reader: RequestReader,
    /// When the first byte of the current head arrived.
    head_since: Option<Instant>,
    /// When the current request's head was complete and its body was not.
    body_since: Option<Instant>,
    close: bool,
}

/// Where a connection's answers are built: the response being written,
/// the bytes waiting to go out, and the inflated body of a gzip request.
struct Output {
    resp: Response,
    /// Responses waiting to be written.
    out: Vec<u8>,
    /// Inflated body (gzip).
    inflated: Vec<u8>,
    /// The response in `resp` waits on its hold before it is written.
    held: Option<Held>,
}

/// How to write a held response once its hold resolves.
struct Held {
    hold: http::write::Hold,
    keep_alive: bool,
    head: bool,
    route: usize,
    t0: Instant,
    /// The client takes gzip (for a response made while held).
    gzip: bool,
}

const READ_BUF: usize = 16 * 1024;

async fn serve_conn<S: Service>(mut stream: TcpStream, rt: Rc<ShardRt<S>>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(rt.cfg.timeouts.write()));
    let idle = Rc::new(Cell::new(true));
    let key = rt.next_conn.get();
    rt.next_conn.set(key + 1);
    rt.conns
        .borrow_mut()
        .insert(key, (stream.as_raw_fd(), idle.clone()));
    let _guard = ConnGuard {
        rt: rt.clone(),
        key,
    };
    let lim = &rt.cfg.limits;
    let max_buf = lim.max_header_bytes + lim.max_body_bytes + 64;
    let mut c = Conn {
        buf: vec![0; READ_BUF.max(lim.max_header_bytes + 1).min(max_buf)],
        start: 0,
        end: 0,
        io: Output {
            resp: Response::default(),
            out: Vec::with_capacity(READ_BUF),
            inflated: Vec::new(),
            held: None,
        },
        reader: RequestReader::new(ReaderLimits {
            max_header_bytes: lim.max_header_bytes,
            max_headers: lim.max_headers,
            max_body_bytes: lim.max_body_bytes,
        }),
        head_since: None,
        body_since: None,
        close: false,
    };
    let mut t0 = Instant::now();
    loop {
        let mut phase = c.process(&rt, t0);
        while phase == Some(Phase::Held) {
            c.release_held(&rt).await;
            phase = if c.close {
                None
            } else {
                c.process(&rt, Instant::now())
            };
        }
        if !c.io.out.is_empty() {
            let n = c.io.out.len();
            if stream.write_all(&c.io.out).await.is_err() {
                return;
            }
            bump(&rt.metrics.counters.bytes_out, n as u64);
            c.io.out.clear();
        }
        let phase = match phase {
            Some(p) if !c.close => p,
            _ => {
                let _ = stream.close().await;
                return;
            }
        };
        if phase == Phase::Idle && rt.shared.draining.load(Ordering::Relaxed) {
            let _ = stream.close().await;
            return;
        }
        c.make_room(max_buf);
        let timeout = c.read_timeout(phase, &rt.cfg.timeouts, Instant::now());
        idle.set(phase == Phase::Idle);
        let res = if timeout.is_zero() {
            Err(std::io::ErrorKind::TimedOut.into())
        } else {
            let _ = stream.set_read_timeout(Some(timeout));
            stream.read(&mut c.buf[c.end..]).await
        };
        idle.set(false);
        t0 = Instant::now();
        match res {
            Ok(0) => {
                if phase != Phase::Idle {
                    rt.metrics.http_error(HttpError::Truncated);
                }
                return;
            }
            Ok(n) => {
                c.end += n;
                bump(&rt.metrics.counters.bytes_in, n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && phase != Phase::Idle => {
                let err = if phase == Phase::Head {
                    HttpError::HeaderTimeout
                } else {
                    HttpError::BodyTimeout
                };
                c.fail(&rt, err, t0);
                let _ = stream.write_all(&c.io.out).await;
                let _ = stream.close().await;
                return;
            }
            Err(_) => return,
        }
    }
}

impl Conn {
    /// Answers every complete request in the buffer. Returns the phase to read
    /// in next, or `None` to close after flushing.
    fn process<S: Service>(&mut self, rt: &ShardRt<S>, t0: Instant) -> Option<Phase> {
        rt.date.borrow_mut().refresh();
        loop {
            match self.step(rt, t0) {
                Ok(None) if self.close => return None,
                Ok(None) => continue,
                Ok(Some(phase)) => return Some(phase),
                Err(e) => {
                    self.fail(rt, e, t0);
                    return None;
                }
            }
        }
    }

    /// How long the next read may wait: the idle keep-alive timeout between
    /// requests, else what is left of the head's or the body's deadline.
    fn read_timeout(&self, phase: Phase, t: &crate::config::Timeouts, now: Instant) -> Duration {
        match phase {
            Phase::Idle => t.idle_keepalive(),
            Phase::Head => {
                (self.head_since.unwrap_or(now) + t.header_read()).saturating_duration_since(now)
            }
            Phase::Body => {
                (self.body_since.unwrap_or(now) + t.body_read()).saturating_duration_since(now)
            }
            Phase::Held => Duration::ZERO,
        }
    }

    /// Waits for the held response's condition, then queues it (or, if the
    /// condition failed, a 503 with `Retry-After` in its place).
    async fn release_held<S: Service>(&mut self, rt: &ShardRt<S>) {
        let Some(h) = self.io.held.take() else { return };
        let released = h.hold.0.await;
        let r = &mut self.io.resp;
        match released {
            Released::Send => {}
            Released::Retry => {
                r.reset();
                r.set(
                    503,
                    "application/json",
                    b"{\"error\":\"not recorded, retry\"}",
                );
                r.header("Retry-After", b"1");
            }
            Released::Replace(made) => {
                *r = made;
                r.hold = None;
                compress(rt, r, h.gzip);
            }
        }
        rt.date.borrow_mut().refresh();
        r.write_to(&mut self.io.out, &rt.date.borrow(), h.keep_alive, h.head);
        rt.metrics
            .record(h.route, r.status, h.t0.elapsed().as_nanos() as u64);
    }

    /// Writes the error response for `e` and marks the connection to close.
    fn fail<S: Service>(&mut self, rt: &ShardRt<S>, e: HttpError, t0: Instant) {
        let r = &mut self.io.resp;
        r.reset();
        r.status = e.status();
        r.content_type = "application/json";
        r.body.extend_from_slice(b"{\"error\":\"");
        r.body.extend_from_slice(e.to_string().as_bytes());
        r.body.extend_from_slice(b"\"}");
        r.close = true;
        r.write_to(&mut self.io.out, &rt.date.borrow(), false, false);
        rt.metrics.http_error(e);
        rt.metrics
            .record(0, r.status, t0.elapsed().as_nanos() as u64);
        self.close = true;
    }

    /// Handles at most one request. `Ok(None)`: one was answered;
    /// `Ok(Some(phase))`: more bytes are needed.
    fn step<S: Service>(
        &mut self,
        rt: &ShardRt<S>,
        t0: Instant,
    ) -> Result<Option<Phase>, HttpError> {
        let Conn {
            buf,
            start,
            end,
            io,
            reader,
            head_since,
            body_since,
            close,
        } = self;
        if *start == *end && !reader.in_body() {
            *start = 0;
            *end = 0;
            *head_since = None;
            return Ok(Some(Phase::Idle));
        }
        head_since.get_or_insert(t0);
        let mut storage = [EMPTY_HEADER; MAX_HEADERS_CEILING];
        let ready = match reader.next(&buf[*start..*end], &mut storage)? {
            Progress::NeedHead => return Ok(Some(Phase::Head)),
            Progress::NeedBody { send_continue } => {
                if send_continue {
                    io.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                body_since.get_or_insert(t0);
                return Ok(Some(Phase::Body));
            }
            Progress::Ready(ready) => ready,
        };
        let body = reader.body(&ready);
        *close |= dispatch(rt, &ready.req, body, ready.framing, io, t0)?;
        *start += ready.consumed;
        *head_since = None;
        *body_since = None;
        Ok(io.held.is_some().then_some(Phase::Held))
    }

    /// Makes space to read into: compacts consumed bytes and grows the buffer
    /// (up to `max_buf`) when a pending body needs it.
    fn make_room(&mut self, max_buf: usize) {
        if let Some((from, n)) = self.reader.take_dead_chunk_bytes() {
            // Chunk bytes already decoded are dead: drop them, keep the head.
            let from = self.start + from;
            self.buf.copy_within(from + n..self.end, from);
            self.end -= n;
        }
        if self.start > 0 && (self.end == self.buf.len() || self.start > self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let need = self.reader.wanted().unwrap_or(self.end + 1);
        if need > self.buf.len() || self.end == self.buf.len() {
            let want = need.max(self.buf.len() * 2).min(max_buf);
            self.buf.resize(want, 0);
        }
    }
}

/// Runs the service on one complete request and queues its response. Returns
/// whether the connection must close afterwards.
fn dispatch<S: Service>(
    rt: &ShardRt<S>,
    req: &Request<'_, '_>,
    wire_body: &[u8],
    framing: http::Framing,
    io: &mut Output,
    t0: Instant,
) -> Result<bool, HttpError> {
    let Output {
        resp,
        out,
        inflated,
        held,
    } = io;
    resp.reset();
    // Shed before the body is inflated: a shed request costs its read and
    // its head parse, nothing more.
    let shed = if rt.load.should_shed() {
        rt.svc.shed(req, resp)
    } else {
        None
    };
    let route = match shed {
        Some(r) => {
            bump(&rt.metrics.counters.shed, 1);
            r + 1
        }
        None => {
            let body = http::content(&framing, wire_body, inflated, rt.cfg.limits.max_body_bytes)?;
            rt.svc.handle(req, body, resp) + 1
        }
    };
    let gzip = http::gzip::accepts_gzip(req.header("accept-encoding"));
    if resp.hold.is_none() {
        compress(rt, resp, gzip);
    }
    let keep_alive = framing.keep_alive && !rt.shared.draining.load(Ordering::Relaxed);
    if let Some(hold) = resp.hold.take() {
        *held = Some(Held {
            hold,
            keep_alive,
            head: req.method == "HEAD",
            route,
            t0,
            gzip,
        });
        return Ok(!keep_alive || resp.close);
    }
    resp.write_to(out, &rt.date.borrow(), keep_alive, req.method == "HEAD");
    rt.metrics
        .record(route, resp.status, t0.elapsed().as_nanos() as u64);
    Ok(!keep_alive || resp.close)
}

/// Gzips a successful response's body when the client takes gzip and it is
/// at least `limits.gzip_min_bytes` (0: never).
fn compress<S: Service>(rt: &ShardRt<S>, resp: &mut Response, accepts: bool) {
    let min = rt.cfg.limits.gzip_min_bytes;
    if accepts && min > 0 && resp.body.len() >= min && resp.status == 200 && !resp.encoded() {
        rt.gzip.borrow_mut().encode(&mut resp.body);
        resp.header("Content-Encoding", b"gzip");
        resp.header("Vary", b"Accept-Encoding");
    }
}
