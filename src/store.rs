//! The event sink. Each shard pushes events without ever waiting:
//!
//! - with a database configured (`[events.db] nodes`), into a bounded queue
//!   read by the database writer thread (`crate::cql`), which writes them
//!   behind; a full queue sends the event to the spool instead (a spill);
//! - otherwise (the embedded default), or on a spill, into a bounded queue
//!   read by that shard's spool writer thread, which appends framed Cap'n
//!   Proto (`events::encode`) to the shard's current spool segment, flushing
//!   on idle and syncing per `events.fsync`.
//!
//! A push that finds both queues full drops the event and counts it
//! (`adshard_events_dropped_total`); nothing is lost silently. Stopping
//! drains every queue (database first, then spool), flushes and syncs.
//!
//! Spool segments are named `shard-N-SEQ.spool`. A writer opens its segment
//! on the first event after start-up or after a rotation; the database
//! writer asks for rotations, and replays (then deletes) every sealed
//! segment, one whose sequence number is below the writer's current one.
//! Without a database the segments are where events live; `adshard
//! spool-dump FILE` reads one, `adshard replay` loads them into a database.

use crate::config::EventsConfig;
use crate::events::{self, Event};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When the spool file is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Leave it to the kernel.
    Never,
    /// At most `fsync_interval_ms` apart, and on stop.
    Interval,
    /// After every batch written.
    Always,
}

/// One shard's spool counters, written by its shard (spills, drops) and its
/// writer thread, read by `/metrics`.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Events appended to the spool.
    pub spooled: AtomicU64,
    /// Events dropped (both queues full, writer gone, write failed).
    pub dropped: AtomicU64,
    /// Failed opens, flushes or syncs.
    pub errors: AtomicU64,
    /// Events the shard sent to the spool because the database queue was full.
    pub spilled_queue_full: AtomicU64,
}

/// Shared between a spool writer and the database writer: rotation requests
/// and the sequence number of the segment being written.
#[derive(Debug, Default)]
pub struct WriterCtl {
    /// Set by the database writer; the spool writer seals its open segment
    /// (if any) and clears it.
    pub rotate: AtomicBool,
    /// Sequence number of the segment the writer writes (or will open);
    /// every lower one of this shard is sealed.
    pub active_seq: AtomicU64,
}

/// One shard's sending side. Owned by the shard.
#[derive(Debug)]
pub struct Sink {
    db: Option<SyncSender<Event>>,
    spool: SyncSender<Event>,
    stats: Arc<SpoolStats>,
}

impl Sink {
    /// Queues an event without blocking: to the database writer if there is
    /// one and it has room, else to the spool; if that is full too, the
    /// event is dropped, counted.
    pub fn push(&self, ev: Event) {
        let ev = match &self.db {
            Some(db) => match db.try_send(ev) {
                Ok(()) => return,
                Err(TrySendError::Full(ev)) | Err(TrySendError::Disconnected(ev)) => {
                    self.stats.spilled_queue_full.fetch_add(1, Relaxed);
                    ev
                }
            },
            None => ev,
        };
        match self.spool.try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// The writer threads. Lives as long as the server.
#[derive(Debug)]
pub struct Store {
    db: Option<std::thread::JoinHandle<()>>,
    writers: Vec<std::thread::JoinHandle<()>>,
    ctls: Vec<Arc<WriterCtl>>,
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
    pub db: Option<Arc<crate::cql::DbStats>>,
}

/// A spool segment file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    /// Shard that wrote it.
    pub shard: usize,
    /// Sequence number within the shard (0 for a pre-segment `shard-N.spool`).
    pub seq: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// Where segment `seq` of `shard` lives.
pub fn segment_path(dir: &Path, shard: usize, seq: u64) -> PathBuf {
    dir.join(format!("shard-{shard}-{seq:010}.spool"))
}

fn parse_segment_name(name: &str) -> Option<(usize, u64)> {
    let rest = name.strip_prefix("shard-")?.strip_suffix(".spool")?;
    match rest.split_once('-') {
        Some((shard, seq)) => Some((shard.parse().ok()?, seq.parse().ok()?)),
        None => Some((rest.parse().ok()?, 0)),
    }
}

/// The spool segments in `dir`, ordered by shard then sequence.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some((shard, seq)) = name.to_str().and_then(parse_segment_name) {
            out.push(Segment {
                shard,
                seq,
                path: entry.path(),
            });
        }
    }
    out.sort();
    Ok(out)
}

impl Store {
    /// Starts one spool writer per shard (each continues after the highest
    /// segment already in the directory) and, with a database configured,
    /// the database writer.
    pub fn start(cfg: &EventsConfig, shards: usize) -> std::io::Result<Started> {
        let dir = &cfg.spool_dir;
        std::fs::create_dir_all(dir)?;
        let existing = list_segments(dir)?;
        let interval = Duration::from_millis(cfg.fsync_interval_ms);
        let mut writers = Vec::new();
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
        let (db, db_tx, db_stats) = if cfg.db.nodes.is_empty() {
            (None, Vec::new(), None)
        } else {
            let mut txs = Vec::new();
            let mut rxs = Vec::new();
            for _ in 0..shards {
                let (tx, rx) = sync_channel(cfg.queue_capacity);
                txs.push(Some(tx));
                rxs.push(rx);
            }
            let st = Arc::new(crate::cql::DbStats::default());
            let h = crate::cql::spawn(
                cfg.db.clone(),
                rxs,
                spool_tx.clone(),
                ctls.clone(),
                dir.clone(),
                st.clone(),
            )?;
            (Some(h), txs, Some(st))
        };
        let mut db_tx = db_tx.into_iter();
        let sinks = spool_tx
            .into_iter()
            .zip(&stats)
            .map(|(spool, c)| Sink {
                db: db_tx.next().flatten(),
                spool,
                stats: c.clone(),
            })
            .collect();
        Ok(Started {
            store: Store { db, writers, ctls },
            sinks,
            spool: stats,
            db: db_stats,
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

struct SpoolWriter {
    max_bytes: u64,
    dir: PathBuf,
    shard: usize,
    fsync: Fsync,
    interval: Duration,
    stats: Arc<SpoolStats>,
    ctl: Arc<WriterCtl>,
}

impl SpoolWriter {
    fn run(self, rx: Receiver<Event>) {
        let c = &*self.stats;
        let mut seq = self.ctl.active_seq.load(Acquire);
        let mut out: Option<BufWriter<File>> = None;
        let mut buf = Vec::with_capacity(512);
        let mut last_sync = Instant::now();
        let mut dirty = false;
        let mut size = 0u64;
        loop {
            // Poll rather than block: a sender only wakes a receiver that is
            // blocked, so a polling writer keeps futex wake-ups off the shards.
            let mut n = 0u64;
            let mut failed = 0u64;
            let mut gone = false;
            loop {
                match rx.try_recv() {
                    Ok(ev) => {
                        if out.is_none() {
                            out = self.open(seq);
                        }
                        buf.clear();
                        events::encode(&ev, &mut buf);
                        match out.as_mut().map(|o| o.write_all(&buf)) {
                            Some(Ok(())) => {
                                n += 1;
                                size += buf.len() as u64;
                            }
                            _ => failed += 1,
                        }
                        if size >= self.max_bytes {
                            // Full: sealed as on a rotation request.
                            sync(&mut out, c);
                            out = None;
                            size = 0;
                            seq += 1;
                            self.ctl.active_seq.store(seq, Release);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            if n + failed > 0 {
                c.spooled.fetch_add(n, Relaxed);
                c.dropped.fetch_add(failed, Relaxed);
                dirty = true;
                if self.fsync == Fsync::Always {
                    sync(&mut out, c);
                    dirty = false;
                }
            }
            if gone {
                sync(&mut out, c);
                return;
            }
            if self.ctl.rotate.swap(false, Relaxed) && out.is_some() {
                // Sealed: synced and closed before the new number shows.
                sync(&mut out, c);
                out = None;
                size = 0;
                dirty = false;
                seq += 1;
                self.ctl.active_seq.store(seq, Release);
            }
            if dirty && (self.fsync != Fsync::Interval || last_sync.elapsed() >= self.interval) {
                if self.fsync == Fsync::Never {
                    if let Some(o) = out.as_mut() {
                        let _ = o.flush();
                    }
                } else {
                    sync(&mut out, c);
                    last_sync = Instant::now();
                }
                dirty = false;
            }
            if n + failed == 0 {
                std::thread::sleep(POLL);
            }
        }
    }

    fn open(&self, seq: u64) -> Option<BufWriter<File>> {
        let path = segment_path(&self.dir, self.shard, seq);
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => Some(BufWriter::with_capacity(256 * 1024, f)),
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                tracing::error!(path = %path.display(), error = %e, "cannot open spool segment");
                None
            }
        }
    }
}

/// How long an idle writer sleeps between polls of its queue.
const POLL: Duration = Duration::from_millis(2);

fn sync(out: &mut Option<BufWriter<File>>, c: &SpoolStats) {
    let Some(out) = out.as_mut() else { return };
    if out.flush().and_then(|_| out.get_ref().sync_data()).is_err() {
        c.errors.fetch_add(1, Relaxed);
        tracing::error!("spool flush or sync failed");
    }
}

/// Reads a spool: every whole event, and how many bytes of a cut-short tail
/// (a crash mid-write) follow them.
pub fn read_spool(bytes: &[u8]) -> Result<(Vec<Event>, usize), events::EventError> {
    let mut at = 0;
    let mut evs = Vec::new();
    while at < bytes.len() {
        match events::decode(&bytes[at..])? {
            events::Decoded::Event(ev, used) => {
                evs.push(ev);
                at += used;
            }
            events::Decoded::Partial => break,
        }
    }
    Ok((evs, bytes.len() - at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Kind;

    fn ev(i: u64) -> Event {
        Event {
            id: u128::from(i),
            kind: Kind::Bid,
            ts_micros: 1,
            shard: 0,
            auction_id: format!("a{i}"),
            imp_id: "1".into(),
            campaign_id: 7,
            creative_id: "c".into(),
            price_micros: 1,
            currency: "USD".into(),
            spend_micros: 0,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("adshard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn events_cfg(dir: &Path, capacity: usize) -> EventsConfig {
        EventsConfig {
            spool_dir: dir.to_path_buf(),
            queue_capacity: capacity,
            fsync: Fsync::Interval,
            fsync_interval_ms: 10,
            ..EventsConfig::default()
        }
    }

    #[test]
    fn every_event_is_spooled_or_counted_dropped() {
        let dir = temp_dir("store");
        let st = Store::start(&events_cfg(&dir, 16), 1).unwrap();
        assert!(st.db.is_none(), "no database configured");
        for i in 0..5000 {
            st.sinks[0].push(ev(i));
        }
        drop(st.sinks);
        st.store.join();
        let spooled = st.spool[0].spooled.load(Relaxed);
        let dropped = st.spool[0].dropped.load(Relaxed);
        assert_eq!(spooled + dropped, 5000, "nothing lost silently");
        let segs = list_segments(&dir).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!((segs[0].shard, segs[0].seq), (0, 1));
        let bytes = std::fs::read(&segs[0].path).unwrap();
        let (evs, tail) = read_spool(&bytes).unwrap();
        assert_eq!((evs.len() as u64, tail), (spooled, 0));
        // Ids are in push order, with gaps only where the queue was full.
        assert!(evs.windows(2).all(|w| w[0].id < w[1].id));
        // A torn last write reads back as a tail, not an error.
        let (again, tail) = read_spool(&bytes[..bytes.len() - 3]).unwrap();
        assert_eq!((again.len() as u64, tail > 0), (spooled - 1, true));
    }

    #[test]
    fn segments_rotate_on_request_and_continue_after_restart() {
        let dir = temp_dir("rotate");
        let cfg = events_cfg(&dir, 1024);
        let st = Store::start(&cfg, 2).unwrap();
        // No event, no file: an idle shard leaves nothing behind.
        st.sinks[0].push(ev(1));
        let wait = |pred: &dyn Fn() -> bool| {
            let t = Instant::now();
            while !pred() {
                assert!(t.elapsed() < Duration::from_secs(5), "timed out");
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        wait(&|| list_segments(&dir).unwrap().len() == 1);
        let c0 = st.store.ctls[0].clone();
        c0.rotate.store(true, Relaxed);
        wait(&|| c0.active_seq.load(Acquire) == 2);
        // A rotation with nothing written opens nothing new.
        c0.rotate.store(true, Relaxed);
        wait(&|| !c0.rotate.load(Relaxed));
        assert_eq!(c0.active_seq.load(Acquire), 2);
        st.sinks[0].push(ev(2));
        st.sinks[1].push(ev(3));
        drop(st.sinks);
        st.store.join();
        let names: Vec<(usize, u64)> = list_segments(&dir)
            .unwrap()
            .iter()
            .map(|s| (s.shard, s.seq))
            .collect();
        assert_eq!(names, vec![(0, 1), (0, 2), (1, 1)]);
        // A restart continues after the highest segment of each shard.
        let st = Store::start(&cfg, 2).unwrap();
        assert_eq!(st.store.ctls[0].active_seq.load(Acquire), 3);
        assert_eq!(st.store.ctls[1].active_seq.load(Acquire), 2);
        drop(st.sinks);
        st.store.join();
        // Pre-segment file names still list (as sequence 0).
        std::fs::write(dir.join("shard-3.spool"), b"").unwrap();
        assert_eq!(
            list_segments(&dir).unwrap()[0..1]
                .iter()
                .map(|s| (s.shard, s.seq))
                .collect::<Vec<_>>(),
            vec![(0, 1)]
        );
        assert!(list_segments(&dir)
            .unwrap()
            .iter()
            .any(|s| (s.shard, s.seq) == (3, 0)));
    }

    #[test]
    fn segments_are_sealed_at_their_size_limit() {
        let dir = temp_dir("segsize");
        let cfg = EventsConfig {
            segment_max_bytes: 4096,
            ..events_cfg(&dir, 4096)
        };
        let st = Store::start(&cfg, 1).unwrap();
        for i in 0..300 {
            st.sinks[0].push(ev(i));
        }
        drop(st.sinks);
        st.store.join();
        let segs = list_segments(&dir).unwrap();
        assert!(segs.len() > 3, "{} segments", segs.len());
        let mut ids = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            assert_eq!(s.seq, k as u64 + 1, "consecutive numbers");
            let bytes = std::fs::read(&s.path).unwrap();
            // Each holds up to one event past the limit.
            assert!(bytes.len() < 4096 + 512, "{} bytes", bytes.len());
            let (evs, tail) = read_spool(&bytes).unwrap();
            assert_eq!(tail, 0);
            ids.extend(evs.iter().map(|e| e.id));
        }
        assert_eq!(ids, (0..300u128).collect::<Vec<_>>(), "all, in order");
    }

    #[test]
    fn a_full_database_queue_spills_to_the_spool() {
        let (db_tx, _db_rx) = sync_channel(2);
        let (spool_tx, spool_rx) = sync_channel(3);
        let stats = Arc::new(SpoolStats::default());
        let sink = Sink {
            db: Some(db_tx),
            spool: spool_tx,
            stats: stats.clone(),
        };
        for i in 0..10 {
            sink.push(ev(i));
        }
        // 2 to the database queue, 3 spilled to the spool, 5 dropped.
        assert_eq!(stats.spilled_queue_full.load(Relaxed), 8);
        assert_eq!(stats.dropped.load(Relaxed), 5);
        let spilled: Vec<u128> = spool_rx.try_iter().map(|e| e.id).collect();
        assert_eq!(spilled, vec![2, 3, 4]);
    }
}
