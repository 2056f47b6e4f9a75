//! The `adshard` binary: command line, start-up order, signal handling and
//! shutdown order. No request logic lives here.

use adshard::config::{parse_core_spec, Config, CoreSpec, Cores};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "adshard",
    version,
    about = "Thread-per-core ad server and OpenRTB bidder"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server (on the embedded default config unless --config is given).
    Serve {
        /// Config file (TOML). Without it the embedded default is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Cores to run shards on, overriding server.cores: "all", "0-3", "0,2".
        #[arg(long)]
        cores: Option<String>,
        /// Listen address, overriding server.listen.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Write a synthetic campaigns file (JSON) for load tests and benchmarks.
    GenCampaigns {
        /// How many campaigns.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Seed (same seed, same file).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print the events in a spool file as JSON lines (a torn tail is reported).
    SpoolDump {
        /// Spool segment (spool/shard-N-SEQ.spool).
        file: PathBuf,
    },
    /// Load spool files into the database of [events.db] (idempotent: event
    /// ids are the key). Without files: every segment in events.spool_dir
    /// (stop the server first, or it may still be writing one).
    Replay {
        /// Config file (TOML) naming the database; without it the embedded
        /// default plus ADSHARD__EVENTS__DB__NODES and friends.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Delete each file once all its events are stored.
        #[arg(long)]
        delete: bool,
        /// Spool files.
        files: Vec<PathBuf>,
    },
    /// Print the CQL schema of the event store for a config (keyspace,
    /// tables, TTLs); deploy/cql/schema.cql is this for the default.
    CqlSchema {
        /// Config file (TOML); without it the embedded default.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the shards it would start.
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
    },
}

fn load(config: Option<&PathBuf>) -> Result<Config, adshard::config::ConfigError> {
    match config {
        Some(p) => Config::load(p),
        None => Config::embedded(),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ADSHARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,scylla=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::GenCampaigns { count, seed } => {
            let file = adshard::index::synth::campaigns(count, seed);
            match serde_json::to_writer(std::io::stdout().lock(), &file) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::SpoolDump { file } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            let s = adshard::events::salvage_spool(&bytes);
            let mut out = std::io::stdout().lock();
            for ev in &s.events {
                let line = serde_json::json!({
                    "id": format!("{:032x}", ev.id),
                    "kind": ev.kind.label(),
                    "ts_micros": ev.ts_micros,
                    "shard": ev.shard,
                    "auction_id": ev.auction_id,
                    "imp_id": ev.imp_id,
                    "campaign_id": ev.campaign_id,
                    "creative_id": ev.creative_id,
                    "price_micros": ev.price_micros,
                    "currency": ev.currency,
                    "spend_micros": ev.spend_micros,
                    "bid_id": ev.bid_id,
                });
                if std::io::Write::write_fmt(&mut out, format_args!("{line}\n")).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            match s.damage {
                None => {
                    eprintln!(
                        "{} events; {} bytes of a torn last write",
                        s.events.len(),
                        s.unread
                    );
                    ExitCode::SUCCESS
                }
                Some((at, why)) => {
                    eprintln!(
                        "error: {}: damaged at byte {at} ({why}); {} events before it printed, {} bytes after it unread",
                        file.display(),
                        s.events.len(),
                        s.unread
                    );
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Replay {
            config,
            delete,
            files,
        } => match load(config.as_ref()) {
            Ok(cfg) => replay(&cfg, files, delete),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::CqlSchema { config } => match load(config.as_ref()) {
            Ok(cfg) => {
                print!("{}", adshard::events::db::schema_script(&cfg.events.db));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::CheckConfig { file } => {
            match Config::load(&file).and_then(|c| {
                let checked = adshard::api::preflight::preflight(&c)?;
                let shards = c.shards(&adshard::sys::allowed_cores())?;
                Ok((c, shards, checked))
            }) {
                Ok((c, shards, checked)) => {
                    println!(
                        "{}: ok; listen {}; {} shard(s)",
                        file.display(),
                        c.server.listen,
                        shards.len()
                    );
                    for line in checked {
                        println!("  {line}");
                    }
                    for s in shards {
                        println!(
                            "  shard {} on core {}: spin_before_park {:?}, max_connections {}",
                            s.id, s.core, s.spin_before_park, s.max_connections
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Serve {
            config,
            cores,
            listen,
        } => {
            let mut cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(spec) = cores {
                match parse_core_spec(&spec) {
                    Ok(list) => cfg.server.cores = Cores::Spec(CoreSpec(list)),
                    Err(e) => {
                        eprintln!("error: --cores: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            if let Err(e) = cfg.validate() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            serve(cfg)
        }
    }
}

/// `adshard replay`: exit 0 when every file is stored, 1 when the database
/// failed part-way (files kept; running again is safe), 2 for bad input.
fn replay(cfg: &Config, files: Vec<PathBuf>, delete: bool) -> ExitCode {
    let each = |f: &std::path::Path, r: &adshard::events::db::Replayed| {
        println!(
            "{}",
            serde_json::json!({
                "file": f.display().to_string(),
                "events": r.events,
                "torn_tail_bytes": r.torn_bytes,
                "damaged_at": r.damaged_at,
            })
        );
    };
    match adshard::events::db::replay_files(&cfg.events, files, delete, each) {
        Ok(s) => {
            eprintln!(
                "{} files, {} events stored; {} failed attempts, {} retries",
                s.files, s.events, s.write_errors, s.retries
            );
            if s.damaged > 0 {
                eprintln!(
                    "error: {} file(s) damaged: the events before the damage are stored, the files kept (see damaged_at)",
                    s.damaged
                );
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn serve(cfg: Config) -> ExitCode {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Register signals before starting shards so an early SIGTERM is not lost.
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match adshard::api::App::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let shared = app.server.shared().clone();
    std::thread::spawn(move || {
        let mut seen = 0;
        for sig in signals.forever() {
            seen += 1;
            if seen == 1 {
                tracing::info!(signal = sig, "shutting down: draining in-flight requests");
                shared
                    .draining
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            } else {
                tracing::warn!(signal = sig, "second signal: exiting without waiting");
                std::process::exit(1);
            }
        }
    });
    app.join();
    ExitCode::SUCCESS
}
