//! The database writer thread: polls the shards' queues, batches per
//! partition, writes behind with bounded concurrency, hands spend to its own
//! task, spills to the spool when the database is down, and replays sealed
//! segments once it is back.

use super::client::Db;
use super::rollup::{Acc, Statements};
use super::{chunks_by, partition, replay_file, DbStats, ReplayError, ToDb};
use crate::config::DbConfig;
use crate::events::record::Event;
use crate::events::spool::{list_segments, Queued, WriterCtl};
use std::path::PathBuf;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// The spool directory the database writer replays and keeps.
pub(crate) struct SpoolHome {
    pub dir: PathBuf,
    /// How long replayed segments are kept (`.spool.done`); zero: deleted.
    pub keep: Duration,
    /// The directory's node id: whose frequency rows the writer writes.
    pub owner: String,
}

/// Starts the database writer thread.
pub(crate) fn spawn(
    cfg: DbConfig,
    queues: Vec<Receiver<ToDb>>,
    spool: Vec<SyncSender<Queued>>,
    ctls: Vec<Arc<WriterCtl>>,
    stats: Arc<DbStats>,
    home: SpoolHome,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let SpoolHome { dir, keep, owner } = home;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("db-writer".into())
        .spawn(move || {
            let boot: String = {
                let mut b = [0u8; 6];
                let _ = std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
                b.iter().map(|x| format!("{x:02x}")).collect()
            };
            let w = Writer {
                cfg,
                spool,
                ctls,
                dir,
                stats,
                keep,
                source: format!("live:{owner}:{boot}"),
                owner,
                down: AtomicBool::new(true),
                rollup: std::sync::Mutex::new(Acc::default()),
            };
            rt.block_on(w.run(queues));
        })
}

struct Writer {
    cfg: DbConfig,
    spool: Vec<SyncSender<Queued>>,
    ctls: Vec<Arc<WriterCtl>>,
    dir: PathBuf,
    stats: Arc<DbStats>,
    /// How long replayed segments are kept (`.spool.done`); zero: deleted.
    keep: Duration,
    /// The spool directory's node id: whose frequency rows this writes.
    owner: String,
    down: AtomicBool,
    /// This process's report rollup source (`live:<node>:<boot>`).
    source: String,
    /// What the live writes counted (events not also spooled), for the
    /// rollups. The writer thread's own: never touched by a shard.
    rollup: std::sync::Mutex<Acc>,
}

/// A connected database and the spend task that goes with it.
struct Live {
    db: Arc<Db>,
    /// The report rollup statements.
    rollups: Arc<Statements>,
    spend: tokio::sync::mpsc::Sender<Event>,
    spend_task: tokio::task::JoinHandle<()>,
}

/// How long spend waits to gather more charges before a round of claims.
const SPEND_ROUND: Duration = Duration::from_millis(20);

/// Charges waiting for the spend task before they are spilled instead.
const SPEND_BACKLOG: usize = 65_536;

/// How long an idle database writer sleeps between polls of the queues.
const POLL: Duration = Duration::from_millis(1);

impl Writer {
    fn set_down(&self, down: bool) {
        let was = self.down.swap(down, Relaxed);
        self.stats.up.store(u64::from(!down), Relaxed);
        if was != down {
            if down {
                tracing::warn!("event database down: events go to the spool until it is back");
            } else {
                tracing::info!("event database up");
            }
        }
    }

    /// Sends events to their shards' spool writers (the writer thread may
    /// wait here; shards never do).
    fn spill(&self, evs: Vec<Event>, counter: &AtomicU64) {
        counter.fetch_add(evs.len() as u64, Relaxed);
        for ev in evs {
            let tx = &self.spool[usize::from(ev.shard) % self.spool.len()];
            let res = match tx.try_send(Queued::from(ev)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(q)) => tx.send(q).map_err(|_| ()),
                Err(TrySendError::Disconnected(_)) => Err(()),
            };
            if res.is_err() {
                self.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Connects and starts the spend task that goes with the connection.
    async fn connect(self: &Arc<Self>) -> Option<Live> {
        match Db::connect(&self.cfg).await {
            Ok(db) => {
                let rollups = match db.rollup_statements(&self.cfg.keyspace).await {
                    Ok(st) => Arc::new(st),
                    Err(e) => {
                        tracing::warn!(error = %e, "event database: report rollups not prepared");
                        self.set_down(true);
                        return None;
                    }
                };
                self.set_down(false);
                let db = Arc::new(db.owned_by(Some(self.owner.clone())));
                let (spend, rx) = tokio::sync::mpsc::channel(SPEND_BACKLOG);
                let spend_task = tokio::task::spawn(self.clone().spend_loop(db.clone(), rx));
                Some(Live {
                    db,
                    rollups,
                    spend,
                    spend_task,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "event database unavailable");
                self.set_down(true);
                None
            }
        }
    }

    /// Adds spend in rounds: waits [`SPEND_ROUND`] after a charge arrives so
    /// that one claim batch per campaign and day carries many charges.
    /// Charges whose round fails are spilled with their events (the replay
    /// rewrites the rows and adds what is not counted).
    async fn spend_loop(self: Arc<Self>, db: Arc<Db>, mut rx: tokio::sync::mpsc::Receiver<Event>) {
        while let Some(first) = rx.recv().await {
            tokio::time::sleep(SPEND_ROUND).await;
            let mut round = vec![first];
            while round.len() < SPEND_BACKLOG {
                match rx.try_recv() {
                    Ok(ev) => round.push(ev),
                    Err(_) => break,
                }
            }
            if self.down.load(Relaxed) {
                self.spill(round, &self.stats.spilled_down);
            } else if db.write_spend(&round, &self.stats).await.is_err() {
                self.set_down(true);
                self.spill(round, &self.stats.spilled_failed);
            }
        }
    }

    /// Writes the rollup rows the live writes changed; on failure they are
    /// written again at the next flush.
    async fn flush_rollups(&self, db: &Db, st: &Statements) {
        let rows = match self.rollup.lock() {
            Ok(mut a) => a.take_dirty(),
            Err(_) => return,
        };
        if rows.is_empty() {
            return;
        }
        if let Err(e) = db.write_rollups(st, &self.source, &rows).await {
            tracing::warn!(error = %e, "report rollups not written; retried at the next flush");
            if let Ok(mut a) = self.rollup.lock() {
                a.redo(rows.into_iter().map(|(k, _)| k));
            }
        }
    }

    async fn run(self, queues: Vec<Receiver<ToDb>>) {
        let this = Arc::new(self);
        let mut live = this.connect().await;
        let limit = this.cfg.max_in_flight;
        let sem = Arc::new(tokio::sync::Semaphore::new(limit));
        let probe_every = Duration::from_millis(this.cfg.probe_interval_ms);
        let mut next_probe = tokio::time::Instant::now() + probe_every;
        let seal_every = Duration::from_millis(this.cfg.seal_interval_ms);
        // Whatever the previous run left is sealed at the first probe.
        let mut next_seal = tokio::time::Instant::now();
        let mut open = vec![true; queues.len()];
        let mut replay: Option<tokio::task::JoinHandle<()>> = None;
        let batch = this.cfg.batch_size;
        let linger = Duration::from_millis(this.cfg.linger_ms);
        // Per shard: events gathered, and when the oldest arrived. A shard's
        // events go out once a batch is full or the oldest has waited
        // `linger_ms` (fewer, fuller batches: less CPU here and there).
        let mut bufs: Vec<Vec<ToDb>> = queues.iter().map(|_| Vec::new()).collect();
        let mut since = vec![tokio::time::Instant::now(); queues.len()];
        loop {
            let mut got = 0;
            for (i, rx) in queues.iter().enumerate() {
                if !open[i] {
                    continue;
                }
                while bufs[i].len() < batch * 4 {
                    match rx.try_recv() {
                        Ok(ev) => {
                            if bufs[i].is_empty() {
                                since[i] = tokio::time::Instant::now();
                            }
                            bufs[i].push(ev);
                            got += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open[i] = false;
                            break;
                        }
                    }
                }
                let due = bufs[i].len() >= batch || since[i].elapsed() >= linger || !open[i];
                if bufs[i].is_empty() || !due {
                    continue;
                }
                let items = std::mem::take(&mut bufs[i]);
                match &live {
                    Some(l) if !this.down.load(Relaxed) => {
                        for chunk in chunks_by(items, batch, |t: &ToDb| partition(&t.ev)) {
                            let Ok(permit) = sem.clone().acquire_owned().await else {
                                return;
                            };
                            let (d, w, spend_tx) = (l.db.clone(), this.clone(), l.spend.clone());
                            w.stats.in_flight.fetch_add(1, Relaxed);
                            tokio::task::spawn(async move {
                                let (chunk, spooled): (Vec<Event>, Vec<bool>) =
                                    chunk.into_iter().map(|t| (t.ev, t.spooled)).unzip();
                                if d.write_events(&chunk, &w.stats).await.is_err() {
                                    w.set_down(true);
                                    // Spooled events are there already.
                                    let spill: Vec<Event> = chunk
                                        .into_iter()
                                        .zip(spooled)
                                        .filter(|(_, s)| !s)
                                        .map(|(e, _)| e)
                                        .collect();
                                    w.spill(spill, &w.stats.spilled_failed);
                                } else {
                                    if let Ok(mut a) = w.rollup.lock() {
                                        for (e, _) in
                                            chunk.iter().zip(&spooled).filter(|(_, s)| !**s)
                                        {
                                            a.count(e);
                                        }
                                    }
                                    for ev in chunk.into_iter().filter(|e| e.spend_micros > 0) {
                                        if let Err(e) = spend_tx.try_send(ev) {
                                            let ev = match e {
                                                tokio::sync::mpsc::error::TrySendError::Full(
                                                    ev,
                                                )
                                                | tokio::sync::mpsc::error::TrySendError::Closed(
                                                    ev,
                                                ) => ev,
                                            };
                                            w.spill(vec![ev], &w.stats.spilled_failed);
                                        }
                                    }
                                }
                                w.stats.in_flight.fetch_sub(1, Relaxed);
                                drop(permit);
                            });
                        }
                    }
                    _ => {
                        let evs: Vec<Event> = items
                            .into_iter()
                            .filter(|t| !t.spooled)
                            .map(|t| t.ev)
                            .collect();
                        this.spill(evs, &this.stats.spilled_down)
                    }
                }
            }
            if open.iter().all(|o| !o) {
                break;
            }
            if tokio::time::Instant::now() >= next_probe {
                next_probe = tokio::time::Instant::now() + probe_every;
                match &live {
                    None => live = this.connect().await,
                    Some(l) if this.down.load(Relaxed) => {
                        if l.db.probe().await {
                            this.set_down(false);
                        }
                    }
                    Some(_) => {}
                }
                if let Some(l) = &live {
                    if !this.down.load(Relaxed) {
                        this.flush_rollups(&l.db, &l.rollups).await;
                    }
                    if !this.down.load(Relaxed) && replay.as_ref().is_none_or(|h| h.is_finished()) {
                        let seal_all = tokio::time::Instant::now() >= next_seal;
                        if seal_all {
                            next_seal = tokio::time::Instant::now() + seal_every;
                        }
                        let (d, w, st) = (l.db.clone(), this.clone(), l.rollups.clone());
                        replay = Some(tokio::task::spawn(async move {
                            w.replay(&d, &st, seal_all).await
                        }));
                    }
                }
            }
            if got == 0 {
                tokio::time::sleep(POLL).await;
            }
        }
        // Stopping: every batch in flight finishes (stored or spilled), then
        // the spend rounds it queued.
        let _ = sem.acquire_many(limit as u32).await;
        if let Some(h) = replay {
            // A segment cut off mid-replay stays on disk and is replayed in
            // full (below, or next time); rows already written are simply
            // rewritten.
            h.abort();
            let _ = h.await;
        }
        if let Some(l) = live {
            if !this.down.load(Relaxed) {
                this.flush_rollups(&l.db, &l.rollups).await;
            }
            drop(l.spend);
            let _ = l.spend_task.await;
            // A clean stop leaves no segment unreplayed: a restart then takes
            // the spend of money written both ways from the database alone,
            // not again from a segment (money's segments are otherwise sealed
            // only every seal_interval_ms).
            if !this.down.load(Relaxed) {
                this.replay(&l.db, &l.rollups, true).await;
            }
        }
    }

    /// Seals the spool writers' open segments that hold spilled events
    /// (every one with `seal_all`), waits (up to a second) until each writer
    /// asked has sealed, and stores every sealed segment.
    async fn replay(&self, db: &Db, st: &Statements, seal_all: bool) {
        if !self.keep.is_zero() {
            crate::events::spool::prune_done(&self.dir, self.keep);
        }
        for c in &self.ctls {
            if seal_all || c.unstored.load(Relaxed) {
                c.rotate.store(true, Relaxed);
            }
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.ctls.iter().any(|c| c.rotate.load(Acquire))
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(POLL).await;
        }
        let segs = match list_segments(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot list the spool");
                return;
            }
        };
        for seg in segs {
            let active = self
                .ctls
                .get(seg.shard)
                .map_or(u64::MAX, |c| c.active_seq.load(Acquire));
            if seg.seq >= active {
                continue; // Still being written.
            }
            let conc = (self.cfg.max_in_flight / 2).max(1);
            let rollups = Some((st, self.owner.as_str()));
            match replay_file(
                db,
                &seg.path,
                self.cfg.batch_size,
                conc,
                &self.stats,
                rollups,
            )
            .await
            {
                Ok(r) => {
                    self.stats.replayed_segments.fetch_add(1, Relaxed);
                    let done = if let Some(at) = r.damaged_at {
                        tracing::error!(path = %seg.path.display(), events = r.events, damaged_at = at, "replayed the events before damage in a segment; kept as .bad");
                        self.stats.replay_errors.fetch_add(1, Relaxed);
                        std::fs::rename(&seg.path, seg.path.with_extension("spool.bad"))
                    } else if r.torn_bytes > 0 {
                        tracing::warn!(path = %seg.path.display(), events = r.events, torn_bytes = r.torn_bytes, "replayed a segment with a torn tail; kept as .torn");
                        std::fs::rename(&seg.path, seg.path.with_extension("spool.torn"))
                    } else if !self.keep.is_zero() {
                        // Kept for restarts: their notices are still
                        // de-duplicated and their spend counted then.
                        tracing::info!(path = %seg.path.display(), events = r.events, "replayed spool segment; kept as .done");
                        std::fs::rename(&seg.path, seg.path.with_extension("spool.done"))
                    } else {
                        tracing::info!(path = %seg.path.display(), events = r.events, "replayed spool segment");
                        std::fs::remove_file(&seg.path)
                    };
                    if let Err(e) = done {
                        tracing::error!(path = %seg.path.display(), error = %e, "cannot remove a replayed segment");
                        self.stats.replay_errors.fetch_add(1, Relaxed);
                        return;
                    }
                }
                Err(ReplayError::Db { source, .. }) => {
                    tracing::warn!(path = %seg.path.display(), error = %source, "replay stopped");
                    self.set_down(true);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool segment unreadable; kept as .bad");
                    self.stats.replay_errors.fetch_add(1, Relaxed);
                    let _ = std::fs::rename(&seg.path, seg.path.with_extension("spool.bad"));
                }
            }
        }
    }
}
