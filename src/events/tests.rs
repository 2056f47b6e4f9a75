use super::*;
use crate::config::{EventsConfig, Fsync};
use crate::testkit::events::bid as ev;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = crate::testkit::scratch::dir(name);
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
fn an_event_too_large_to_read_back_is_dropped_not_written() {
    let dir = temp_dir("oversized");
    let st = Store::start(&events_cfg(&dir, 16), 1).unwrap();
    let mut big = ev(2);
    big.auction_id = "a".repeat(record::MAX_FRAME_BYTES);
    for e in [ev(1), big, ev(3)] {
        st.sinks[0].push(e);
    }
    drop(st.sinks);
    st.store.join();
    assert_eq!(st.spool[0].spooled.load(Relaxed), 2);
    assert_eq!(st.spool[0].dropped.load(Relaxed), 1);
    // The segment reads back whole: the event after it is not lost.
    let segs = list_segments(&dir).unwrap();
    let (evs, tail) = read_spool(&std::fs::read(&segs[0].path).unwrap()).unwrap();
    assert_eq!(
        evs.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ev(1).id, ev(3).id]
    );
    assert_eq!(tail, 0);
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
        writer: std::thread::current(),
        stats: stats.clone(),
    };
    for i in 0..10 {
        sink.push(ev(i));
    }
    // 2 to the database queue, 3 spilled to the spool, 5 dropped.
    assert_eq!(stats.spilled_queue_full.load(Relaxed), 8);
    assert_eq!(stats.dropped.load(Relaxed), 5);
    let spilled: Vec<u128> = spool_rx.try_iter().map(|q| q.ev.id).collect();
    assert_eq!(spilled, vec![2, 3, 4]);
}

#[test]
fn a_startup_scan_sees_notices_and_skips_bids() {
    let mut bytes = Vec::new();
    encode(&ev(1), &mut bytes);
    encode(&crate::testkit::events::win(2), &mut bytes);
    encode(&ev(3), &mut bytes);
    let mut loss = crate::testkit::events::win(4);
    loss.kind = Kind::Loss;
    loss.spend_micros = 0;
    encode(&loss, &mut bytes);
    let whole = bytes.len();
    encode(&crate::testkit::events::win(5), &mut bytes);
    bytes.truncate(whole + 10);
    let mut seen = Vec::new();
    let torn = scan_notices(&bytes, |n| {
        seen.push((n.kind, n.bid_id.to_string(), n.spend_micros))
    })
    .unwrap();
    assert_eq!(torn, 10, "a cut-short last frame is left");
    assert_eq!(
        seen,
        [
            (Kind::Win, "b-2".to_string(), 1_250),
            (Kind::Loss, "b-4".to_string(), 0)
        ]
    );
}

#[test]
fn damage_mid_segment_loses_only_what_follows_it() {
    let mut bytes = Vec::new();
    for i in 0..20 {
        super::encode(&crate::testkit::events::charge(i, 0, 5), &mut bytes);
    }
    let good = bytes.len();
    // A frame header promising a segment, then garbage: not an event.
    bytes.extend_from_slice(&[0, 0, 0, 0, 2, 0, 0, 0]);
    bytes.extend_from_slice(&[0xff; 40]);
    for i in 20..25 {
        super::encode(&crate::testkit::events::charge(i, 0, 5), &mut bytes);
    }
    assert!(read_spool(&bytes).is_err(), "the strict reader refuses it");
    let s = super::salvage_spool(&bytes);
    assert_eq!(s.events.len(), 20, "every event before the damage");
    assert_eq!(s.damage.as_ref().map(|d| d.0), Some(good), "{:?}", s.damage);
    assert_eq!(s.unread, bytes.len() - good);
    let whole = super::salvage_spool(&bytes[..good]);
    assert_eq!((whole.events.len(), whole.unread), (20, 0));
    assert!(whole.damage.is_none());
}
