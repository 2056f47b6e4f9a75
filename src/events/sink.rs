//! The per-shard event sink and the writer threads behind it. Each shard
//! pushes events without ever waiting:
//!
//! - with a database configured (`[events.db] nodes`), into a bounded queue
//!   read by the database writer thread ([`super::db`]), which writes them
//!   behind; a full queue sends the event to the spool instead (a spill);
//! - otherwise (the embedded default), or on a spill, into a bounded queue
//!   read by that shard's spool writer thread ([`super::spool`]), flushing
//!   on idle and syncing per `events.fsync`.
//!
//! A push that finds both queues full drops the event and counts it
//! (`adshard_events_dropped_total`); nothing is lost silently. Stopping
//! drains every queue (database first, then spool), flushes and syncs.
//!
//! Notices that count (money, impressions, clicks) are different:
//! [`Sink::push_durable`] queues the event straight to
//! the shard's spool writer with an [`Ack`](super::ack::Ack) and wakes the
//! writer; the shard answers once the ack resolves (the event is written),
//! or refuses the notice at once if the queue is full. With a database the
//! event is also queued to the database writer as usual; the spool copy is
//! replayed into the database later like any sealed segment (event ids and
//! the spend ledger make that idempotent).

use super::ack::{self, AckWait};
use super::db::{self, DbStats};
use super::record::Event;
use super::spool::{list_segments, Queued, SpoolStats, SpoolWriter, WriterCtl};
use crate::config::EventsConfig;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// One shard's sending side. Owned by the shard.
#[derive(Debug)]
pub struct Sink {
    pub(super) db: Option<SyncSender<db::ToDb>>,
    pub(super) spool: SyncSender<Queued>,
    pub(super) writer: std::thread::Thread,
    pub(super) stats: Arc<SpoolStats>,
}

impl Sink {
    /// Queues an event without blocking: to the database writer if there is
    /// one and it has room, else to the spool; if that is full too, the
    /// event is dropped, counted.
    pub fn push(&self, ev: Event) {
        let ev = match &self.db {
            Some(db) => match db.try_send(db::ToDb { ev, spooled: false }) {
                Ok(()) => return,
                Err(TrySendError::Full(x)) | Err(TrySendError::Disconnected(x)) => {
                    self.stats.spilled_queue_full.fetch_add(1, Relaxed);
                    x.ev
                }
            },
            None => ev,
        };
        match self.spool.try_send(Queued::from(ev)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Queues an event that must be written before it is acknowledged, and
    /// wakes the spool writer. `None` (queue full, writer gone): nothing was
    /// queued; the caller refuses the request so that it is retried.
    pub fn push_durable(&self, ev: Event) -> Option<AckWait> {
        if let Some(db) = &self.db {
            // Written behind to the database as any event (the spool copy is
            // replayed later: same event id, same row, spend counted once).
            let _ = db.try_send(db::ToDb {
                ev: ev.clone(),
                spooled: true,
            });
        }
        let (ack, wait) = ack::pair();
        match self.spool.try_send(Queued { ev, ack: Some(ack) }) {
            Ok(()) => {
                self.writer.unpark();
                Some(wait)
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => None,
        }
    }
}

/// The writer threads. Lives as long as the server.
#[derive(Debug)]
pub struct Store {
    db: Option<std::thread::JoinHandle<()>>,
    writers: Vec<std::thread::JoinHandle<()>>,
    pub(super) ctls: Vec<Arc<WriterCtl>>,
}

/// What [`Store::start`] hands out.
#[derive(Debug)]
pub struct Started {
    /// The threads.
    pub store: Store,
    /// One sink per shard, in shard order.
    pub sinks: Vec<Sink>,
    /// Spool counters per shard.
    pub spool: Vec<Arc<SpoolStats>>,
    /// Database writer counters, when a database is configured.
    pub db: Option<Arc<DbStats>>,
    /// With a database: the spool directory's node id
    /// ([`super::spool::node_id`]), whose frequency rows the writer keeps.
    pub owner: Option<String>,
}

impl Store {
    /// Starts one spool writer per shard (each continues after the highest
    /// segment already in the directory) and, with a database configured,
    /// the database writer.
    pub fn start(cfg: &EventsConfig, shards: usize) -> std::io::Result<Started> {
        Self::start_keeping(cfg, shards, Duration::ZERO)
    }

    /// [`Store::start`], keeping segments the database writer has replayed
    /// for `keep` (renamed `*.spool.done`) instead of deleting them: a
    /// restart reads their notices back (de-duplication, spend).
    pub fn start_keeping(
        cfg: &EventsConfig,
        shards: usize,
        keep: Duration,
    ) -> std::io::Result<Started> {
        let dir = &cfg.spool_dir;
        std::fs::create_dir_all(dir)?;
        let owner = if cfg.db.nodes.is_empty() {
            None
        } else {
            Some(super::spool::node_id(dir)?)
        };
        // Kept segments count too: a new segment never takes their number.
        let mut existing = list_segments(dir)?;
        existing.extend(super::spool::list_done(dir)?);
        let interval = Duration::from_millis(cfg.fsync_interval_ms);
        let mut writers: Vec<std::thread::JoinHandle<()>> = Vec::new();
        let mut spool_tx = Vec::new();
        let mut ctls = Vec::new();
        let stats: Vec<Arc<SpoolStats>> = (0..shards).map(|_| Arc::default()).collect();
        for (id, c) in stats.iter().enumerate() {
            let next = existing
                .iter()
                .filter(|s| s.shard == id)
                .map(|s| s.seq + 1)
                .max()
                .unwrap_or(1);
            let ctl = Arc::new(WriterCtl {
                rotate: AtomicBool::new(false),
                active_seq: AtomicU64::new(next),
                unstored: AtomicBool::new(false),
            });
            let (tx, rx) = sync_channel(cfg.queue_capacity);
            let w = SpoolWriter {
                max_bytes: cfg.segment_max_bytes,
                dir: dir.clone(),
                shard: id,
                fsync: cfg.fsync,
                interval,
                stats: c.clone(),
                ctl: ctl.clone(),
            };
            writers.push(
                std::thread::Builder::new()
                    .name(format!("spool-{id}"))
                    .spawn(move || w.run(rx))?,
            );
            spool_tx.push(tx);
            ctls.push(ctl);
        }
        let (db, db_tx, db_stats) = if let Some(owner) = owner.clone() {
            let mut txs = Vec::new();
            let mut rxs = Vec::new();
            for _ in 0..shards {
                let (tx, rx) = sync_channel(cfg.queue_capacity);
                txs.push(Some(tx));
                rxs.push(rx);
            }
            let st = Arc::new(DbStats::default());
            let h = db::spawn(
                cfg.db.clone(),
                rxs,
                spool_tx.clone(),
                ctls.clone(),
                st.clone(),
                db::SpoolHome {
                    dir: dir.clone(),
                    keep,
                    owner,
                },
            )?;
            (Some(h), txs, Some(st))
        } else {
            (None, Vec::new(), None)
        };
        let mut db_tx = db_tx.into_iter();
        let sinks = spool_tx
            .into_iter()
            .zip(&stats)
            .zip(&writers)
            .map(|((spool, c), w)| Sink {
                db: db_tx.next().flatten(),
                spool,
                writer: w.thread().clone(),
                stats: c.clone(),
            })
            .collect();
        Ok(Started {
            store: Store { db, writers, ctls },
            sinks,
            spool: stats,
            db: db_stats,
            owner,
        })
    }

    /// The rotation control of `shard`'s spool writer.
    pub fn writer_ctl(&self, shard: usize) -> Option<&Arc<WriterCtl>> {
        self.ctls.get(shard)
    }

    /// Waits for the database writer, then every spool writer, to drain and
    /// sync (the shards' sinks must be gone).
    pub fn join(self) {
        if let Some(d) = self.db {
            let _ = d.join();
        }
        for w in self.writers {
            let _ = w.join();
        }
    }
}
