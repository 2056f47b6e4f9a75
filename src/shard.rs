//! Shards: one Glommio `LocalExecutor` per configured core, each with its own
//! `SO_REUSEPORT` listener, its connections, its service instance and its
//! metrics. Nothing on the request path is shared between shards; the only
//! cross-thread state is [`Shared`] (atomics read at start-up, on `/readyz`
//! and during shutdown).
//!
//! The connection loop reads into a per-connection buffer, answers every
//! complete request in it (pipelining), writes the batch of responses with one
//! write, and reads again. A partial request is a normal state: the loop just
//! reads more, under the header or body deadline. This module moves bytes and
//! enforces limits; parsing is `http`'s job and answering is the [`Service`]'s.

use crate::config::{Config, ConfigError, ShardSettings, MAX_HEADERS_CEILING};
use crate::http::{
    self, BodyKind, ChunkedDecoder, Framing, HttpError, Request, Response, Status, EMPTY_HEADER,
};
use crate::metrics::{bump, LocalMetrics, Registry};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Label of the metrics route for requests refused before routing.
pub const HTTP_ROUTE: &str = "http";

/// What a shard's request handler implements. One instance per shard, built
/// on that shard's thread, so it may hold `Rc`/`RefCell` state.
pub trait Service: 'static {
    /// Metric labels of the routes, indexed by what [`handle`](Self::handle) returns.
    const ROUTES: &'static [&'static str];

    /// Answers one complete request. `body` is the decoded body (de-chunked,
    /// inflated). Returns the index of the route in [`ROUTES`](Self::ROUTES).
    fn handle(&self, req: &Request<'_, '_>, body: &[u8], resp: &mut Response) -> usize;

    /// Answers a request cheaply because the shard is overloaded, or returns
    /// `None` to serve it anyway (health checks, metrics). The default sheds
    /// nothing.
    fn shed(&self, _req: &Request<'_, '_>, _resp: &mut Response) -> Option<usize> {
        None
    }
}

/// A shard's load, from its event-loop lag: how late a timer set for
/// `overload.check_interval_ms` fires. Every runnable connection runs before
/// the timer does, so the lag is the queueing delay a request sees inside
/// the shard. Two rules make a shard overloaded:
/// - the smoothed lag is above `max_lag_ms` (a long queue), or
/// - every sample for `standing_window_ms` was above `standing_lag_ms` (a
///   standing queue, as CoDel defines one). A client that keeps its
///   connections busy and queues the rest on its side shows the shard a short
///   queue (256 connections of 50 µs requests: 13 ms) that never empties,
///   while its own queue grows without bound; a shard that keeps up empties
///   its queue now and then, and one low sample resets the window.
///
/// While overloaded, the shed fraction rises by `shed_rise_per_s` (10: 2
/// points per 2 ms sample), up to 0.95; otherwise it decays by
/// `shed_decay_per_s` (5), more slowly, so that shedding does not stop the
/// moment it has emptied the queue and let the backlog straight back.
/// Owned by one shard.
#[derive(Debug, Default)]
pub struct Load {
    /// Smoothed lag in microseconds.
    pub lag_us: Cell<f64>,
    /// How long every sample has been above `standing_lag`.
    standing: Cell<Duration>,
    /// Fraction of sheddable requests to shed now (0..=0.95).
    pub shed_fraction: Cell<f64>,
    /// Requests seen, for deterministic spreading of sheds.
    seq: Cell<u64>,
}

/// The thresholds [`Load::observe`] compares against (from `[overload]`).
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    /// Smoothed lag above which the shard sheds.
    pub max_lag: Duration,
    /// Lag a queue may keep for `standing_window` before the shard sheds.
    pub standing_lag: Duration,
    /// See `standing_lag`.
    pub standing_window: Duration,
    /// Shed fraction gained per second overloaded.
    pub rise_per_s: f64,
    /// Shed fraction lost per second otherwise.
    pub decay_per_s: f64,
}

impl Load {
    /// Whether to shed this request.
    pub fn should_shed(&self) -> bool {
        let f = self.shed_fraction.get();
        if f <= 0.0 {
            return false;
        }
        let n = self.seq.get().wrapping_add(1);
        self.seq.set(n);
        // Golden-ratio sequence: evenly spread, no RNG state.
        ((n as f64) * 0.618_033_988_749_895).fract() < f
    }

    /// Takes one sample: the timer fired `lag` late, `wall` after the last sample.
    pub fn observe(&self, lag: Duration, wall: Duration, lim: &LoadLimits) {
        let l = 0.8 * self.lag_us.get() + 0.2 * lag.as_secs_f64() * 1e6;
        self.lag_us.set(l);
        let standing = if lag > lim.standing_lag {
            self.standing.get() + wall
        } else {
            Duration::ZERO
        };
        self.standing.set(standing);
        let overloaded = l > lim.max_lag.as_secs_f64() * 1e6 || standing >= lim.standing_window;
        let f = self.shed_fraction.get();
        let f = if overloaded {
            (f + lim.rise_per_s * wall.as_secs_f64()).min(0.95)
        } else {
            (f - lim.decay_per_s * wall.as_secs_f64()).max(0.0)
        };
        self.shed_fraction.set(f);
    }
}

/// State shared by all shards and the controlling thread. Lives as long as
/// the server.
#[derive(Debug)]
pub struct Shared {
    /// Set once on shutdown; shards stop accepting and drain.
    pub draining: AtomicBool,
    /// Shards that have started serving.
    pub ready_shards: AtomicUsize,
    /// Configured shard count.
    pub shards: usize,
    /// All shards' metrics.
    pub registry: Arc<Registry>,
    /// The validated configuration.
    pub config: Arc<Config>,
}

impl Shared {
    /// Whether every shard is serving and no drain has begun.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && self.ready_shards.load(Ordering::Relaxed) == self.shards
    }
}

/// What a [`Service`] factory gets on its shard's thread.
#[derive(Debug, Clone)]
pub struct ShardCtx {
    /// Shard number.
    pub id: usize,
    /// Core it runs on.
    pub core: usize,
    /// Cross-shard state.
    pub shared: Arc<Shared>,
    /// This shard's metrics.
    pub metrics: Rc<LocalMetrics>,
    /// This shard's load (event-loop lag), for services that use it (tmax).
    pub load: Rc<Load>,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A shard's executor failed to start.
    #[error("shard {shard} (core {core}) failed to start: {message}")]
    Shard {
        /// Shard number.
        shard: usize,
        /// Core.
        core: usize,
        /// The cause.
        message: String,
    },
}

/// A running server: its shards' threads and the shared state.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl Server {
    /// Binds every shard's listener, starts the shards, and returns once all
    /// are serving. `make` builds each shard's service on that shard's thread.
    pub fn start<S, F>(config: Config, make: F) -> Result<Server, StartError>
    where
        S: Service,
        F: Fn(&ShardCtx) -> S + Send + Sync + 'static,
    {
        let settings = config.shards(&crate::config::allowed_cores())?;
        let mut addr = config.listen_addr()?;
        // Bind all listeners here so a bad address fails start-up with a clear
        // error; with port 0 the first bind picks the port the others share.
        let mut fds = Vec::with_capacity(settings.len());
        for _ in &settings {
            let fd = bind_listener(addr, config.server.backlog)
                .map_err(|source| StartError::Bind { addr, source })?;
            if addr.port() == 0 {
                let sock = socket2::SockRef::from(&fd);
                if let Some(a) = sock.local_addr().ok().and_then(|a| a.as_socket()) {
                    addr = a;
                }
            }
            fds.push(fd);
        }
        let mut routes = vec![HTTP_ROUTE];
        routes.extend_from_slice(S::ROUTES);
        let routes: &'static [&'static str] = Box::leak(routes.into_boxed_slice());
        let registry = Registry::new(routes, settings.len());
        let shared = Arc::new(Shared {
            draining: AtomicBool::new(false),
            ready_shards: AtomicUsize::new(0),
            shards: settings.len(),
            registry,
            config: Arc::new(config),
        });
        let make = Arc::new(make);
        let (tx, rx) = mpsc::channel::<(usize, Result<(), String>)>();
        let mut threads = Vec::new();
        for (s, fd) in settings.iter().cloned().zip(fds) {
            let placement = if shared.config.server.pin {
                Placement::Fixed(s.core)
            } else {
                Placement::Unbound
            };
            let mut b = LocalExecutorBuilder::new(placement).name(&format!("shard-{}", s.id));
            if !s.spin_before_park.is_zero() {
                b = b.spin_before_park(s.spin_before_park);
            }
            let (shared, make, tx) = (shared.clone(), make.clone(), tx.clone());
            let id = s.id;
            let core = s.core;
            let handle = b
                .spawn(move || async move { run_shard(s, fd, shared, make, tx).await })
                .map_err(|e| StartError::Shard {
                    shard: id,
                    core,
                    message: e.to_string(),
                })?;
            threads.push(handle);
        }
        drop(tx);
        for _ in 0..settings.len() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((_, Ok(()))) => {}
                Ok((id, Err(message))) => {
                    shared.draining.store(true, Ordering::SeqCst);
                    return Err(StartError::Shard {
                        shard: id,
                        core: settings[id].core,
                        message,
                    });
                }
                Err(_) => {
                    shared.draining.store(true, Ordering::SeqCst);
                    let id = shared.ready_shards.load(Ordering::SeqCst);
                    return Err(StartError::Shard {
                        shard: id,
                        core: settings.get(id).map_or(0, |s| s.core),
                        message: "executor exited before serving (is io_uring available and RLIMIT_MEMLOCK large enough?)".into(),
                    });
                }
            }
        }
        tracing::info!(%addr, shards = settings.len(), "serving");
        Ok(Server {
            shared,
            addr,
            threads,
        })
    }

    /// The bound address (the real port when `server.listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (metrics registry, readiness).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks every shard to drain: stop accepting, finish in-flight requests
    /// within `timeouts.shutdown_grace_ms`, then close. Does not wait.
    pub fn begin_shutdown(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    /// Drains (see [`begin_shutdown`](Self::begin_shutdown)) and waits for
    /// every shard to finish.
    pub fn stop(self) {
        self.begin_shutdown();
        self.join();
    }

    /// Waits for every shard to finish (after a shutdown was begun elsewhere).
    pub fn join(self) {
        for t in self.threads {
            if let Err(e) = t.join() {
                tracing::error!(error = %e, "shard ended with an error");
            }
        }
        tracing::info!("all shards stopped");
    }
}

fn bind_listener(addr: SocketAddr, backlog: u32) -> std::io::Result<OwnedFd> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_port(true)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(OwnedFd::from(sock))
}

/// A registered connection: its socket and whether it sits idle between
/// requests (set by its task, read by the drain).
type ConnEntry = (RawFd, Rc<Cell<bool>>);

/// One shard's runtime: its settings, service, metrics, date cache and the
/// registry of its open connections (for draining). Lives on its thread for
/// the life of the shard.
struct ShardRt<S> {
    settings: ShardSettings,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    svc: S,
    metrics: Rc<LocalMetrics>,
    date: RefCell<http::write::HttpDate>,
    /// Open connections: fd and whether it is idle between requests.
    conns: RefCell<HashMap<u64, ConnEntry>>,
    next_conn: Cell<u64>,
    load: Rc<Load>,
}

async fn run_shard<S, F>(
    settings: ShardSettings,
    fd: OwnedFd,
    shared: Arc<Shared>,
    make: Arc<F>,
    ready: mpsc::Sender<(usize, Result<(), String>)>,
) where
    S: Service,
    F: Fn(&ShardCtx) -> S,
{
    let id = settings.id;
    // SAFETY: `fd` is a listening TCP socket we own (bound in `bind_listener`);
    // ownership moves into the glommio listener, which closes it on drop.
    let listener = unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
    let metrics = Rc::new(LocalMetrics::new(&shared.registry, id));
    let load = Rc::new(Load::default());
    let ctx = ShardCtx {
        id,
        core: settings.core,
        shared: shared.clone(),
        metrics: metrics.clone(),
        load: load.clone(),
    };
    let svc = make(&ctx);
    let rt = Rc::new(ShardRt {
        settings,
        cfg: shared.config.clone(),
        shared: shared.clone(),
        svc,
        metrics: metrics.clone(),
        date: RefCell::new(Default::default()),
        conns: RefCell::new(HashMap::new()),
        next_conn: Cell::new(0),
        load: load.clone(),
    });
    let publish_every = Duration::from_millis(rt.cfg.metrics.publish_interval_ms);
    let ov = shared.config.overload.clone();
    let monitor = ov.enabled.then(|| {
        let load = load.clone();
        let metrics = metrics.clone();
        let every = Duration::from_millis(ov.check_interval_ms);
        let lim = LoadLimits {
            max_lag: Duration::from_millis(ov.max_lag_ms),
            standing_lag: Duration::from_millis(ov.standing_lag_ms),
            standing_window: Duration::from_millis(ov.standing_window_ms),
            rise_per_s: ov.shed_rise_per_s,
            decay_per_s: ov.shed_decay_per_s,
        };
        glommio::spawn_local(async move {
            let mut t = Instant::now();
            loop {
                glommio::timer::sleep(every).await;
                let now = Instant::now();
                let wall = now - t;
                load.observe(wall.saturating_sub(every), wall, &lim);
                metrics
                    .counters
                    .set_load(load.lag_us.get(), load.shed_fraction.get());
                t = now;
            }
        })
    });
    let publisher = glommio::spawn_local({
        let metrics = metrics.clone();
        async move {
            loop {
                glommio::timer::sleep(publish_every).await;
                metrics.publish();
            }
        }
    });
    let acceptor = glommio::spawn_local(accept_loop(listener, rt.clone()));
    shared.ready_shards.fetch_add(1, Ordering::SeqCst);
    let _ = ready.send((id, Ok(())));
    tracing::debug!(shard = id, core = rt.settings.core, "shard serving");

    while !shared.draining.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    // Stop accepting: dropping the task cancels it and closes the listener.
    drop(acceptor);
    let deadline = Instant::now() + rt.cfg.timeouts.shutdown_grace();
    tracing::info!(shard = id, open = rt.conns.borrow().len(), "draining");
    loop {
        // Idle keep-alive connections are woken with a read shutdown (their
        // pending read returns EOF); busy ones finish their request and close.
        for (fd, idle) in rt.conns.borrow().values() {
            if idle.get() {
                // SAFETY: the fd belongs to a live connection on this thread; it
                // stays open until that connection's task removes its entry.
                unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
            }
        }
        if rt.conns.borrow().is_empty() || Instant::now() >= deadline {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    let left = rt.conns.borrow().len();
    if left > 0 {
        tracing::warn!(
            shard = id,
            connections = left,
            "grace period over; closing connections"
        );
        for (fd, _) in rt.conns.borrow().values() {
            // SAFETY: as above.
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
        let cut = Instant::now() + Duration::from_millis(500);
        while !rt.conns.borrow().is_empty() && Instant::now() < cut {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(publisher);
    drop(monitor);
    metrics.publish();
    tracing::debug!(shard = id, "shard stopped");
}

async fn accept_loop<S: Service>(listener: TcpListener, rt: Rc<ShardRt<S>>) {
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
}

/// A request whose head is complete but whose body is not yet.
#[derive(Debug)]
struct Pending {
    head_len: usize,
    framing: Framing,
    chunk: ChunkedDecoder,
    /// Wire bytes after the head already fed to the chunk decoder.
    chunk_wire: usize,
    sent_continue: bool,
    since: Instant,
}

/// One connection's buffers, reused across its requests.
struct Conn {
    /// Read buffer; valid bytes are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Responses waiting to be written.
    out: Vec<u8>,
    resp: Response,
    /// De-chunked body of the pending request.
    body: Vec<u8>,
    /// Inflated body (gzip).
    inflated: Vec<u8>,
    pending: Option<Pending>,
    /// When the first byte of the current head arrived.
    head_since: Option<Instant>,
    close: bool,
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
        out: Vec::with_capacity(READ_BUF),
        resp: Response::default(),
        body: Vec::new(),
        inflated: Vec::new(),
        pending: None,
        head_since: None,
        close: false,
    };
    let mut t0 = Instant::now();
    loop {
        let phase = c.process(&rt, t0);
        if !c.out.is_empty() {
            let n = c.out.len();
            if stream.write_all(&c.out).await.is_err() {
                return;
            }
            bump(&rt.metrics.counters.bytes_out, n as u64);
            c.out.clear();
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
        let now = Instant::now();
        let t = &rt.cfg.timeouts;
        let timeout = match phase {
            Phase::Idle => t.idle_keepalive(),
            Phase::Head => {
                (c.head_since.unwrap_or(now) + t.header_read()).saturating_duration_since(now)
            }
            Phase::Body => c
                .pending
                .as_ref()
                .map_or(now, |p| p.since + t.body_read())
                .saturating_duration_since(now),
        };
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
                let _ = stream.write_all(&c.out).await;
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

    /// Writes the error response for `e` and marks the connection to close.
    fn fail<S: Service>(&mut self, rt: &ShardRt<S>, e: HttpError, t0: Instant) {
        let r = &mut self.resp;
        r.reset();
        r.status = e.status();
        r.content_type = "application/json";
        r.body.extend_from_slice(b"{\"error\":\"");
        r.body.extend_from_slice(e.to_string().as_bytes());
        r.body.extend_from_slice(b"\"}");
        r.close = true;
        r.write_to(&mut self.out, &rt.date.borrow(), false, false);
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
        let lim = &rt.cfg.limits;
        let Conn {
            buf,
            start,
            end,
            out,
            resp,
            body,
            inflated,
            pending,
            head_since,
            close,
        } = self;
        if *start == *end && pending.is_none() {
            *start = 0;
            *end = 0;
            *head_since = None;
            return Ok(Some(Phase::Idle));
        }
        head_since.get_or_insert(t0);
        let mut storage = [EMPTY_HEADER; MAX_HEADERS_CEILING];
        let data = &buf[*start..*end];
        if pending.is_none() {
            let mut req = Request::new(&mut storage[..lim.max_headers]);
            let head_len = match req.parse(data)? {
                Status::Partial if data.len() > lim.max_header_bytes => {
                    return Err(HttpError::HeadTooLarge)
                }
                Status::Partial => return Ok(Some(Phase::Head)),
                Status::Complete(n) if n > lim.max_header_bytes => {
                    return Err(HttpError::HeadTooLarge)
                }
                Status::Complete(n) => n,
            };
            let framing = Framing::of(&req, lim.max_body_bytes)?;
            // Fast path: the whole request is already here; answer from this parse.
            let wire = match framing.body {
                BodyKind::None => Some(0),
                BodyKind::Length(n) if data.len() - head_len >= n => Some(n),
                _ => None,
            };
            if let Some(n) = wire {
                let b = &data[head_len..head_len + n];
                *close |= dispatch(rt, &req, b, framing, inflated, resp, out, t0)?;
                *start += head_len + n;
                *head_since = None;
                return Ok(None);
            }
            *pending = Some(Pending {
                head_len,
                framing,
                chunk: ChunkedDecoder::new(),
                chunk_wire: 0,
                sent_continue: false,
                since: t0,
            });
        }
        let Some(p) = pending.as_mut() else {
            unreachable!("pending was set above")
        };
        let after_head = &data[p.head_len..];
        let (complete, wire) = match p.framing.body {
            BodyKind::None => (true, 0),
            BodyKind::Length(n) => (after_head.len() >= n, n),
            BodyKind::Chunked => {
                let used = p
                    .chunk
                    .decode(&after_head[p.chunk_wire..], body, lim.max_body_bytes)?;
                p.chunk_wire += used;
                (p.chunk.is_done(), p.chunk_wire)
            }
        };
        if !complete {
            if p.framing.expect_continue && !p.sent_continue {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                p.sent_continue = true;
            }
            return Ok(Some(Phase::Body));
        }
        let mut req = Request::new(&mut storage[..lim.max_headers]);
        // The same bytes parsed Complete before, so this parse cannot differ.
        req.parse(&data[..p.head_len])?;
        let b: &[u8] = match p.framing.body {
            BodyKind::Chunked => body,
            _ => &after_head[..wire],
        };
        *close |= dispatch(rt, &req, b, p.framing, inflated, resp, out, t0)?;
        *start += p.head_len + wire;
        *pending = None;
        *head_since = None;
        body.clear();
        Ok(None)
    }

    /// Makes space to read into: compacts consumed bytes and grows the buffer
    /// (up to `max_buf`) when a pending body needs it.
    fn make_room(&mut self, max_buf: usize) {
        if let Some(p) = self.pending.as_mut() {
            if p.chunk_wire > 0 {
                // Chunk bytes already decoded are dead: drop them, keep the head.
                let from = self.start + p.head_len + p.chunk_wire;
                self.buf
                    .copy_within(from..self.end, self.start + p.head_len);
                self.end -= p.chunk_wire;
                p.chunk_wire = 0;
            }
        }
        if self.start > 0 && (self.end == self.buf.len() || self.start > self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let need = match self.pending.as_ref().map(|p| (p.head_len, p.framing.body)) {
            Some((h, BodyKind::Length(n))) => h + n,
            _ => self.end + 1,
        };
        if need > self.buf.len() || self.end == self.buf.len() {
            let want = need.max(self.buf.len() * 2).min(max_buf);
            self.buf.resize(want, 0);
        }
    }
}

/// Runs the service on one complete request and queues its response. Returns
/// whether the connection must close afterwards.
#[allow(clippy::too_many_arguments)]
fn dispatch<S: Service>(
    rt: &ShardRt<S>,
    req: &Request<'_, '_>,
    wire_body: &[u8],
    framing: Framing,
    inflated: &mut Vec<u8>,
    resp: &mut Response,
    out: &mut Vec<u8>,
    t0: Instant,
) -> Result<bool, HttpError> {
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
            let body = if framing.gzip {
                http::body::gunzip(wire_body, inflated, rt.cfg.limits.max_body_bytes)?;
                &inflated[..]
            } else {
                wire_body
            };
            rt.svc.handle(req, body, resp) + 1
        }
    };
    let keep_alive = framing.keep_alive && !rt.shared.draining.load(Ordering::Relaxed);
    resp.write_to(out, &rt.date.borrow(), keep_alive, req.method == "HEAD");
    rt.metrics
        .record(route, resp.status, t0.elapsed().as_nanos() as u64);
    Ok(!keep_alive || resp.close)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: LoadLimits = LoadLimits {
        max_lag: Duration::from_millis(20),
        standing_lag: Duration::from_millis(2),
        standing_window: Duration::from_millis(50),
        rise_per_s: 25.0,
        decay_per_s: 1.0,
    };
    const MS: Duration = Duration::from_millis(1);

    /// `n` samples 2 ms apart, each `lag` late.
    fn feed(load: &Load, n: usize, lag: Duration) {
        for _ in 0..n {
            load.observe(lag, 2 * MS, &LIM);
        }
    }

    #[test]
    fn a_long_queue_sheds() {
        let load = Load::default();
        feed(&load, 40, 30 * MS);
        assert!(load.lag_us.get() > 20_000.0);
        assert_eq!(load.shed_fraction.get(), 0.95, "capped below a blackout");
    }

    #[test]
    fn a_standing_short_queue_sheds_after_the_window() {
        // 256 connections of 50 us, always ready: 13 ms of lag, under max_lag.
        let load = Load::default();
        feed(&load, 24, 13 * MS);
        assert_eq!(load.shed_fraction.get(), 0.0, "48 ms: not yet standing");
        feed(&load, 1, 13 * MS);
        assert!(load.shed_fraction.get() > 0.0, "50 ms: standing");
        feed(&load, 40, 13 * MS);
        assert_eq!(load.shed_fraction.get(), 0.95);
    }

    #[test]
    fn a_queue_that_empties_does_not_shed() {
        // The same lag, but one sample in twenty finds the loop empty.
        let load = Load::default();
        for _ in 0..50 {
            feed(&load, 19, 13 * MS);
            feed(&load, 1, Duration::ZERO);
        }
        assert_eq!(load.shed_fraction.get(), 0.0);
        // A few busy connections: always a queue, but under standing_lag.
        feed(&load, 500, MS);
        assert_eq!(load.shed_fraction.get(), 0.0);
    }

    #[test]
    fn shedding_decays_slowly_when_load_falls() {
        let load = Load::default();
        feed(&load, 100, 13 * MS);
        assert_eq!(load.shed_fraction.get(), 0.95);
        feed(&load, 100, Duration::ZERO);
        let f = load.shed_fraction.get();
        assert!((f - 0.75).abs() < 1e-9, "200 ms later: {f}");
        feed(&load, 400, Duration::ZERO);
        assert_eq!(load.shed_fraction.get(), 0.0);
        assert!(!load.should_shed());
    }

    #[test]
    fn sheds_the_fraction_asked() {
        let load = Load::default();
        load.shed_fraction.set(0.3);
        let shed = (0..10_000).filter(|_| load.should_shed()).count();
        assert!((2_900..=3_100).contains(&shed), "{shed}");
    }
}
