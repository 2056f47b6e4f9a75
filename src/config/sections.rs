//! The sections of the config file, each with its defaults.

use super::Cores;
use serde::Deserialize;
use std::time::Duration;

/// When the spool file is synced to disk (`events.fsync`).
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
    pub fsync: Fsync,
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
            fsync: Fsync::Interval,
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
    /// While the database is up: how often the spool writers' open segments
    /// are sealed for replay when they hold only events already written
    /// (money, written both ways). Such an event reaches the report rollups
    /// through its segment's replay, so at most this late; and each
    /// replayed segment is one more rollup source per campaign, hour and
    /// creative it holds, so sealing every probe would multiply the rows a
    /// report reads. Segments holding spilled events are sealed at the next
    /// probe.
    pub seal_interval_ms: u64,
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
            seal_interval_ms: 60_000,
        }
    }
}

pub(crate) fn is_cql_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 48
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `[fleet]`: budgets shared by every node writing to one `[events.db]`
/// (see the `adserve::fleet` module). Without a database it does nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Share budgets with the other nodes on the database (default). Off:
    /// each node spends every budget on its own (one node with a database
    /// for its events only).
    pub enabled: bool,
    /// How often a node heartbeats, reads global spend and re-slices its
    /// budgets. The overspend bound grows with it (README, Budgets).
    pub sync_interval_ms: u64,
    /// While the database cannot be read: each interval, a shard may spend
    /// its last slice times `fallback_decay` raised to the number of failed
    /// syncs (1 keeps the last slice, 0 stops spending).
    pub fallback_decay: f64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            enabled: true,
            sync_interval_ms: 1000,
            fallback_decay: 0.5,
        }
    }
}

/// `[overload]`: shed load when a shard's event loop lags or keeps a
/// standing queue (see the `shard::overload` module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadConfig {
    /// Measure load and shed.
    pub enabled: bool,
    /// How often each shard samples its event-loop lag.
    pub check_interval_ms: u64,
    /// Smoothed lag above which the shard sheds a growing share of requests
    /// (bids get 204, `/ad` gets 503; notices, health and metrics are never
    /// shed).
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
    /// Frequency-cap entries (user x capped campaign) tracked per shard;
    /// beyond it the oldest are evicted (counted), never all at once.
    pub max_tracked_users: usize,
    /// Slots in the shared notice de-duplication table (8 bytes each; an
    /// entry stays for `notice_ttl` after its bid).
    pub dedupe_slots: usize,
    /// Keys that sign notice and tracking URLs (HMAC-SHA256), at least 32
    /// bytes each: the first signs, every one verifies (rotation). Keep them
    /// out of files: `ADSHARD__BIDDER__NOTICE_KEYS='["...","..."]'`. Empty
    /// with a loopback `public_url`: a random key per process.
    pub notice_keys: Vec<String>,
    /// How long a signed notice URL is honoured after its bid: `72h`,
    /// `90m`, `3600s`, `3d`.
    pub notice_ttl: String,
    /// A CPC campaign without `max_cpm` bids at most this multiple of its
    /// rule-based value (expected_ctr x CPC x 1000).
    pub cpc_cap_multiple: f64,
    /// Most CPC candidates one impression sends to the CTR model: those
    /// with the highest prior (expected_ctr x CPC x 1000), after the ones
    /// whose cap cannot beat the floor or the best CPM bid are dropped.
    pub max_scored: usize,
    /// Most bid requests decided together, with one CTR model run for all
    /// their candidates (those read in the same turn of the shard's event
    /// loop; more wait for the next batch, so a batch's time stays short).
    /// 1: every request is decided alone. Default 8: a longer batch keeps
    /// the shard in user space while its sockets' data arrives, and each
    /// arrival then interrupts it (README, Batches).
    pub max_batch: usize,
    /// How long one batch should take (us): a batch takes no more of the
    /// queued requests than the shard's recent cost per request fits in
    /// this (at least one, at most `max_batch`); the rest go next, after
    /// the answers are written. A burst (after a stall, or a wave of
    /// connections) is then answered in several short batches, not one
    /// long one that holds every answer until its last request is decided.
    /// 0 (the default): `max_batch` alone. A latency knob: 250 cut the
    /// server's own p99 at half capacity by a third here, and cost 11% of
    /// capacity at 100k campaigns (fewer requests share each model run).
    pub batch_budget_us: u64,
    /// How long a bid's price counts against its campaign's budget while
    /// the bid's win, bill or loss notice is awaited (ms): a notice that
    /// reaches the shard which bid settles it at once; one that reaches
    /// another shard is charged there, and the bid's hold lapses after
    /// this long. Past it, a late win is still charged (budgets may then
    /// be overspent by the late wins).
    pub hold_ms: u64,
    /// Base URL of notice and tracker URLs for secure impressions
    /// (`imp.secure = 1`) when `public_url` is plain http: `https://...`.
    /// Unset with an http `public_url`: secure impressions get no bid.
    pub secure_url: String,
    /// Answer a no-bid with 200 `{"id":..,"nbr":code}` (the OpenRTB no-bid
    /// reason) instead of an empty 204, for exchanges that ask for it.
    pub nbr: bool,
    /// Our IAB TCF v2 vendor id (Global Vendor List). Under GDPR a user id
    /// and segments are used only with this vendor's consent and consent
    /// to purposes 1, 3 and 4 in the request's TC string; 0 (unset): never.
    pub tcf_vendor_id: u16,
}

/// Shortest notice key accepted, in bytes.
pub const MIN_NOTICE_KEY_BYTES: usize = 32;

impl BidderConfig {
    /// `notice_ttl` in seconds (`None` if malformed; validation refuses that).
    pub fn notice_ttl_secs(&self) -> Option<u64> {
        let t = self.notice_ttl.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let n: u64 = t[..split].parse().ok()?;
        let unit = match &t[split..] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return None,
        };
        n.checked_mul(unit).filter(|&s| s > 0)
    }

    /// The https base for secure impressions: `secure_url`, else
    /// `public_url` when it is https; `None`: secure impressions get no bid.
    pub fn secure_base(&self) -> Option<&str> {
        let url = if self.secure_url.is_empty() {
            &self.public_url
        } else {
            &self.secure_url
        };
        url.starts_with("https://")
            .then(|| url.trim_end_matches('/'))
    }

    /// The base of the URLs of a bid on an impression (`secure` or not).
    pub fn base_for(&self, secure: bool) -> &str {
        match (secure, self.secure_base()) {
            (true, Some(b)) => b,
            _ => self.public_url.trim_end_matches('/'),
        }
    }

    /// Whether `public_url` names this machine (dev and tests): then notice
    /// keys may be left out.
    pub fn public_url_is_loopback(&self) -> bool {
        let rest = self
            .public_url
            .split_once("://")
            .map_or(self.public_url.as_str(), |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl Default for BidderConfig {
    fn default() -> Self {
        BidderConfig {
            public_url: "http://localhost:8080".into(),
            first_price_shade: 0.85,
            min_tmax_ms: 10,
            max_tracked_users: 1_000_000,
            dedupe_slots: 1 << 22,
            notice_keys: Vec::new(),
            notice_ttl: "72h".into(),
            cpc_cap_multiple: 3.0,
            max_scored: 16,
            max_batch: 8,
            batch_budget_us: 0,
            hold_ms: 5_000,
            secure_url: String::new(),
            nbr: false,
            tcf_vendor_id: 0,
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
    /// A reload that would drop more than this fraction of the campaigns in
    /// service (or leave none) is refused unless forced through the admin
    /// listener (`POST /admin/campaigns?force=true`): a file caught half
    /// written, or emptied by mistake, must not stop the bidding.
    pub max_shrink: f64,
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        CampaignsConfig {
            path: None,
            reload_poll_ms: 1000,
            max_shrink: 0.5,
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
    /// Set the shards' io_uring rings up with `IORING_SETUP_COOP_TASKRUN`
    /// (Linux 5.19; an older kernel gets plain rings): a completion from
    /// another core waits for the shard's next system call instead of
    /// interrupting it, and the other core sends no IPI for it.
    pub coop_taskrun: bool,
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
            coop_taskrun: true,
            backlog: 1024,
            max_connections: 10_000,
        }
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
    /// Responses of at least this many bytes are gzipped when the request
    /// accepts it (`Accept-Encoding`); 0: never.
    pub gzip_min_bytes: usize,
}

/// Hard ceiling on `limits.max_headers` (the parser's stack storage).
pub const MAX_HEADERS_CEILING: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            gzip_min_bytes: 2048,
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
    /// A keep-alive connection with no request in progress closes after this
    /// (default 120 s: longer than client pools keep idle connections, nginx
    /// 75 s, Go and Prebid Server 90 s, so the client closes first).
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
            idle_keepalive_ms: 120_000,
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
