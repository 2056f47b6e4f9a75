//! `adshard serve` as a child process (tests that kill it, or run two).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A server process, killed and waited for when dropped (a test that fails
/// half-way leaves none behind).
#[derive(Debug)]
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// SIGKILL, then wait.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The notice key of every server these tests start: a notice signed by
/// one process (before a restart, or by another node of a fleet) verifies
/// in the next (each would otherwise draw its own key).
const NOTICE_KEYS: &str = r#"["process-test-key-0123456789abcdef-0123456789"]"#;

/// Starts `bin serve` on 127.0.0.1:0, one shard on core 0, scoring,
/// overload shedding and the IVT device and rate checks off, its spool in
/// `spool`, [`NOTICE_KEYS`] for its notice key, with `env` on top; returns
/// once it has logged its address.
pub fn serve(bin: &str, spool: &Path, env: &[(&str, &str)]) -> (Server, SocketAddr) {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--cores", "0"])
        .env("ADSHARD__SERVER__SPIN_BEFORE_PARK_US", "0")
        .env("ADSHARD__SERVER__PIN", "false")
        .env("ADSHARD__SCORING__ENABLED", "false")
        .env("ADSHARD__OVERLOAD__ENABLED", "false")
        .env("ADSHARD__EVENTS__SPOOL_DIR", spool)
        .env("ADSHARD__BIDDER__NOTICE_KEYS", NOTICE_KEYS)
        // As in the in-process test config (testkit::wire::TEST_TOML).
        .env("ADSHARD__IVT__REQUIRE_DEVICE", "false")
        .env("ADSHARD__IVT__MAX_PER_IP", "0")
        .env("ADSHARD__IVT__MAX_PER_DEVICE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Wrapped at once: killed and waited for on every path.
    let mut child = Server(cmd.spawn().unwrap());
    let mut err = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(i) = line.find("addr=") {
            let addr: SocketAddr = line[i + 5..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            // Keep draining stderr so the server never blocks on it; into
            // `$ADSHARD_TEST_LOG_DIR/<port>.log` when that is set (a failed
            // test's servers, read afterwards).
            let keep = std::env::var_os("ADSHARD_TEST_LOG_DIR").and_then(|d| {
                let f = Path::new(&d).join(format!("{}.log", addr.port()));
                std::fs::File::create(f).ok()
            });
            std::thread::spawn(move || match keep {
                Some(mut f) => std::io::copy(&mut err, &mut f),
                None => std::io::copy(&mut err, &mut std::io::sink()),
            });
            return (child, addr);
        }
        line.clear();
    }
    panic!("server did not log its address");
}
