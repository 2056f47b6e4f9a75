//! Typed configuration: a TOML file (or the embedded default), then
//! `ADSHARD__SECTION__KEY` environment overrides, then CLI flags.
//!
//! Everything is read and validated at start-up; nothing here does I/O after
//! that. Every error names the key it is about (`server.cores: ...`), so an
//! operator can fix the file without reading code.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The configuration compiled into the binary, used when no file is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../configs/default.toml");

/// Prefix of environment overrides: `ADSHARD__SERVER__LISTEN=127.0.0.1:9000`.
pub const ENV_PREFIX: &str = "ADSHARD__";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{origin}: invalid TOML: {message}")]
    Syntax {
        /// File name or "embedded default".
        origin: String,
        /// Parser message (with line and column).
        message: String,
    },
    /// A key is unknown or its value has the wrong type.
    #[error("{origin}: {key}: {message}")]
    Key {
        /// File name, env var or "embedded default".
        origin: String,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value is well-typed but not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, cores and executor settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Request size limits.
    #[serde(default)]
    pub limits: Limits,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Metrics exposition.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Per-shard overrides, keyed by core.
    #[serde(default)]
    pub shard: Vec<ShardOverride>,
    /// Bidding.
    #[serde(default)]
    pub bidder: BidderConfig,
    /// Where campaigns come from and how they reload.
    #[serde(default)]
    pub campaigns: CampaignsConfig,
    /// CTR scoring with an ONNX model.
    #[serde(default)]
    pub scoring: ScoringConfig,
    /// The admin listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Load shedding.
    #[serde(default)]
    pub overload: OverloadConfig,
    /// Event spooling.
    #[serde(default)]
    pub events: EventsConfig,
}

/// `[events]`: where events go. With no database (`[events.db] nodes`
/// empty, the embedded default) every event goes to the spool; with one,
/// events are written behind to it and the spool takes what it cannot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Directory of the per-shard spool segments (created if missing).
    pub spool_dir: std::path::PathBuf,
    /// Events each shard may queue for the database writer, and again for
    /// its spool writer, before it drops one (and counts it).
    pub queue_capacity: usize,
    /// `never`, `interval` or `always`.
    pub fsync: crate::store::Fsync,
    /// With `fsync = "interval"`: the longest gap between syncs.
    pub fsync_interval_ms: u64,
    /// A spool segment is sealed (and a new one opened) once it reaches
    /// this size, so a replay reads bounded files.
    pub segment_max_bytes: u64,
    /// The CQL database (ScyllaDB or Cassandra).
    pub db: DbConfig,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            spool_dir: "spool".into(),
            queue_capacity: 65_536,
            fsync: crate::store::Fsync::Interval,
            fsync_interval_ms: 1000,
            segment_max_bytes: 64 * 1024 * 1024,
            db: DbConfig::default(),
        }
    }
}

/// `[events.db]`: write-behind of events to ScyllaDB (or Cassandra).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbConfig {
    /// Contact points, `host:port`; empty = no database, spool only.
    pub nodes: Vec<String>,
    /// Keyspace of the event tables.
    pub keyspace: String,
    /// Create the keyspace and tables at start-up if missing.
    pub create_schema: bool,
    /// Replication map used when creating the keyspace (CQL map literal).
    pub replication: String,
    /// How long event rows live, in days (table default TTL).
    pub ttl_days: u32,
    /// Most events in one unlogged batch (one partition per batch).
    pub batch_size: usize,
    /// Longest an event waits for its batch to fill before it is sent.
    pub linger_ms: u64,
    /// Most batches in flight at once.
    pub max_in_flight: usize,
    /// Retries of a failed batch before it is spilled to the spool.
    pub retries: u32,
    /// First retry delay; doubles each retry.
    pub retry_backoff_ms: u64,
    /// Per-request timeout.
    pub request_timeout_ms: u64,
    /// Connection set-up timeout.
    pub connect_timeout_ms: u64,
    /// While the database is down: how often it is probed; while it is up:
    /// how often spilled segments are looked for and replayed.
    pub probe_interval_ms: u64,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            nodes: Vec::new(),
            keyspace: "adshard".into(),
            create_schema: true,
            replication: "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}".into(),
            ttl_days: 90,
            batch_size: 64,
            linger_ms: 5,
            max_in_flight: 64,
            retries: 3,
            retry_backoff_ms: 50,
            request_timeout_ms: 2000,
            connect_timeout_ms: 2000,
            probe_interval_ms: 1000,
        }
    }
}

fn is_cql_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 48
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `[overload]`: shed load when a shard's event loop lags or keeps a
/// standing queue (see [`crate::shard::Load`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadConfig {
    /// Measure load and shed.
    pub enabled: bool,
    /// How often each shard samples its event-loop lag.
    pub check_interval_ms: u64,
    /// Smoothed lag above which the shard sheds a growing share of requests
    /// (bids get 204, other routes 503; health and metrics are never shed).
    pub max_lag_ms: u64,
    /// A queue whose lag stays above this for `standing_window_ms` (never
    /// emptying) also sheds: the client is queueing on its side.
    pub standing_lag_ms: u64,
    /// See `standing_lag_ms`.
    pub standing_window_ms: u64,
    /// How fast the shed fraction rises while overloaded, per second.
    pub shed_rise_per_s: f64,
    /// How fast it decays otherwise, per second.
    pub shed_decay_per_s: f64,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            enabled: true,
            check_interval_ms: 2,
            max_lag_ms: 20,
            standing_lag_ms: 2,
            standing_window_ms: 50,
            shed_rise_per_s: 10.0,
            shed_decay_per_s: 5.0,
        }
    }
}

/// `[admin]`: a separate listener for `/admin/*`, bearer token required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener; empty disables it.
    pub listen: String,
    /// Bearer token; required when `listen` is set (prefer the env
    /// override `ADSHARD__ADMIN__TOKEN`).
    pub token: String,
    /// Largest admin request body (campaign uploads).
    pub max_body_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: String::new(),
            token: String::new(),
            max_body_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[scoring]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Score CPC candidates with the model; false = rule-based pricing
    /// (each campaign's `expected_ctr`).
    pub enabled: bool,
    /// Path of libonnxruntime; empty = `ORT_DYLIB_PATH`.
    pub library: String,
    /// ONNX model file; unset = the embedded model (configs/ctr.onnx).
    pub model: Option<std::path::PathBuf>,
    /// How often the model file is checked for changes.
    pub reload_poll_ms: u64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            enabled: true,
            library: String::new(),
            model: None,
            reload_poll_ms: 1000,
        }
    }
}

/// `[bidder]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BidderConfig {
    /// Base URL exchanges and browsers reach this server at (notice and
    /// tracking URLs are built on it).
    pub public_url: String,
    /// In first-price auctions bid value x shade (never below the floor).
    pub first_price_shade: f64,
    /// Below this `tmax` (ms) we cannot answer in time: no bid.
    pub min_tmax_ms: u32,
    /// Users tracked for frequency caps per shard before the table is reset.
    pub max_tracked_users: usize,
    /// Slots in the shared notice de-duplication table.
    pub dedupe_slots: usize,
}

impl Default for BidderConfig {
    fn default() -> Self {
        BidderConfig {
            public_url: "http://localhost:8080".into(),
            first_price_shade: 0.85,
            min_tmax_ms: 10,
            max_tracked_users: 1_000_000,
            dedupe_slots: 1 << 22,
        }
    }
}

/// `[campaigns]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignsConfig {
    /// Campaigns file (TOML, or JSON by extension); unset = the embedded set.
    pub path: Option<std::path::PathBuf>,
    /// How often the file is checked for changes.
    pub reload_poll_ms: u64,
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        CampaignsConfig {
            path: None,
            reload_poll_ms: 1000,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address every shard binds with SO_REUSEPORT.
    pub listen: String,
    /// Cores to run one shard each on: `"all"`, `"0-3,6"`, or `[0, 1]`.
    pub cores: Cores,
    /// Pin each shard's thread to its core.
    pub pin: bool,
    /// Microseconds an idle executor spins before parking (0 = park at once).
    pub spin_before_park_us: u64,
    /// listen(2) backlog per shard.
    pub backlog: u32,
    /// Open connections per shard beyond which new ones get 503 and close.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:8080".into(),
            cores: Cores::All,
            pin: true,
            spin_before_park_us: 10_000,
            backlog: 1024,
            max_connections: 10_000,
        }
    }
}

/// Which cores to use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Cores {
    /// An explicit list.
    List(Vec<usize>),
    /// `"all"` or a range spec such as `"0-3,6"`.
    #[serde(deserialize_with = "de_core_spec")]
    Spec(CoreSpec),
    /// Placeholder for `"all"` after parsing.
    #[serde(skip)]
    All,
}

/// A parsed core-range string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreSpec(pub Option<Vec<usize>>);

fn de_core_spec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CoreSpec, D::Error> {
    let s = String::deserialize(d)?;
    parse_core_spec(&s)
        .map(CoreSpec)
        .map_err(serde::de::Error::custom)
}

/// Parses `"all"` (None) or `"0-3,6"` (Some list).
pub fn parse_core_spec(s: &str) -> Result<Option<Vec<usize>>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{t}` is not a core number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range `{part}` runs backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(Some(out))
}

impl Cores {
    /// The concrete core list, checked against the cores this process may use.
    pub fn resolve(&self, allowed: &[usize]) -> Result<Vec<usize>, ConfigError> {
        let list = match self {
            Cores::All | Cores::Spec(CoreSpec(None)) => return Ok(allowed.to_vec()),
            Cores::Spec(CoreSpec(Some(l))) | Cores::List(l) => l.clone(),
        };
        if list.is_empty() {
            return Err(invalid("server.cores", "no cores listed"));
        }
        let mut seen = list.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != list.len() {
            return Err(invalid("server.cores", "a core is listed twice"));
        }
        if let Some(c) = list.iter().find(|c| !allowed.contains(c)) {
            return Err(invalid(
                "server.cores",
                format!("core {c} is not available to this process (allowed: {allowed:?})"),
            ));
        }
        Ok(list)
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line + headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields; more gets 431.
    pub max_headers: usize,
    /// Largest body, on the wire or inflated; larger gets 413.
    pub max_body_bytes: usize,
}

/// Hard ceiling on `limits.max_headers` (the parser's stack storage).
pub const MAX_HEADERS_CEILING: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// `[timeouts]`, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Whole request head must arrive within this (slowloris guard); else 408.
    pub header_read_ms: u64,
    /// Whole body must arrive within this after the head; else 408.
    pub body_read_ms: u64,
    /// A keep-alive connection with no request in progress closes after this.
    pub idle_keepalive_ms: u64,
    /// A response write that makes no progress for this long closes the connection.
    pub write_ms: u64,
    /// On SIGTERM, in-flight requests get this long before connections are cut.
    pub shutdown_grace_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read_ms: 5_000,
            body_read_ms: 10_000,
            idle_keepalive_ms: 60_000,
            write_ms: 10_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Timeouts {
    /// As durations.
    pub fn header_read(&self) -> Duration {
        Duration::from_millis(self.header_read_ms)
    }
    /// As a duration.
    pub fn body_read(&self) -> Duration {
        Duration::from_millis(self.body_read_ms)
    }
    /// As a duration.
    pub fn idle_keepalive(&self) -> Duration {
        Duration::from_millis(self.idle_keepalive_ms)
    }
    /// As a duration.
    pub fn write(&self) -> Duration {
        Duration::from_millis(self.write_ms)
    }
    /// As a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// How often each shard publishes its latency histograms for scraping.
    pub publish_interval_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            publish_interval_ms: 1000,
        }
    }
}

/// `[[shard]]`: settings for the shard on one core.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardOverride {
    /// The core this override applies to.
    pub core: usize,
    /// Overrides `server.spin_before_park_us`.
    pub spin_before_park_us: Option<u64>,
    /// Overrides `server.max_connections`.
    pub max_connections: Option<usize>,
}

/// Settings one shard runs with, after overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSettings {
    /// Shard number (0..n).
    pub id: usize,
    /// Core it runs on.
    pub core: usize,
    /// Spin before park.
    pub spin_before_park: Duration,
    /// Connection cap.
    pub max_connections: usize,
}

impl Config {
    /// Loads a file, applies env overrides, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string(), std::env::vars())
    }

    /// The embedded default, with env overrides, validated.
    pub fn embedded() -> Result<Config, ConfigError> {
        Self::from_toml(EMBEDDED_DEFAULT, "embedded default", std::env::vars())
    }

    /// Parses TOML text, applies overrides from `env`, validates.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.into(),
                    message: e.to_string(),
                })?;
        let mut origin = origin.to_string();
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        for (var, raw) in &overrides {
            let path: Vec<String> = var[ENV_PREFIX.len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect();
            let key = path.join(".");
            if path.iter().any(|p| p.is_empty()) {
                return Err(invalid(&key, format!("malformed override variable {var}")));
            }
            // A value is read as TOML (numbers, booleans, arrays); otherwise as a string.
            let value = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            let mut t = &mut table;
            for seg in &path[..path.len() - 1] {
                let entry = t
                    .entry(seg.clone())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                t = entry
                    .as_table_mut()
                    .ok_or_else(|| invalid(&key, format!("{var}: `{seg}` is not a table")))?;
            }
            t.insert(path[path.len() - 1].clone(), value);
            origin = format!("{origin} + {var}");
        }
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                ConfigError::Key {
                    origin: origin.clone(),
                    key: e.path().to_string(),
                    message: e.inner().to_string(),
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that are well-typed but out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        let l = &self.limits;
        if l.max_header_bytes < 64 || l.max_header_bytes > 1024 * 1024 {
            return Err(invalid(
                "limits.max_header_bytes",
                "must be between 64 and 1048576",
            ));
        }
        if l.max_headers == 0 || l.max_headers > MAX_HEADERS_CEILING {
            return Err(invalid(
                "limits.max_headers",
                format!("must be between 1 and {MAX_HEADERS_CEILING}"),
            ));
        }
        if l.max_body_bytes > 1024 * 1024 * 1024 {
            return Err(invalid("limits.max_body_bytes", "must be at most 1 GiB"));
        }
        let t = &self.timeouts;
        for (k, v) in [
            ("timeouts.header_read_ms", t.header_read_ms),
            ("timeouts.body_read_ms", t.body_read_ms),
            ("timeouts.idle_keepalive_ms", t.idle_keepalive_ms),
            ("timeouts.write_ms", t.write_ms),
            (
                "metrics.publish_interval_ms",
                self.metrics.publish_interval_ms,
            ),
        ] {
            if v == 0 {
                return Err(invalid(k, "must be greater than 0"));
            }
        }
        let b = &self.bidder;
        if !(b.public_url.starts_with("http://") || b.public_url.starts_with("https://")) {
            return Err(invalid(
                "bidder.public_url",
                "must start with http:// or https://",
            ));
        }
        if !(b.first_price_shade > 0.0 && b.first_price_shade <= 1.0) {
            return Err(invalid("bidder.first_price_shade", "must be in (0, 1]"));
        }
        if b.dedupe_slots < 1024 || b.max_tracked_users == 0 {
            return Err(invalid(
                "bidder.dedupe_slots",
                "must be at least 1024 (and max_tracked_users > 0)",
            ));
        }
        if !self.admin.listen.is_empty() {
            self.admin.listen.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "admin.listen",
                    format!("`{}` is not an IP:port address", self.admin.listen),
                )
            })?;
            if self.admin.token.len() < 8 {
                return Err(invalid(
                    "admin.token",
                    "required (at least 8 characters) when admin.listen is set",
                ));
            }
        }
        let db = &self.events.db;
        for (key, v) in [
            ("events.db.batch_size", db.batch_size as u64),
            ("events.db.max_in_flight", db.max_in_flight as u64),
            ("events.db.request_timeout_ms", db.request_timeout_ms),
            ("events.db.connect_timeout_ms", db.connect_timeout_ms),
            ("events.db.probe_interval_ms", db.probe_interval_ms),
            ("events.db.ttl_days", u64::from(db.ttl_days)),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if db.batch_size > 1000 {
            return Err(invalid("events.db.batch_size", "at most 1000"));
        }
        if !is_cql_identifier(&db.keyspace) {
            return Err(invalid(
                "events.db.keyspace",
                "must be a CQL identifier: a letter, then letters, digits or _ (at most 48)",
            ));
        }
        if !(db.replication.starts_with('{') && db.replication.ends_with('}'))
            || db.replication.contains(';')
        {
            return Err(invalid(
                "events.db.replication",
                "must be a CQL map literal such as {'class': 'NetworkTopologyStrategy', 'replication_factor': 3}",
            ));
        }
        for n in &db.nodes {
            if n.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(invalid(
                    "events.db.nodes",
                    format!("{n:?} is not host:port"),
                ));
            }
        }
        if self.events.segment_max_bytes < 4096 {
            return Err(invalid("events.segment_max_bytes", "at least 4096"));
        }
        if self.events.queue_capacity == 0 {
            return Err(invalid("events.queue_capacity", "must be greater than 0"));
        }
        if self.overload.check_interval_ms == 0 {
            return Err(invalid(
                "overload.check_interval_ms",
                "must be greater than 0",
            ));
        }
        for (key, v) in [
            ("overload.shed_rise_per_s", self.overload.shed_rise_per_s),
            ("overload.shed_decay_per_s", self.overload.shed_decay_per_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.overload.standing_window_ms == 0 {
            return Err(invalid(
                "overload.standing_window_ms",
                "must be greater than 0",
            ));
        }
        if self.scoring.reload_poll_ms == 0 {
            return Err(invalid("scoring.reload_poll_ms", "must be greater than 0"));
        }
        if self.campaigns.reload_poll_ms == 0 {
            return Err(invalid(
                "campaigns.reload_poll_ms",
                "must be greater than 0",
            ));
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be greater than 0"));
        }
        if self.server.backlog == 0 {
            return Err(invalid("server.backlog", "must be greater than 0"));
        }
        for (i, s) in self.shard.iter().enumerate() {
            if s.max_connections == Some(0) {
                return Err(invalid(
                    &format!("shard[{i}].max_connections"),
                    "must be greater than 0",
                ));
            }
            if self.shard[..i].iter().any(|o| o.core == s.core) {
                return Err(invalid(
                    &format!("shard[{i}].core"),
                    format!("core {} has two [[shard]] entries", s.core),
                ));
            }
        }
        Ok(())
    }

    /// `server.listen` as an address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("`{}` is not an IP:port address", self.server.listen),
            )
        })
    }

    /// One [`ShardSettings`] per configured core, after `[[shard]]` overrides.
    /// `allowed` is the set of cores this process may run on.
    pub fn shards(&self, allowed: &[usize]) -> Result<Vec<ShardSettings>, ConfigError> {
        let cores = self.server.cores.resolve(allowed)?;
        for (i, o) in self.shard.iter().enumerate() {
            if !cores.contains(&o.core) {
                return Err(invalid(
                    &format!("shard[{i}].core"),
                    format!("core {} is not in server.cores {cores:?}", o.core),
                ));
            }
        }
        Ok(cores
            .iter()
            .enumerate()
            .map(|(id, &core)| {
                let o = self.shard.iter().find(|o| o.core == core);
                ShardSettings {
                    id,
                    core,
                    spin_before_park: Duration::from_micros(
                        o.and_then(|o| o.spin_before_park_us)
                            .unwrap_or(self.server.spin_before_park_us),
                    ),
                    max_connections: o
                        .and_then(|o| o.max_connections)
                        .unwrap_or(self.server.max_connections),
                }
            })
            .collect())
    }
}

/// Cores this process may run on (its affinity mask).
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the pointer and size describe `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        return (0..n).collect();
    }
    // SAFETY: CPU_ISSET reads within the set for any index below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test", Vec::new())
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::from_toml(EMBEDDED_DEFAULT, "embedded default", Vec::new()).unwrap();
        assert!(
            c.server.spin_before_park_us > 0,
            "spinning is on by default for serving"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisn = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.lisn") || e.contains("lisn"), "{e}");
        let e = parse("[limits]\nmax_body_bytes = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_body_bytes"), "{e}");
        let e = parse("[bogus]\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            ("[limits]\nmax_headers = 0", "limits.max_headers"),
            ("[timeouts]\nheader_read_ms = 0", "timeouts.header_read_ms"),
            ("[server]\ncores = \"3-1\"", "server.cores"),
            ("[server]\nmax_connections = 0", "server.max_connections"),
            ("[[shard]]\ncore = 0\n[[shard]]\ncore = 0", "shard[1].core"),
            (
                "[overload]\nstanding_window_ms = 0",
                "overload.standing_window_ms",
            ),
            (
                "[overload]\nshed_decay_per_s = 0.0",
                "overload.shed_decay_per_s",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        assert!(parse("[server\n")
            .unwrap_err()
            .to_string()
            .contains("invalid TOML"));
    }

    #[test]
    fn cores_and_overrides() {
        let c = parse("[server]\ncores = \"0-1\"\nspin_before_park_us = 5\n[[shard]]\ncore = 1\nspin_before_park_us = 0\nmax_connections = 7").unwrap();
        let s = c.shards(&[0, 1]).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].spin_before_park, Duration::from_micros(5));
        assert_eq!(s[1].spin_before_park, Duration::ZERO);
        assert_eq!(s[1].max_connections, 7);
        let e = c.shards(&[0]).unwrap_err().to_string();
        assert!(e.contains("server.cores") && e.contains("core 1"), "{e}");
        let c = parse("[server]\ncores = [1]").unwrap();
        assert_eq!(c.shards(&[0, 1]).unwrap()[0].core, 1);
        let c = parse("[server]\ncores = \"all\"").unwrap();
        assert_eq!(c.shards(&[0, 1, 2]).unwrap().len(), 3);
        assert_eq!(parse_core_spec("0-2,5").unwrap(), Some(vec![0, 1, 2, 5]));
        assert!(parse_core_spec("a").is_err());
    }

    #[test]
    fn env_overrides_apply_and_are_named() {
        let env = vec![
            (
                "ADSHARD__SERVER__LISTEN".to_string(),
                "127.0.0.1:9999".to_string(),
            ),
            ("ADSHARD__LIMITS__MAX_HEADERS".to_string(), "12".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::from_toml("", "t", env).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.limits.max_headers, 12);
        let env = vec![(
            "ADSHARD__LIMITS__MAX_HEADERS".to_string(),
            "many".to_string(),
        )];
        let e = Config::from_toml("", "t", env).unwrap_err().to_string();
        assert!(
            e.contains("ADSHARD__LIMITS__MAX_HEADERS") && e.contains("limits.max_headers"),
            "{e}"
        );
    }
}
