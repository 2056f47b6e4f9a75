//! Shards: one Glommio `LocalExecutor` per configured core, each with its own
//! `SO_REUSEPORT` listener, its connections, its service instance and its
//! metrics. Nothing on the request path is shared between shards; the only
//! cross-thread state is [`Shared`] (atomics read at start-up, on `/readyz`
//! and during shutdown).
//!
//! - [`server`]: binding, starting the shards, and draining them on stop.
//! - [`conn`]: the connection loop: read, answer every whole request
//!   (pipelining), write the batch, read again.
//! - [`overload`]: the controller that sheds load when the event loop lags.
//!
//! This module moves bytes and enforces limits; reading requests is
//! [`crate::http::RequestReader`]'s job and answering them the [`Service`]'s.

pub mod conn;
pub mod overload;
pub mod server;

pub use overload::{Load, LoadLimits};
pub use server::{probe_free, Server};

use crate::config::{Config, ConfigError};
use crate::http::{Request, Response};
use crate::metrics::{LocalMetrics, Registry};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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

    /// Does the work requests deferred (their responses held until it is
    /// done): run by the shard after the service raised
    /// [`ShardCtx::flush`], once the tasks ready at that moment have run,
    /// so that one pass serves every request read in the same turn.
    fn flush(&self) {}
}

/// A shard-local flag a service raises when it deferred work to
/// [`Service::flush`]; the shard's flusher task waits on it.
#[derive(Default)]
pub struct FlushSignal {
    raised: std::cell::Cell<bool>,
    waker: std::cell::Cell<Option<std::task::Waker>>,
}

impl std::fmt::Debug for FlushSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushSignal")
            .field("raised", &self.raised.get())
            .finish()
    }
}

impl FlushSignal {
    /// Asks for a flush (once, however often raised before it runs).
    pub fn raise(&self) {
        if !self.raised.replace(true) {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// Resolves once raised, lowering it.
    pub(crate) fn wait(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.raised.replace(false) {
                std::task::Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                std::task::Poll::Pending
            }
        })
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
    /// Raised to have [`Service::flush`] run.
    pub flush: Rc<FlushSignal>,
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
