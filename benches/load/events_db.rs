//! Events per second written behind into a local Cassandra node.
//!
//!   cargo bench --bench events_db                 # offered 5k, 10k, 20k, 40k events/s, 10 s each
//!   RATES=20000,60000 SECS=20 cargo bench --bench events_db
//!   WINS_PER_20=0 cargo bench --bench events_db   # no spend: batches only
//!
//! Starts a Cassandra 5.0 node (deploy/cassandra/cassandra.sh), then the event
//! store with two shard sinks, as the server would on two cores. Each step
//! pushes events at a fixed offered rate from two producer threads (the
//! shards' stand-ins; a push never waits), in the server's mix: 80% bids, 10%
//! wins charging spend (claim, counter, mark), 5% impressions, 5% losses
//! (`WINS_PER_20` changes the share of wins).
//! Reported per step: events stored per second during the step, events
//! spilled to the spool (the database queue was full), and the time to drain
//! what was still queued or in flight at the end. The highest offered rate
//! with nothing spilled is the sustained rate. Spilled events are replayed
//! before the next step starts. Everything runs on this machine: Cassandra,
//! the writer and the producers share its cores.
#![allow(clippy::unwrap_used)]

use adshard::testkit::events::mixed as event;
use adshard::testkit::{cassandra, now_micros};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: this
    // one needs minutes (and, for overload, a server), so it only runs
    // under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("events_db: a benchmark; run it with `cargo bench --bench events_db`");
        return;
    }
    // `cargo bench` passes --bench; nothing else is taken from argv.
    let rates: Vec<u64> = std::env::var("RATES")
        .unwrap_or_else(|_| "5000,10000,20000,40000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("RATES: comma-separated events/s"))
        .collect();
    // Wins (each charging spend) per 20 events: 2 = 10%.
    let wins: u64 = std::env::var("WINS_PER_20")
        .ok()
        .map(|s| s.parse().expect("WINS_PER_20: 0 to 18"))
        .unwrap_or(2);
    let secs: u64 = std::env::var("SECS")
        .ok()
        .map(|s| s.parse().expect("SECS: seconds per step"))
        .unwrap_or(10);
    let _one = cassandra::ONE_NODE.lock().unwrap();
    // A larger heap than the tests' node: 512 MiB ran out at 40k events/s.
    if std::env::var_os("CASSANDRA_HEAP").is_none() {
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("CASSANDRA_HEAP", "2g");
    }
    let mut node = cassandra::Node::new("bench");
    let spool = adshard::testkit::scratch::dir("bench-spool");
    let _ = std::fs::remove_dir_all(&spool);
    let mut cfg = adshard::config::EventsConfig {
        spool_dir: spool.clone(),
        ..Default::default()
    };
    cfg.db.nodes = vec![node.addr()];
    cfg.db.keyspace = "bench_events".into();
    cfg.db.replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}".into();
    let started = adshard::events::Store::start(&cfg, 2).unwrap();
    let db = started.db.clone().unwrap();
    let t = Instant::now();
    while db.up.load(Relaxed) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "writer never connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sinks: Vec<Arc<adshard::events::Sink>> = started.sinks.into_iter().map(Arc::new).collect();
    let spilled = || -> u64 {
        started
            .spool
            .iter()
            .map(|s| s.spilled_queue_full.load(Relaxed))
            .sum::<u64>()
            + db.spilled_down.load(Relaxed)
            + db.spilled_failed.load(Relaxed)
    };
    let seq = Arc::new(AtomicU64::new(0));
    println!(
        "{:>10} {:>10} {:>10} {:>9} {:>9}",
        "offered/s", "pushed", "stored/s", "spilled", "drain_ms"
    );
    for rate in rates {
        let (stored0, spilled0, replayed0) = (
            db.stored.load(Relaxed),
            spilled(),
            db.replayed.load(Relaxed),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let pushed = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let producers: Vec<_> = (0..2u16)
            .map(|shard| {
                let sink = sinks[usize::from(shard)].clone();
                let (stop, pushed, seq) = (stop.clone(), pushed.clone(), seq.clone());
                std::thread::spawn(move || {
                    // Paced by the clock: after `el` seconds, rate/2 * el pushed.
                    let per_shard = rate as f64 / 2.0;
                    let mut mine = 0u64;
                    while !stop.load(Relaxed) {
                        let due = (start.elapsed().as_secs_f64() * per_shard) as u64;
                        while mine < due {
                            let n = seq.fetch_add(1, Relaxed);
                            let id = (now_micros() << 64) | u128::from(n);
                            sink.push(event(id, shard, n, wins));
                            mine += 1;
                        }
                        std::thread::sleep(Duration::from_micros(500));
                    }
                    pushed.fetch_add(mine, Relaxed);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Relaxed);
        for p in producers {
            p.join().unwrap();
        }
        let window = start.elapsed().as_secs_f64();
        let stored_in_window = db.stored.load(Relaxed) - stored0;
        let pushed = pushed.load(Relaxed);
        let sp = spilled() - spilled0;
        // Drain: everything pushed is stored or spilled.
        let d = Instant::now();
        while db.stored.load(Relaxed) - stored0 - (db.replayed.load(Relaxed) - replayed0) + sp
            < pushed
        {
            assert!(d.elapsed() < Duration::from_secs(300), "drain stalled");
            node.assert_alive();
            std::thread::sleep(Duration::from_millis(5));
        }
        let drain_ms = d.elapsed().as_millis();
        println!(
            "{:>10} {:>10} {:>10.0} {:>9} {:>9}",
            rate,
            pushed,
            stored_in_window as f64 / window,
            sp,
            drain_ms
        );
        // Replay what spilled before the next step.
        let r = Instant::now();
        while !adshard::events::list_segments(&spool).unwrap().is_empty() {
            assert!(r.elapsed() < Duration::from_secs(600), "replay stalled");
            node.assert_alive();
            std::thread::sleep(Duration::from_millis(50));
        }
        if sp > 0 {
            println!(
                "{:>10} replayed {} spilled events in {:.1} s",
                "",
                sp,
                r.elapsed().as_secs_f64()
            );
        }
    }
    drop(sinks);
    started.store.join();
    let _ = std::fs::remove_dir_all(&spool);
}
