//! Starting and stopping the shards: every listener is bound before any
//! shard starts (so a bad address fails start-up with a clear error), each
//! shard builds its service on its own thread, and a stop drains: no new
//! connections, in-flight requests finish within the grace period, idle
//! keep-alive connections are woken and closed.

use super::conn::{accept_loop, ShardRt};
use super::overload::{start_monitor, Load};
use super::{FlushSignal, Service, ShardCtx, Shared, StartError, HTTP_ROUTE};
use crate::config::{Config, ShardSettings};
use crate::metrics::{LocalMetrics, Registry};
use crate::sys::{self, Half};
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

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
        let settings = config.shards(&sys::allowed_cores())?;
        let mut addr = config.listen_addr()?;
        // Bind all listeners here so a bad address fails start-up with a clear
        // error; with port 0 the first bind picks the port the others share.
        let mut fds = Vec::with_capacity(settings.len());
        if addr.port() != 0 {
            // SO_REUSEPORT would let this process share a port another
            // process serves (connections split between the two): a plain
            // bind first fails if anyone listens there.
            probe_free(addr).map_err(|source| StartError::Bind { addr, source })?;
        }
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
            let mut b = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{}", s.id))
                .coop_taskrun(shared.config.server.coop_taskrun);
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

/// Binds `addr` without SO_REUSEPORT and lets it go: fails with
/// `AddrInUse` when another socket listens there (with or without
/// SO_REUSEPORT).
pub fn probe_free(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Connections of an earlier run in TIME_WAIT do not count.
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(e.kind(), "address already in use by another process")
        } else {
            e
        }
    })
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

/// How often a shard looks for the drain flag.
const DRAIN_POLL: Duration = Duration::from_millis(500);

pub(crate) async fn run_shard<S, F>(
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
    let listener = sys::glommio_listener(fd);
    let metrics = Rc::new(LocalMetrics::new(&shared.registry, id));
    let load = Rc::new(Load::default());
    let ctx = ShardCtx {
        id,
        core: settings.core,
        shared: shared.clone(),
        metrics: metrics.clone(),
        load: load.clone(),
        flush: Rc::new(FlushSignal::default()),
    };
    let svc = make(&ctx);
    let rt = Rc::new(ShardRt {
        settings,
        cfg: shared.config.clone(),
        shared: shared.clone(),
        svc,
        metrics: metrics.clone(),
        date: RefCell::new(Default::default()),
        gzip: RefCell::new(Default::default()),
        conns: RefCell::new(HashMap::new()),
        next_conn: Cell::new(0),
        load: load.clone(),
    });
    let publish_every = Duration::from_millis(rt.cfg.metrics.publish_interval_ms);
    let monitor = start_monitor(&shared.config.overload, load.clone(), metrics.clone());
    let publisher = glommio::spawn_local({
        let metrics = metrics.clone();
        async move {
            loop {
                glommio::timer::sleep(publish_every).await;
                metrics.publish();
            }
        }
    });
    // Deferred work: woken by the service, it runs after the tasks already
    // ready (the connections that read a request in the same turn).
    let flusher = glommio::spawn_local({
        let (rt, signal) = (rt.clone(), ctx.flush.clone());
        async move {
            loop {
                signal.wait().await;
                rt.svc.flush();
                // Let the connections write what it answered before any next pass.
                futures_lite::future::yield_now().await;
            }
        }
    });
    let acceptor = glommio::spawn_local(accept_loop(listener, rt.clone()));
    shared.ready_shards.fetch_add(1, Ordering::SeqCst);
    let _ = ready.send((id, Ok(())));
    tracing::debug!(shard = id, core = rt.settings.core, "shard serving");

    // Polled, not signalled (the flag is set from another thread): often
    // enough for a prompt drain, rarely enough that an idle shard parks.
    while !shared.draining.load(Ordering::Relaxed) {
        glommio::timer::sleep(DRAIN_POLL).await;
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
                // The fd belongs to a live connection on this thread; it stays
                // open until that connection's task removes its entry.
                sys::shutdown(*fd, Half::Read);
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
            sys::shutdown(*fd, Half::Both);
        }
        let cut = Instant::now() + Duration::from_millis(500);
        while !rt.conns.borrow().is_empty() && Instant::now() < cut {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(publisher);
    drop(monitor);
    drop(flusher);
    metrics.publish();
    tracing::debug!(shard = id, "shard stopped");
}
