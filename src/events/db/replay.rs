//! Replay of spool segments into the database: by the writer while the
//! database is up, and by `adshard replay` (stop the server first).

use super::client::{bounded, Db};
use super::{chunks, DbError, DbStats};
use crate::events::record::Event;
use crate::events::spool::salvage_spool;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

/// What one replayed segment held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Events stored.
    pub events: u64,
    /// Bytes of a torn tail after the last whole event (or of the damaged
    /// rest, with `damaged_at`).
    pub torn_bytes: usize,
    /// Byte offset of the first frame that is not an event: the events
    /// before it are stored, the rest is not.
    pub damaged_at: Option<usize>,
}

/// Why a segment was not replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database refused a batch after every retry.
    #[error("{path}: {source}")]
    Db {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: DbError,
    },
}

/// Stores every whole event of the spool file at `path`, up to
/// `concurrency` batches at a time. The file is left as it is.
pub async fn replay_file(
    db: &Db,
    path: &Path,
    batch_size: usize,
    concurrency: usize,
    stats: &DbStats,
    rollups: Option<(&super::rollup::Statements, &str)>,
) -> Result<Replayed, ReplayError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| ReplayError::Read {
            path: path.into(),
            source,
        })?;
    let s = salvage_spool(&bytes);
    if let Some((at, why)) = &s.damage {
        tracing::warn!(path = %path.display(), at, error = %why, events_before = s.events.len(), "damaged spool segment: storing the events before the damage");
    }
    let (evs, torn_bytes) = (s.events, s.unread);
    let n = evs.len() as u64;
    let spend: Vec<Event> = evs.iter().filter(|e| e.spend_micros > 0).cloned().collect();
    // The segment's report rollups: every event in it, under its own source.
    let mut acc = super::rollup::Acc::default();
    if rollups.is_some() {
        evs.iter().for_each(|e| acc.count(e));
    }
    let db_err = |source| ReplayError::Db {
        path: path.into(),
        source,
    };
    // Rows first, then the spend of the whole file in rounds of one claim
    // batch per campaign and day (far fewer conditional writes than per
    // batch of rows).
    let writes: Vec<_> = chunks(evs, batch_size)
        .into_iter()
        .map(|chunk| async move { db.write_events(&chunk, stats).await })
        .collect();
    bounded(writes, concurrency).await.map_err(db_err)?;
    db.retrying(stats, || db.add_spend(&spend, concurrency))
        .await
        .map_err(db_err)?;
    if let Some((st, node)) = rollups {
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default();
        // Named by what it was before a replay renames it (`.spool`).
        let name = name
            .trim_end_matches(".done")
            .trim_end_matches(".torn")
            .trim_end_matches(".bad");
        let (rows, source) = (acc.all(), format!("seg:{node}:{name}"));
        db.retrying(stats, || db.write_rollups(st, &source, &rows))
            .await
            .map_err(db_err)?;
    }
    stats.replayed.fetch_add(n, Relaxed);
    Ok(Replayed {
        events: n,
        torn_bytes,
        damaged_at: s.damage.map(|d| d.0),
    })
}

/// Why `adshard replay` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayRunError {
    /// `[events.db] nodes` is empty.
    #[error("events.db.nodes: no database configured (set it in the config file or ADSHARD__EVENTS__DB__NODES='[\"host:9042\"]')")]
    NoDatabase,
    /// The spool directory could not be listed.
    #[error("{path}: {source}")]
    ListSpool {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The async runtime did not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// No connection to the database.
    #[error("events.db: {0}")]
    Connect(DbError),
    /// A segment could not be replayed.
    #[error("{0}")]
    Segment(ReplayError),
    /// The database failed part-way.
    #[error("{0} (files kept; replay again when the database is back)")]
    Database(ReplayError),
    /// A stored file could not be deleted.
    #[error("{path}: stored, but cannot delete: {source}")]
    Delete {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl ReplayRunError {
    /// `adshard replay`'s exit status: 2 for bad input (no database
    /// configured, an unreadable or malformed file), 1 when the database
    /// failed part-way (files kept; running again is safe).
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayRunError::NoDatabase
            | ReplayRunError::ListSpool { .. }
            | ReplayRunError::Segment(_) => 2,
            _ => 1,
        }
    }
}

/// Totals of one `adshard replay` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Files stored.
    pub files: usize,
    /// Events stored.
    pub events: u64,
    /// Failed batch attempts.
    pub write_errors: u64,
    /// Retried batch attempts.
    pub retries: u64,
    /// Files with damage (their events before it stored; never deleted).
    pub damaged: usize,
}

/// `adshard replay`: stores every whole event of `files` (all segments in
/// `events.spool_dir` when empty) in the database of `[events.db]`,
/// calling `each` after every stored file, and deletes each stored file
/// when `delete` is set. Idempotent: event ids are the key.
pub fn replay_files(
    cfg: &crate::config::EventsConfig,
    files: Vec<PathBuf>,
    delete: bool,
    mut each: impl FnMut(&Path, &Replayed),
) -> Result<ReplaySummary, ReplayRunError> {
    let db_cfg = &cfg.db;
    if db_cfg.nodes.is_empty() {
        return Err(ReplayRunError::NoDatabase);
    }
    let files = if files.is_empty() {
        crate::events::spool::list_segments(&cfg.spool_dir)
            .map_err(|source| ReplayRunError::ListSpool {
                path: cfg.spool_dir.clone(),
                source,
            })?
            .into_iter()
            .map(|s| s.path)
            .collect()
    } else {
        files
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ReplayRunError::Runtime)?;
    rt.block_on(async {
        // Capped bids go under the node id of the configured spool
        // directory (where a restart looks for them), if it has one.
        let owner = crate::events::spool::read_node_id(&cfg.spool_dir)
            .ok()
            .flatten();
        let db = Db::connect(db_cfg)
            .await
            .map_err(ReplayRunError::Connect)?
            .owned_by(owner);
        let stats = DbStats::default();
        let mut sum = ReplaySummary::default();
        let st = db
            .rollup_statements(&db_cfg.keyspace)
            .await
            .map_err(ReplayRunError::Connect)?;
        for f in &files {
            // Rollups go under the node id of the file's own spool directory
            // (as the server names them), so a segment is counted once by
            // whoever replays it.
            let node = f
                .parent()
                .and_then(|d| crate::events::spool::read_node_id(d).ok().flatten())
                .unwrap_or_else(|| "none".into());
            let r = replay_file(
                &db,
                f,
                db_cfg.batch_size,
                db_cfg.max_in_flight,
                &stats,
                Some((&st, &node)),
            )
            .await
            .map_err(|e| match e {
                e @ ReplayError::Db { .. } => ReplayRunError::Database(e),
                e => ReplayRunError::Segment(e),
            })?;
            each(f, &r);
            if r.damaged_at.is_some() {
                sum.damaged += 1;
            } else if delete {
                std::fs::remove_file(f).map_err(|source| ReplayRunError::Delete {
                    path: f.clone(),
                    source,
                })?;
            }
            sum.files += 1;
        }
        sum.events = stats.stored.load(Relaxed);
        sum.write_errors = stats.write_errors.load(Relaxed);
        sum.retries = stats.retries.load(Relaxed);
        Ok(sum)
    })
}
