//! The real binary: start-up errors name the key, SIGTERM drains and exits 0,
//! helper threads keep off the shards' cores.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_adshard");

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = adshard::testkit::scratch::dir("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_accepts_shipped_configs() {
    for f in ["configs/default.toml", "configs/dev.toml"] {
        let out = Command::new(BIN)
            .args(["check-config", f])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
}

/// The Kubernetes ConfigMap's adshard.toml and the manifest's ADSHARD__
/// variables are a valid configuration (a misspelt key would stop every pod).
#[test]
fn kubernetes_config_is_valid() {
    let yaml = std::fs::read_to_string("deploy/k8s/adshard.yaml").unwrap();
    let mut toml = String::new();
    let mut inside = false;
    for line in yaml.lines() {
        if line.trim_end() == "  adshard.toml: |" {
            inside = true;
        } else if inside {
            match line.strip_prefix("    ") {
                Some(l) => {
                    toml.push_str(l);
                    toml.push('\n');
                }
                None if line.trim().is_empty() => toml.push('\n'),
                None => break,
            }
        }
    }
    assert!(toml.contains("[server]"), "ConfigMap block found");
    let env: Vec<(String, String)> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|n| n.starts_with("ADSHARD__"))
        .map(|n| {
            let v = if n == "ADSHARD__BIDDER__NOTICE_KEYS" {
                r#"["k8s-test-notice-key-0123456789abcdef"]"#
            } else {
                "k8s-test-token-0123"
            };
            (n.to_string(), v.to_string())
        })
        .collect();
    assert!(!env.is_empty(), "the manifest sets the admin token");
    let cfg = adshard::config::Config::from_toml(&toml, "deploy/k8s/adshard.yaml", env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.events.db.nodes.is_empty());
    assert!(!cfg.admin.listen.is_empty());
    assert_eq!(cfg.bidder.notice_keys.len(), 1, "the Secret's notice keys");
}

#[test]
fn bad_config_fails_naming_the_key() {
    let cases = [
        (
            "[server]\nspin_before_parkk_us = 1\n",
            "spin_before_parkk_us",
        ),
        ("[limits]\nmax_body_bytes = -5\n", "limits.max_body_bytes"),
        ("[server]\ncores = [999]\n", "server.cores"),
        (
            "[timeouts]\nidle_keepalive_ms = 0\n",
            "timeouts.idle_keepalive_ms",
        ),
        // A public bidder must sign with keys that survive a restart.
        (
            "[bidder]\npublic_url = \"https://bidder.example.com\"\n",
            "bidder.notice_keys",
        ),
        (
            "[bidder]\nnotice_keys = [\"short-key\"]\n",
            "bidder.notice_keys[0]",
        ),
    ];
    // What only start-up used to find: check-config finds it too.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().map(|a| (busy, a)).unwrap();
    let not_a_dir = write_config("not-a-dir", "x");
    let spool = format!(
        "[events]\nspool_dir = {:?}\n",
        adshard::testkit::scratch::dir("cli-spool")
    );
    let startup = [
        (
            format!("{spool}[campaigns]\npath = \"/nonexistent/campaigns.toml\"\n"),
            "campaigns.path",
        ),
        (
            format!("[events]\nspool_dir = {not_a_dir:?}\n"),
            "events.spool_dir",
        ),
        (
            format!("{spool}[admin]\nlisten = \"{}\"\ntoken = \"t\"\n", busy.1),
            "admin.listen",
        ),
        (
            format!("{spool}[server]\nlisten = \"{}\"\n", busy.1),
            "server.listen",
        ),
        (
            format!("{spool}[limits]\nmax_body_bytes = 0\n"),
            "limits.max_body_bytes",
        ),
    ];
    let cases: Vec<(String, &str)> = cases
        .iter()
        .map(|(t, k)| (t.to_string(), *k))
        .chain(startup)
        .collect();
    for (i, (text, key)) in cases.iter().enumerate() {
        let p = write_config(&format!("bad{i}.toml"), text);
        for args in [
            vec!["check-config", p.to_str().unwrap()],
            vec!["serve", "--config", p.to_str().unwrap()],
        ] {
            let out = Command::new(BIN).args(&args).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(key), "{args:?}: {err}");
        }
    }
    let out = Command::new(BIN)
        .args(["serve", "--cores", "x-y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cores"));
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--cores", "0"])
        .env("ADSHARD__SERVER__SPIN_BEFORE_PARK_US", "0")
        .env("ADSHARD__SERVER__PIN", "false")
        .env("ADSHARD__SCORING__ENABLED", "false")
        .env(
            "ADSHARD__EVENTS__SPOOL_DIR",
            adshard::testkit::scratch::dir("cli-spool"),
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(i) = line.find("addr=") {
            addr = line[i + 5..].split_whitespace().next().map(str::to_string);
            break;
        }
        line.clear();
    }
    let addr = addr.expect("server logs its address");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The idle keep-alive connection was closed by the drain.
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    assert!(rest.contains("all shards stopped"), "{rest}");
}

/// A port another process serves is refused, not shared through
/// SO_REUSEPORT (which would split the connections between the two).
#[test]
fn a_listen_address_in_use_exits_2_naming_it() {
    let spool = adshard::testkit::scratch::dir("cli-busy");
    let (first, addr) = adshard::testkit::process::serve(BIN, &spool, &[]);
    let mut second = Command::new(BIN)
        .args(["serve", "--listen", &addr.to_string(), "--cores", "0"])
        .env("ADSHARD__SCORING__ENABLED", "false")
        .env("ADSHARD__EVENTS__SPOOL_DIR", &spool)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = second.kill();
            panic!("a second server started on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("server.listen: cannot listen on {addr}")) && err.contains("in use"),
        "{err}"
    );
    // The first server still has the port to itself.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    drop(first);
    let _ = std::fs::remove_dir_all(&spool);
}

/// `spool-dump` on a segment damaged after 20 events prints those 20 and
/// says where the damage starts (exit 2).
#[test]
fn spool_dump_salvages_events_before_damage() {
    let mut bytes = Vec::new();
    for i in 0..20 {
        adshard::events::encode(&adshard::testkit::events::charge(i, 0, 7), &mut bytes);
    }
    let good = bytes.len();
    bytes.extend_from_slice(&[0, 0, 0, 0, 2, 0, 0, 0]);
    bytes.extend_from_slice(&[0xee; 64]);
    let p = write_config("damaged.spool", "");
    std::fs::write(&p, &bytes).unwrap();
    let out = Command::new(BIN)
        .args(["spool-dump", p.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[19]["spend_micros"], 7);
    assert!(err.contains(&format!("damaged at byte {good}")), "{err}");
    assert!(err.contains("20 events before it"), "{err}");
}

/// Threads of process `pid` by name, each with the cores it may run on.
fn thread_cores(pid: u32) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap();
        let cores = adshard::config::parse_core_spec(list).unwrap().unwrap();
        out.push((comm.trim().to_string(), cores));
    }
    out
}

/// With pinned shards on some of its cores, the server's helper threads
/// (index loader, spool writer, admin listener) run on the others: a
/// reload or a spool write never takes a shard's core, where it would hold
/// it for a scheduler tick (4 ms at HZ=250) while requests wait.
#[test]
fn helper_threads_run_off_the_shards_cores() {
    // `process::serve` puts its one shard on core 0.
    let (allowed, shard_core) = (adshard::sys::allowed_cores(), 0);
    assert!(
        allowed.len() >= 2 && allowed.contains(&shard_core),
        "this test needs core 0 and another to tell shard from helper, has {allowed:?}"
    );
    let spool = adshard::testkit::scratch::dir("cli-helpers");
    let (server, _addr) = adshard::testkit::process::serve(
        BIN,
        &spool,
        &[
            ("ADSHARD__SERVER__PIN", "true"),
            ("ADSHARD__ADMIN__LISTEN", "127.0.0.1:0"),
            ("ADSHARD__ADMIN__TOKEN", "helper-test-token-0123456789"),
        ],
    );
    let helpers: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|&c| c != shard_core)
        .collect();
    // Its address is logged as the listeners are bound, before the shards
    // start; a thread carries its name a moment before it pins itself, so
    // wait until the shard is pinned and every helper is placed (10 s at
    // most), then check that snapshot.
    let t = Instant::now();
    let threads = loop {
        let threads = thread_cores(server.0.id());
        let pinned = threads
            .iter()
            .any(|(n, c)| n.starts_with("shard-0") && c.as_slice() == [shard_core]);
        let placed = ["index-loader", "spool-0", "admin"].iter().all(|h| {
            threads
                .iter()
                .any(|(n, c)| n.starts_with(h) && c == &helpers)
        });
        if (pinned && placed) || t.elapsed() > Duration::from_secs(10) {
            break threads;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let named = |prefix: &str| -> Vec<&Vec<usize>> {
        threads
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, c)| c)
            .collect()
    };
    for name in ["index-loader", "spool-0", "admin"] {
        let found = named(name);
        assert!(!found.is_empty(), "no {name} thread among {threads:?}");
        for cores in found {
            assert_eq!(cores, &helpers, "{name} thread's cores ({threads:?})");
        }
    }
    let shards = named("shard-0");
    assert!(!shards.is_empty(), "no shard thread among {threads:?}");
    assert!(
        shards.iter().any(|c| c.as_slice() == [shard_core]),
        "the shard is pinned to core {shard_core}: {threads:?}"
    );
}
