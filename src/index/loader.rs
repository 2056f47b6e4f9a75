//! The index loader thread: loads the campaigns file at start-up, then
//! rebuilds on file change (polled) or on an admin upload, and publishes each
//! new [`Index`] with `ArcSwap`. A file that fails to parse or validate keeps
//! the old index in service; the error goes to the log and to [`LoadStatus`]
//! (shown on `/metrics` and `/admin/index`). Replaced indexes are dropped on
//! this thread once no shard holds them, so freeing never stalls a shard.

use super::{Index, IndexError};
use crate::sys::file_stamp;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where campaigns come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Text compiled into the binary.
    Embedded(&'static str),
    /// A file, watched for changes.
    File(PathBuf),
}

/// What the loader last did. Published with `ArcSwap` like the index.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadStatus {
    /// Version of the index in service.
    pub version: u64,
    /// Campaigns in it.
    pub campaigns: usize,
    /// Where it came from.
    pub source: String,
    /// When it was published (Unix seconds).
    pub loaded_at: u64,
    /// Milliseconds the last successful build took.
    pub build_ms: u64,
    /// Bytes its posting lists hold.
    pub postings_bytes: usize,
    /// Successful reloads after the first load.
    pub reloads: u64,
    /// Refused loads.
    pub errors: u64,
    /// The last refusal, if any.
    pub last_error: Option<String>,
}

impl LoadStatus {
    /// The loader's families on the `/metrics` page.
    pub fn render(&self, out: &mut String) {
        use crate::prom::single;
        single(
            out,
            "adshard_index_version",
            "gauge",
            "Version of the campaign index in service.",
            self.version,
        );
        single(
            out,
            "adshard_index_campaigns",
            "gauge",
            "Campaigns in the index in service.",
            self.campaigns,
        );
        single(
            out,
            "adshard_index_build_milliseconds",
            "gauge",
            "Time the last successful index build took.",
            self.build_ms,
        );
        single(
            out,
            "adshard_index_postings_bytes",
            "gauge",
            "Bytes the posting lists of the index in service hold.",
            self.postings_bytes,
        );
        single(
            out,
            "adshard_index_reloads_total",
            "counter",
            "Successful index reloads.",
            self.reloads,
        );
        single(
            out,
            "adshard_index_reload_errors_total",
            "counter",
            "Refused index reloads (old index kept).",
            self.errors,
        );
        if let Some(e) = &self.last_error {
            crate::prom::error(
                out,
                "adshard_index_last_error",
                "Last refused reload (value is 1).",
                e,
            );
        }
    }
}

/// Requests to the loader.
#[derive(Debug)]
pub enum Command {
    /// Replace the campaigns with this text (an admin upload).
    Replace {
        /// The file's text.
        text: String,
        /// Label for logs.
        origin: String,
        /// Past the shrink guard (an empty set, or a large drop, on purpose).
        force: bool,
    },
    /// Exit the thread.
    Stop,
}

/// Handles for shards and the controlling thread. Cloned into every shard.
#[derive(Debug, Clone)]
pub struct IndexHandle {
    /// The index in service.
    pub current: Arc<ArcSwap<Index>>,
    /// The loader's status.
    pub status: Arc<ArcSwap<LoadStatus>>,
    /// Commands to the loader.
    pub tx: mpsc::Sender<Command>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read(path: &PathBuf) -> Result<String, IndexError> {
    std::fs::read_to_string(path).map_err(|e| IndexError::Parse {
        origin: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Loads the initial index on the calling thread (failing start-up on
/// error; before any shard serves, so on every core it may use) and starts
/// the loader thread on `cores` (the helper cores; empty: anywhere), where
/// every later build runs.
pub fn start(
    source: Source,
    poll: Duration,
    max_shrink: f64,
    cores: Vec<usize>,
) -> Result<(IndexHandle, std::thread::JoinHandle<()>), IndexError> {
    let (text, origin) = match &source {
        Source::Embedded(t) => (t.to_string(), "embedded campaigns".to_string()),
        Source::File(p) => (read(p)?, p.display().to_string()),
    };
    let t0 = std::time::Instant::now();
    let first = Index::load(&text, &origin, 1)?;
    let status = LoadStatus {
        version: 1,
        campaigns: first.len(),
        source: origin,
        loaded_at: now_secs(),
        build_ms: t0.elapsed().as_millis() as u64,
        postings_bytes: first.postings_bytes(),
        ..Default::default()
    };
    tracing::info!(campaigns = first.len(), source = %status.source, "campaign index loaded");
    let current = Arc::new(ArcSwap::from_pointee(first));
    let status = Arc::new(ArcSwap::from_pointee(status));
    let (tx, rx) = mpsc::channel();
    let handle = IndexHandle {
        current: current.clone(),
        status: status.clone(),
        tx,
    };
    let thread = std::thread::Builder::new()
        .name("index-loader".into())
        .spawn(move || {
            if let Err(e) = crate::sys::set_thread_cores(&cores) {
                tracing::warn!(?cores, error = %e, "index loader not moved off the shards' cores");
            }
            run(source, poll, max_shrink, rx, current, status)
        })
        .map_err(|e| IndexError::Parse {
            origin: "index loader".into(),
            message: e.to_string(),
        })?;
    Ok((handle, thread))
}

/// Refuses a new index that leaves no campaigns, or drops more than
/// `max_shrink` of the `old` count (a file caught half written, or emptied
/// by mistake), unless `force`.
fn guard(new: usize, old: usize, max_shrink: f64, force: bool) -> Result<(), IndexError> {
    let refuse = |message: String| {
        Err(IndexError::Parse {
            origin: "campaigns.max_shrink".into(),
            message,
        })
    };
    if force {
        Ok(())
    } else if new == 0 {
        refuse("no campaigns (an empty or truncated file?); the index in service is kept (force an empty set through the admin listener)".into())
    } else if (new as f64) < old as f64 * (1.0 - max_shrink) {
        refuse(format!(
            "{new} campaigns would replace {old}: more than {:.0}% fewer (a file caught half written? replace files atomically: write, then rename); force it through the admin listener",
            max_shrink * 100.0
        ))
    } else {
        Ok(())
    }
}

/// A refusal as a metric label: control characters blanked, at most 200
/// characters.
fn sanitised(e: &str) -> String {
    e.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

fn run(
    source: Source,
    poll: Duration,
    max_shrink: f64,
    rx: mpsc::Receiver<Command>,
    current: Arc<ArcSwap<Index>>,
    status: Arc<ArcSwap<LoadStatus>>,
) {
    let mut last_stamp = match &source {
        Source::File(p) => file_stamp(p),
        Source::Embedded(_) => None,
    };
    let mut retired: Vec<Arc<Index>> = Vec::new();
    loop {
        let job = match rx.recv_timeout(poll) {
            Ok(Command::Replace {
                text,
                origin,
                force,
            }) => Some((Ok(text), origin, force)),
            Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => match &source {
                Source::File(p) => {
                    let s = file_stamp(p);
                    if s.is_some() && s != last_stamp {
                        last_stamp = s;
                        Some((read(p), p.display().to_string(), false))
                    } else {
                        None
                    }
                }
                Source::Embedded(_) => None,
            },
        };
        if let Some((text, origin, force)) = job {
            let (version, old) = {
                let c = current.load();
                (c.version + 1, c.len())
            };
            let t0 = std::time::Instant::now();
            let loaded = text
                .and_then(|t| Index::load(&t, &origin, version))
                .and_then(|ix| guard(ix.len(), old, max_shrink, force).map(|()| ix));
            match loaded {
                Ok(ix) => {
                    let n = ix.len();
                    let postings_bytes = ix.postings_bytes();
                    let old = current.swap(Arc::new(ix));
                    retired.push(old);
                    let mut st = LoadStatus::clone(&status.load());
                    st.version = version;
                    st.campaigns = n;
                    st.source = origin;
                    st.loaded_at = now_secs();
                    st.build_ms = t0.elapsed().as_millis() as u64;
                    st.postings_bytes = postings_bytes;
                    st.reloads += 1;
                    st.last_error = None;
                    tracing::info!(version, campaigns = n, build_ms = st.build_ms, source = %st.source, "campaign index reloaded");
                    status.store(Arc::new(st));
                }
                Err(e) => {
                    tracing::error!(error = %e, "campaign reload refused; keeping the index in service");
                    let mut st = LoadStatus::clone(&status.load());
                    st.errors += 1;
                    st.last_error = Some(sanitised(&e.to_string()));
                    status.store(Arc::new(st));
                }
            }
        }
        // Free replaced indexes here once no shard still holds one.
        retired.retain(|ix| Arc::strong_count(ix) > 1);
    }
}
