//! The event sink: each shard pushes events into its own bounded queue
//! (never blocking); one writer thread per shard appends them to that
//! shard's spool file as framed Cap'n Proto (`events::encode`), flushing on
//! idle and syncing per `events.fsync`. A full queue drops the event and
//! counts it (`adshard_events_dropped_total`); nothing is lost silently.
//! Stopping drains every queue, flushes and syncs before the writer exits.
//!
//! With no database configured (the embedded default) the spool is where
//! events live; `adshard spool-dump FILE` reads one back.

use crate::events::{self, Event};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
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

/// One shard's spool counters, written by its shard (drops) and its writer
/// thread, read by `/metrics`.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Events appended to the spool.
    pub spooled: std::sync::atomic::AtomicU64,
    /// Events dropped (queue full, writer gone, write failed).
    pub dropped: std::sync::atomic::AtomicU64,
    /// Failed flushes or syncs.
    pub errors: std::sync::atomic::AtomicU64,
}

/// One shard's sending side. Owned by the shard.
#[derive(Debug)]
pub struct Sink {
    tx: SyncSender<Event>,
    stats: Arc<SpoolStats>,
}

impl Sink {
    /// Queues an event without blocking; a full queue drops it, counted.
    pub fn push(&self, ev: Event) {
        match self.tx.try_send(ev) {
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
    writers: Vec<std::thread::JoinHandle<()>>,
}

/// Where one shard's spool lives.
pub fn spool_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}.spool"))
}

impl Store {
    /// Opens (appending) one spool per shard and starts its writer. Returns
    /// the sinks and their counters, in shard order.
    pub fn start(
        dir: &Path,
        capacity: usize,
        fsync: Fsync,
        interval: Duration,
        shards: usize,
    ) -> std::io::Result<(Store, Vec<Sink>, Vec<Arc<SpoolStats>>)> {
        std::fs::create_dir_all(dir)?;
        let mut writers = Vec::new();
        let mut sinks = Vec::new();
        let stats: Vec<Arc<SpoolStats>> = (0..shards).map(|_| Arc::default()).collect();
        for (id, c) in stats.iter().enumerate() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(spool_path(dir, id))?;
            let (tx, rx) = sync_channel(capacity);
            let c2 = c.clone();
            writers.push(
                std::thread::Builder::new()
                    .name(format!("spool-{id}"))
                    .spawn(move || write_loop(rx, file, fsync, interval, &c2))?,
            );
            sinks.push(Sink {
                tx,
                stats: c.clone(),
            });
        }
        Ok((Store { writers }, sinks, stats))
    }

    /// Waits for every writer to drain and sync (their senders must be gone).
    pub fn join(self) {
        for w in self.writers {
            let _ = w.join();
        }
    }
}

fn write_loop(rx: Receiver<Event>, file: File, fsync: Fsync, interval: Duration, c: &SpoolStats) {
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut buf = Vec::with_capacity(512);
    let mut last_sync = Instant::now();
    let mut dirty = false;
    let write = |out: &mut BufWriter<File>, buf: &mut Vec<u8>, ev: &Event| -> bool {
        buf.clear();
        events::encode(ev, buf);
        out.write_all(buf).is_ok()
    };
    loop {
        // Poll rather than block: a sender only wakes a receiver that is
        // blocked, so a polling writer keeps futex wake-ups off the shards.
        let mut n = 0u64;
        let mut failed = 0u64;
        let mut gone = false;
        loop {
            match rx.try_recv() {
                Ok(ev) => {
                    if write(&mut out, &mut buf, &ev) {
                        n += 1;
                    } else {
                        failed += 1;
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
            if fsync == Fsync::Always {
                sync(&mut out, c);
                dirty = false;
            }
        }
        if gone {
            sync(&mut out, c);
            return;
        }
        if dirty && (fsync != Fsync::Interval || last_sync.elapsed() >= interval) {
            if fsync == Fsync::Never {
                let _ = out.flush();
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

/// How long an idle writer sleeps between polls of its queue.
const POLL: Duration = Duration::from_millis(2);

fn sync(out: &mut BufWriter<File>, c: &SpoolStats) {
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
        }
    }

    #[test]
    fn every_event_is_spooled_or_counted_dropped() {
        let dir = std::env::temp_dir().join(format!("adshard-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, sinks, counters) =
            Store::start(&dir, 16, Fsync::Interval, Duration::from_millis(10), 1).unwrap();
        for i in 0..5000 {
            sinks[0].push(ev(i));
        }
        drop(sinks);
        store.join();
        let spooled = counters[0].spooled.load(Relaxed);
        let dropped = counters[0].dropped.load(Relaxed);
        assert_eq!(spooled + dropped, 5000, "nothing lost silently");
        let bytes = std::fs::read(spool_path(&dir, 0)).unwrap();
        let (evs, tail) = read_spool(&bytes).unwrap();
        assert_eq!((evs.len() as u64, tail), (spooled, 0));
        // Ids are in push order, with gaps only where the queue was full.
        assert!(evs.windows(2).all(|w| w[0].id < w[1].id));
        // A torn last write reads back as a tail, not an error.
        let (again, tail) = read_spool(&bytes[..bytes.len() - 3]).unwrap();
        assert_eq!((again.len() as u64, tail > 0), (spooled - 1, true));
    }
}
