//! A single Cassandra node for tests and benchmarks, run through
//! deploy/cassandra/cassandra.sh (which fetches it from Maven Central on
//! first use). Used by tests/cassandra.rs and benches/load/events_db.rs.

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/cassandra/cassandra.sh");

/// One node at a time: two JVMs at once would crowd a small machine.
pub static ONE_NODE: Mutex<()> = Mutex::new(());

/// A port nothing listens on now, below the kernel's ephemeral range, so
/// that no client socket is ever given it as its own port. A client that
/// keeps reconnecting to a stopped node on an ephemeral port now and then
/// connects to itself (TCP self-connect: source port = destination port)
/// and so holds the port the node is to restart on (the likely cause of
/// the fault test's one failed restart, "Address already in use" on the
/// native port, 42435).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    // The range's first port (32768 by default).
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.clamp(LOW + 1_000, 32_768) - LOW;
    // Test processes start apart (by pid), calls in one step on.
    let start = std::process::id()
        .wrapping_mul(7_919)
        .wrapping_add(NEXT.fetch_add(1, Relaxed).wrapping_mul(101))
        % span;
    (0..span)
        .map(|i| (LOW + (start + i) % span) as u16)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// A Cassandra node; killed when dropped.
#[derive(Debug)]
pub struct Node {
    pub dir: PathBuf,
    native: u16,
    storage: u16,
    child: Option<Child>,
}

impl Node {
    pub fn new(name: &str) -> Node {
        let dir = super::scratch::dir(&format!("cass-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = Node {
            dir,
            native: free_port(),
            storage: free_port(),
            child: None,
        };
        n.start();
        n
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.native)
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT)
            .arg("run")
            .arg(&self.dir)
            .arg(self.native.to_string())
            .arg(self.storage.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // The node dies with the test process, whatever ends it.
        // SAFETY: prctl is async-signal-safe; nothing else runs in pre_exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(
            cmd.spawn()
                .expect("bash runs deploy/cassandra/cassandra.sh"),
        );
        let t = Instant::now();
        let rt = rt();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "Cassandra exited ({st}) during start-up:\n{}",
                    self.log_tail()
                );
            }
            if rt.block_on(cql(&self.addr())).is_some() {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "Cassandra did not answer CQL within 300 s (the first run fetches it from Maven Central):\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Panics with the log's tail if the node has exited.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("Cassandra exited ({st}):\n{}", self.log_tail());
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        s.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub async fn cql(addr: &str) -> Option<Session> {
    let s = tokio::time::timeout(
        Duration::from_secs(5),
        SessionBuilder::new()
            .known_node(addr)
            .connection_timeout(Duration::from_secs(2))
            .build(),
    )
    .await
    .ok()?
    .ok()?;
    s.query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .ok()?;
    Some(s)
}
