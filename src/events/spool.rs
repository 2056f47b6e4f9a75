//! Spool segments: one append-only file per shard at a time, framed
//! Cap'n Proto records, sealed by size or on the database writer's request.
//! The spool writer thread of each shard lives here, and so do the readers
//! (`read_spool`, `list_segments`) that replay and `spool-dump` use.
//!
//! Segments are named `shard-N-SEQ.spool`. A writer opens its segment on the
//! first event after start-up or after a rotation; every segment of a shard
//! with a sequence number below the writer's current one is sealed.

use super::ack::Ack;
use super::record::{self, Event};
use crate::config::Fsync;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// (if any), then clears it: a cleared request means sealed.
    pub rotate: AtomicBool,
    /// Sequence number of the segment the writer writes (or will open);
    /// every lower one of this shard is sealed.
    pub active_seq: AtomicU64,
    /// Set by the spool writer: the open segment holds an event written
    /// without an ack (with a database, a spill: not stored there yet), so
    /// the database writer seals it at its next probe rather than on its
    /// seal interval. Cleared as the segment is sealed.
    pub unstored: AtomicBool,
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
    list_named(dir, parse_segment_name)
}

/// Segments already replayed into the database and kept (renamed
/// `*.spool.done`) so that a restart still knows their notices.
pub fn list_done(dir: &Path) -> std::io::Result<Vec<Segment>> {
    list_named(dir, |n| parse_segment_name(n.strip_suffix(".done")?))
}

/// The identity of the node that owns spool directory `dir`: 12 hex digits
/// in `<dir>/node-id`, drawn (48 random bits) and written the first time
/// (aside, then renamed, so a crash leaves no half-written id). It is
/// what the database keeps this node's frequency counts under: a restart on
/// the same directory finds them again.
pub fn node_id(dir: &Path) -> std::io::Result<String> {
    if let Some(id) = read_node_id(dir)? {
        return Ok(id);
    }
    let mut bits = [0u8; 6];
    std::io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut bits)?;
    let id: String = bits.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(dir)?;
    let aside = dir.join("node-id.new");
    std::fs::write(&aside, format!("{id}\n"))?;
    File::open(&aside)?.sync_all()?;
    std::fs::rename(&aside, dir.join("node-id"))?;
    Ok(id)
}

/// The node id of spool directory `dir`, if one was drawn ([`node_id`]).
pub fn read_node_id(dir: &Path) -> std::io::Result<Option<String>> {
    let path = dir.join("node-id");
    let valid = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match std::fs::read_to_string(&path) {
        Ok(s) if valid(s.trim()) => Ok(Some(s.trim().to_string())),
        Ok(s) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} holds {:?}, not 12 hex digits", path.display(), s.trim()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes replayed segments last written more than `keep` ago.
pub fn prune_done(dir: &Path, keep: std::time::Duration) {
    for seg in list_done(dir).unwrap_or_default() {
        let old = std::fs::metadata(&seg.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > keep);
        if old {
            let _ = std::fs::remove_file(&seg.path);
        }
    }
}

fn list_named(
    dir: &Path,
    parse: impl Fn(&str) -> Option<(usize, u64)>,
) -> std::io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some((shard, seq)) = name.to_str().and_then(&parse) {
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

/// What a spool writer's queue carries: an event, and for money the
/// acknowledgement to resolve once it is written.
#[derive(Debug)]
pub struct Queued {
    /// The event.
    pub ev: Event,
    /// Resolved once the event is in the kernel (and synced with
    /// `fsync = always`).
    pub ack: Option<Ack>,
}

impl From<Event> for Queued {
    fn from(ev: Event) -> Self {
        Queued { ev, ack: None }
    }
}

pub(crate) struct SpoolWriter {
    pub(crate) max_bytes: u64,
    pub(crate) dir: PathBuf,
    pub(crate) shard: usize,
    pub(crate) fsync: Fsync,
    pub(crate) interval: Duration,
    pub(crate) stats: Arc<SpoolStats>,
    pub(crate) ctl: Arc<WriterCtl>,
}

impl SpoolWriter {
    /// Seals the open segment: synced and closed before the next number
    /// shows (every lower one is sealed). Whether the sync succeeded.
    fn seal(&self, out: &mut Option<BufWriter<File>>, seq: &mut u64) -> bool {
        let ok = sync(out, &self.stats);
        *out = None;
        *seq += 1;
        self.ctl.unstored.store(false, Relaxed);
        self.ctl.active_seq.store(*seq, Release);
        ok
    }

    pub(crate) fn run(self, rx: Receiver<Queued>) {
        let c = &*self.stats;
        let mut seq = self.ctl.active_seq.load(Acquire);
        let mut out: Option<BufWriter<File>> = None;
        let mut buf = Vec::with_capacity(512);
        let mut last_sync = Instant::now();
        let mut dirty = false;
        let mut size = 0u64;
        // Acks of events written but not yet flushed, and whether every
        // flush since the first of them succeeded.
        let mut acks: Vec<Ack> = Vec::new();
        let mut acks_ok = true;
        loop {
            // Poll rather than block: a sender only wakes a receiver that is
            // blocked, so a polling writer keeps futex wake-ups off the shards
            // (a shard that waits for an ack unparks this thread).
            let mut n = 0u64;
            let mut failed = 0u64;
            let mut gone = false;
            loop {
                match rx.try_recv() {
                    Ok(Queued { ev, ack }) => {
                        if out.is_none() {
                            out = self.open(seq);
                        }
                        buf.clear();
                        record::encode(&ev, &mut buf);
                        let spilled = ack.is_none();
                        // A frame the reader refuses would read back as
                        // damage and lose every event after it: never
                        // written (its ack fails, it counts as dropped).
                        // Ids are bounded where they come in, so this
                        // guards against a path that forgets.
                        let fits = buf.len() <= record::MAX_FRAME_BYTES;
                        if !fits {
                            tracing::error!(bytes = buf.len(), auction = %ev.auction_id.get(..64).unwrap_or(""), "event frame over the spool's limit: not written");
                        }
                        match out.as_mut().filter(|_| fits).map(|o| o.write_all(&buf)) {
                            Some(Ok(())) => {
                                n += 1;
                                size += buf.len() as u64;
                                acks.extend(ack);
                                if spilled {
                                    self.ctl.unstored.store(true, Relaxed);
                                }
                            }
                            // A dropped ack resolves as failed.
                            _ => failed += 1,
                        }
                        if size >= self.max_bytes {
                            // Full: sealed as on a rotation request.
                            acks_ok &= self.seal(&mut out, &mut seq);
                            size = 0;
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
                    acks_ok &= sync(&mut out, c);
                    dirty = false;
                }
            }
            if !acks.is_empty() {
                // Group commit: every ack gathered in this round shares one
                // write (and, with `fsync = always`, the one sync above).
                let flushed = match (self.fsync, out.as_mut()) {
                    (Fsync::Always, _) => true,
                    (_, Some(o)) => o.flush().is_ok(),
                    (_, None) => true,
                };
                if !flushed {
                    c.errors.fetch_add(1, Relaxed);
                }
                let ok = acks_ok && flushed;
                for a in acks.drain(..) {
                    a.resolve(ok);
                }
                acks_ok = true;
            }
            if gone {
                sync(&mut out, c);
                return;
            }
            if self.ctl.rotate.load(Acquire) {
                if out.is_some() {
                    self.seal(&mut out, &mut seq);
                    size = 0;
                    dirty = false;
                }
                // Cleared once sealed: whoever asked sees the new number.
                self.ctl.rotate.store(false, Release);
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
                std::thread::park_timeout(POLL);
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

/// Flushes and syncs the open segment; false if that failed.
fn sync(out: &mut Option<BufWriter<File>>, c: &SpoolStats) -> bool {
    let Some(out) = out.as_mut() else { return true };
    if out.flush().and_then(|_| out.get_ref().sync_data()).is_err() {
        c.errors.fetch_add(1, Relaxed);
        tracing::error!("spool flush or sync failed");
        return false;
    }
    true
}

/// Reads a spool: every whole event, and how many bytes of a cut-short tail
/// (a crash mid-write) follow them.
/// What [`salvage_spool`] recovered from a segment.
#[derive(Debug, Default)]
pub struct Salvage {
    /// Every whole event before the end or the damage.
    pub events: Vec<Event>,
    /// Bytes after the last whole event (a torn tail, or the damaged rest).
    pub unread: usize,
    /// Where the damage starts (byte offset) and what it is; None when the
    /// file ends in whole events or a torn last write.
    pub damage: Option<(usize, record::EventError)>,
}

/// Reads every whole event up to the end of `bytes` or up to the first
/// frame that is not an event, and says where that is: damage mid-file
/// loses only what follows it.
pub fn salvage_spool(bytes: &[u8]) -> Salvage {
    let mut s = Salvage::default();
    let mut at = 0;
    while at < bytes.len() {
        match record::decode(&bytes[at..]) {
            Ok(record::Decoded::Event(ev, used)) => {
                s.events.push(ev);
                at += used;
            }
            Ok(record::Decoded::Partial) => break,
            Err(e) => {
                s.damage = Some((at, e));
                break;
            }
        }
    }
    s.unread = bytes.len() - at;
    s
}

/// Reads a whole segment: every event, and the bytes of a torn last write;
/// an error at the first frame that is not an event (see [`salvage_spool`]
/// to keep what precedes it).
pub fn read_spool(bytes: &[u8]) -> Result<(Vec<Event>, usize), record::EventError> {
    let s = salvage_spool(bytes);
    match s.damage {
        Some((_, e)) => Err(e),
        None => Ok((s.events, s.unread)),
    }
}

impl SpoolStats {
    /// The spool families of every shard (`all` in shard order) on the
    /// `/metrics` page.
    pub fn render(all: &[Arc<SpoolStats>], out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, get) in [
            (
                "adshard_events_spooled_total",
                "Events appended to the shard's spool file.",
                0,
            ),
            (
                "adshard_events_dropped_total",
                "Events dropped (queue full or write failed); never silent.",
                1,
            ),
            (
                "adshard_spool_errors_total",
                "Failed spool segment opens, flushes or syncs.",
                2,
            ),
        ] {
            crate::prom::family(out, name, "counter", help);
            for (i, st) in all.iter().enumerate() {
                let v = [&st.spooled, &st.dropped, &st.errors][get].load(Relaxed);
                let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {v}");
            }
        }
    }
}
