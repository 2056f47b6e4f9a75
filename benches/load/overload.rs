//! Open-loop load at a fixed rate, for the overload check: at twice the
//! capacity, bids that are served still answer within tmax and the excess
//! gets 204. Driven by benches/overload.sh, which finds the capacity with wrk
//! and then runs this at a multiple of it:
//!
//!   TARGET=127.0.0.1:18500 RATE=50000 SECS=10 CONNS=128 cargo bench --bench overload
//!
//! Like wrk2, each request has a scheduled send time (RATE spread evenly over
//! CONNS keep-alive connections) and its latency is measured from that time,
//! so a server that falls behind is charged for the queueing it causes
//! (no coordinated omission). Sends keep their schedule to microseconds (a
//! millisecond timer, then a spin on the clock; the client's core is busy
//! throughout), and how late they left is printed as the run's floor.
//! Bodies: the IAB bid request examples with a fresh auction id each.
//! Prints counts per status and latency quantiles per status, and the share
//! of 200s answered within TMAX_MS (default 100; the examples that set tmax
//! set 120). Requests scheduled in the first WARMUP
//! seconds (default 1) are sent but not counted; SECS counted seconds follow.
//! GET=/healthz sends that GET instead (the server's floor at the same rate:
//! its loop and network path without the bid work).
#![allow(clippy::unwrap_used)]

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use adshard::testkit::fixtures;

fn bodies() -> Vec<String> {
    fixtures::bid_requests()
        .into_iter()
        .map(|(_, body)| String::from_utf8(body).unwrap())
        .collect()
}

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .map(|v| {
            v.parse()
                .ok()
                .unwrap_or_else(|| panic!("{k}: bad value {v}"))
        })
        .unwrap_or(d)
}

/// Reads one response: status and how long until its last byte.
async fn response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
            let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 16384];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(status);
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The send schedule. Connections wait on it for their due times; one task
/// ([`Schedule::run`]) sleeps on the runtime's timer, which ticks every
/// millisecond, to a little before the earliest due time and then yields
/// until the clock reaches it. A request thus leaves within microseconds of
/// its schedule instead of up to a millisecond after (which its latency,
/// measured from the schedule, would count), and only that one task spins
/// however many connections wait.
struct Schedule {
    due: RefCell<BinaryHeap<Reverse<(Instant, usize)>>>,
    go: Vec<Notify>,
    added: Notify,
    open: Cell<usize>,
}

impl Schedule {
    fn new(conns: usize) -> Schedule {
        Schedule {
            due: RefCell::default(),
            go: (0..conns).map(|_| Notify::new()).collect(),
            added: Notify::new(),
            open: Cell::new(conns),
        }
    }

    /// Waits until connection `c`'s time `at`; returns how late it was
    /// let go, in microseconds.
    async fn wait(&self, c: usize, at: Instant) -> u32 {
        self.due.borrow_mut().push(Reverse((at, c)));
        self.added.notify_one();
        self.go[c].notified().await;
        (Instant::now() - at).as_micros().min(u128::from(u32::MAX)) as u32
    }

    /// A connection is done: the schedule ends with the last.
    fn close(&self) {
        self.open.set(self.open.get() - 1);
        self.added.notify_one();
    }

    async fn run(&self) {
        const SPIN: Duration = Duration::from_micros(1500);
        loop {
            let next = self.due.borrow().peek().map(|r| r.0);
            let Some((at, c)) = next else {
                if self.open.get() == 0 {
                    return;
                }
                self.added.notified().await;
                continue;
            };
            let now = Instant::now();
            if at <= now {
                self.due.borrow_mut().pop();
                self.go[c].notify_one();
            } else if at - now > SPIN {
                // An earlier time may be added meanwhile.
                let sleep = Box::pin(tokio::time::sleep_until(at - SPIN));
                let added = Box::pin(self.added.notified());
                futures::future::select(sleep, added).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The `p` quantile of `sorted` (not empty).
fn quantile(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: this
    // one needs minutes (and, for overload, a server), so it only runs
    // under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("overload: a benchmark; run it with `cargo bench --bench overload`");
        return;
    }
    let target: String = env("TARGET", "127.0.0.1:18500".to_string());
    let rate: f64 = env("RATE", 20_000.0);
    let secs: f64 = env("SECS", 10.0);
    let conns: usize = env("CONNS", 128);
    let tmax_ms: f64 = env("TMAX_MS", 100.0);
    // Requests scheduled in the first WARMUP seconds are sent but not
    // counted: connections opening, the server's first allocations.
    let warmup: f64 = env("WARMUP", 1.0);
    // GET=<path>: every request is that one GET, built once.
    let get: Option<Rc<str>> = Some(env("GET", String::new()))
        .filter(|p| !p.is_empty())
        .map(|p| format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").into());
    let bodies = std::rc::Rc::new(bodies());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let start = Instant::now() + Duration::from_millis(200);
                let sched = Rc::new(Schedule::new(conns));
                let ticker = tokio::task::spawn_local({
                    let sched = sched.clone();
                    async move { sched.run().await }
                });
                let per_conn = Duration::from_secs_f64(conns as f64 / rate);
                let counted = start + Duration::from_secs_f64(warmup);
                let end = counted + Duration::from_secs_f64(secs);
                let mut tasks = Vec::new();
                for c in 0..conns {
                    let (target, bodies, sched) = (target.clone(), bodies.clone(), sched.clone());
                    let get = get.clone();
                    tasks.push(tokio::task::spawn_local(async move {
                        let mut out: Vec<(u16, u32, u32)> = Vec::new();
                        let mut s = tokio::net::TcpStream::connect(&target).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        let mut buf = Vec::new();
                        // Spread the connections' schedules over one interval.
                        let mut due = start + per_conn.mul_f64(c as f64 / conns as f64);
                        let mut k = c;
                        while due < end {
                            let late = sched.wait(c, due).await;
                            let req: Rc<str> = match &get {
                                Some(g) => g.clone(),
                                None => {
                                    let body = bodies[k % bodies.len()].replacen(
                                        "\"id\"",
                                        &format!("\"id\":\"ol-{c}-{k}\",\"x_id\""),
                                        1,
                                    );
                                    format!(
                                        "POST /openrtb2/bid HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                        body.len()
                                    )
                                    .into()
                                }
                            };
                            k += conns;
                            if s.write_all(req.as_bytes()).await.is_err() {
                                out.push((0, 0, late));
                                break;
                            }
                            match response(&mut s, &mut buf).await {
                                Ok(st) => {
                                    let lat = Instant::now() - due;
                                    if due >= counted {
                                        out.push((st, lat.as_micros() as u32, late));
                                    }
                                }
                                Err(_) => {
                                    out.push((0, 0, late));
                                    break;
                                }
                            }
                            due += per_conn;
                        }
                        sched.close();
                        out
                    }));
                }
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.unwrap());
                }
                ticker.await.unwrap();
                all
            })
            .await
    });
    let mut by: std::collections::BTreeMap<u16, Vec<u32>> = Default::default();
    let mut lates: Vec<u32> = Vec::with_capacity(results.len());
    for (st, us, late) in &results {
        by.entry(*st).or_default().push(*us);
        lates.push(*late);
    }
    let total = results.len();
    println!(
        "target={target} rate={rate}/s secs={secs} conns={conns}: {total} requests ({:.0}/s)",
        total as f64 / secs
    );
    if !lates.is_empty() {
        // The generator's own error: how late each request left after its
        // scheduled time (counted in its latency, as it must be when the
        // server is the cause; here the floor of what this run can show).
        lates.sort_unstable();
        let q = |p: f64| quantile(&lates, p);
        println!(
            "  sent after schedule: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0)
        );
    }
    for (st, lats) in &mut by {
        lats.sort_unstable();
        let q = |p: f64| f64::from(quantile(lats, p)) / 1000.0;
        println!(
            "  status {st}: {} ({:.1}%), p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            lats.len(),
            100.0 * lats.len() as f64 / total as f64,
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0)
        );
    }
    if let Some(ok) = by.get(&200) {
        let within = ok.iter().filter(|u| **u as f64 <= tmax_ms * 1000.0).count();
        println!(
            "  200s within {tmax_ms} ms: {within} of {} ({:.2}%)",
            ok.len(),
            100.0 * within as f64 / ok.len() as f64
        );
    }
}
