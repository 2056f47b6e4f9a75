//! Application assembly: the campaign loader, the event store, the CTR
//! model loader, the admin listener and the shards, started in that order
//! and stopped in reverse. A failed start stops what already started.

use super::admin::{AdminHandles, AdminServer};
use super::Api;
use crate::adserve::dedupe::Dedupe;
use crate::adserve::signing::NoticeKeys;
use crate::adserve::spend::SpendBoard;
use crate::config::Config;
use crate::events::{SpoolStats, Store};
use crate::index::loader::{self, Command, IndexHandle, Source};
use crate::shard::{Server, ShardCtx, Shared, StartError};
use std::sync::Arc;

/// Campaigns compiled into the binary, used when `campaigns.path` is unset.
pub const EMBEDDED_CAMPAIGNS: &str = include_str!("../../configs/campaigns.toml");

/// A start-up error naming the config key it is about.
fn invalid(key: &str, message: String) -> StartError {
    StartError::Config(crate::config::ConfigError::Invalid {
        key: key.to_string(),
        message,
    })
}

/// What the spool (and, for frequency counts, the database) gives back at
/// start-up, per shard.
#[derive(Debug, Default)]
pub struct Restored {
    /// Spend: campaign, UTC day, micro-USD that day, micro-USD in all.
    pub spend: Vec<Vec<(u64, u64, i64, i64)>>,
    /// Bids that counted a frequency cap, oldest first: campaign, the
    /// (user, campaign) key, Unix seconds.
    pub freq: Vec<Vec<(u64, u64, u64)>>,
    /// Ids of the bids in `freq` (a bid in both the spool and the
    /// database is counted once).
    seen: std::collections::HashSet<u128>,
    /// How many capped bids were counted from the spool.
    pub from_spool: usize,
    /// With a database: how many more were counted from it (those not
    /// also in the spool), or why it could not be read at start-up.
    pub from_db: Option<Result<usize, String>>,
    /// With a database and no fleet sync: why its spend could not be read
    /// at start-up (budgets then count only what the spool holds).
    pub spend_error: Option<String>,
}

impl Restored {
    /// Adds capped bids not already restored, into shard `shard % shards`,
    /// keeping each shard's list in time order.
    fn add_capped(
        &mut self,
        bids: impl IntoIterator<Item = crate::events::CappedBid>,
        shards: usize,
    ) -> usize {
        let mut added = 0;
        for b in bids {
            if self.seen.insert(b.id) {
                self.freq[usize::from(b.shard) % shards.max(1)].push((b.campaign, b.key, b.secs));
                added += 1;
            }
        }
        for f in &mut self.freq {
            // Segments are read in order, but shards' events interleave
            // across writers (and sources): count them in time order.
            f.sort_by_key(|e| e.2);
        }
        added
    }

    /// The database's capped bids (or why they could not be read).
    fn merge_capped(
        &mut self,
        from_db: Result<Vec<crate::events::CappedBid>, crate::events::db::DbError>,
        shards: usize,
    ) {
        match from_db {
            Ok(bids) => {
                let n = bids.len();
                let added = self.add_capped(bids, shards);
                self.from_db = Some(Ok(added));
                tracing::info!(
                    rows = n,
                    not_in_spool = added,
                    "frequency counts restored from the database"
                );
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "frequency counts not restored from the database: users may see capped campaigns again"
                );
                self.from_db = Some(Err(e.to_string()));
            }
        }
    }

    /// `adshard_frequency_restored_bids{source}` and, when the database
    /// could not be read at start-up, `adshard_frequency_restore_error`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let name = "adshard_frequency_restored_bids";
        crate::prom::family(
            out,
            name,
            "gauge",
            "Bids that counted a frequency cap, restored at start-up, by source (database: those not also in the spool).",
        );
        let _ = writeln!(out, "{name}{{source=\"spool\"}} {}", self.from_spool);
        match &self.from_db {
            Some(Ok(n)) => {
                let _ = writeln!(out, "{name}{{source=\"database\"}} {n}");
            }
            Some(Err(e)) => crate::prom::error(
                out,
                "adshard_frequency_restore_error",
                "1: the database's frequency counts could not be read at start-up (users may see capped campaigns again until their windows pass).",
                e,
            ),
            None => {}
        }
        if let Some(e) = &self.spend_error {
            crate::prom::error(
                out,
                "adshard_spend_restore_error",
                "1: with [events.db] and [fleet] enabled = false, the database's spend could not be read at start-up (budgets count only what the spool holds).",
                e,
            );
        }
    }
}

/// What every shard's [`Api`] shares: the index handle and the notice table.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Published campaign index and its loader.
    pub index: IndexHandle,
    /// Notice de-duplication, shared by all shards.
    pub dedupe: Arc<Dedupe>,
    /// Keys that sign and verify notice URLs.
    pub keys: Arc<NoticeKeys>,
    /// Every shard's spend per campaign (admin reads it).
    pub spend: Arc<SpendBoard>,
    /// Spend and frequency counts read back from the spool at start-up.
    pub restored: Arc<Restored>,
    /// Per-shard CTR model sessions, when scoring is enabled.
    pub models: Option<Arc<crate::scoring::Models>>,
    /// Per-shard spool counters.
    pub spool: Arc<Vec<Arc<SpoolStats>>>,
    /// Database writer counters, when a database is configured.
    pub db: Option<Arc<crate::events::db::DbStats>>,
    /// Budgets shared with other nodes, when a database is configured.
    pub fleet: Option<Arc<crate::adserve::fleet::Fleet>>,
    /// Invalid-traffic lists (bot patterns, IP ranges) and their reloads.
    pub ivt: Arc<crate::quality::IvtLists>,
    /// Impression times, for click validation; shared by all shards.
    pub imps: Arc<crate::quality::clicks::ImpTimes>,
    /// Every shard's hourly report counters (the admin listener merges them).
    pub report: Arc<crate::quality::report::Board>,
}

/// The running application: shards plus the index loader.
#[derive(Debug)]
pub struct App {
    /// The shards.
    pub server: Server,
    /// Shared dependencies (tests reach the index through it).
    pub deps: Deps,
    loader: std::thread::JoinHandle<()>,
    admin: Option<AdminServer>,
    store: Store,
}

impl App {
    /// Loads campaigns, starts the loader thread and the shards.
    pub fn start(cfg: Config) -> Result<App, StartError> {
        let allowed = crate::sys::allowed_cores();
        let helper_cores = cfg.helper_cores(&allowed)?;
        let source = match &cfg.campaigns.path {
            Some(p) => Source::File(p.clone()),
            None => Source::Embedded(EMBEDDED_CAMPAIGNS),
        };
        let poll = std::time::Duration::from_millis(cfg.campaigns.reload_poll_ms);
        let (index, loader) =
            loader::start(source, poll, cfg.campaigns.max_shrink, helper_cores.clone())
                .map_err(|e| invalid("campaigns.path", e.to_string()))?;
        // The other helper threads start on the cores without a shard.
        let helpers = HelperPlacement::enter(helper_cores, allowed);
        match Self::start_rest(cfg, index.clone(), helpers) {
            Ok((server, deps, admin, store)) => Ok(App {
                server,
                deps,
                loader,
                admin,
                store,
            }),
            Err(e) => {
                // The one place a failed start-up stops the index loader.
                let _ = index.tx.send(Command::Stop);
                let _ = loader.join();
                Err(e)
            }
        }
    }

    /// Everything after the index: spool writers, models, admin listener, shards.
    fn start_rest(
        cfg: Config,
        index: IndexHandle,
        helpers: HelperPlacement,
    ) -> Result<(Server, Deps, Option<AdminServer>, Store), StartError> {
        let shards = cfg.shards(&helpers.allowed)?.len();
        let board = Arc::new(SpendBoard::new(shards));
        // Before the event writer: the fleet's first sync (which creates the
        // schema when configured) is done, or has timed out, before any bid.
        let fleet = if cfg.events.db.nodes.is_empty() || !cfg.fleet.enabled {
            None
        } else {
            let mut node = [0u8; 8];
            let bits = crate::adserve::signing::random::<6>()
                .map_err(|e| invalid("fleet", format!("cannot draw a node id: {e}")))?;
            crate::adserve::signing::base64url(&bits, &mut node);
            let node = String::from_utf8_lossy(&node).into_owned();
            let f = crate::adserve::fleet::Fleet::start(
                &cfg.events.db,
                &cfg.fleet,
                node,
                index.current.clone(),
                board.clone(),
            )
            .map_err(|e| invalid("fleet", format!("cannot start the fleet thread: {e}")))?;
            Some(Arc::new(f))
        };
        let ev = &cfg.events;
        let crate::events::Started {
            store,
            sinks,
            spool,
            db,
            owner,
        } = Store::start_keeping(
            ev,
            shards,
            std::time::Duration::from_secs(cfg.bidder.notice_ttl_secs().unwrap_or(72 * 3600)),
        )
        .map_err(|e| {
            invalid(
                "events.spool_dir",
                format!("{}: {e}", ev.spool_dir.display()),
            )
        })?;
        let models = if cfg.scoring.enabled {
            let source = match &cfg.scoring.model {
                Some(p) => crate::scoring::ModelSource::File(p.clone()),
                None => crate::scoring::ModelSource::Embedded,
            };
            let poll = std::time::Duration::from_millis(cfg.scoring.reload_poll_ms);
            let lib = crate::scoring::library_path(&cfg.scoring.library);
            Some(
                crate::scoring::start(&lib, source, shards, poll)
                    .map_err(|e| invalid("scoring", e.to_string()))?,
            )
        } else {
            None
        };
        let keys = NoticeKeys::from_config(&cfg.bidder).map_err(|e| {
            invalid(
                "bidder.notice_keys",
                format!("cannot draw a random key: {e}"),
            )
        })?;
        let dedupe = Dedupe::new(cfg.bidder.dedupe_slots);
        // With a database and no fleet sync, nothing else counts what this
        // node spent before: its budgets start from the database's spend
        // (and the spool's segments not yet replayed into it).
        let ledger = owner.is_some() && fleet.is_none();
        let today = crate::adserve::Now::wall().secs / 86_400;
        let read = owner.as_ref().map(|o| {
            crate::events::db::read_at_start(&cfg.events.db, o, ledger.then_some(today as i64))
        });
        let (read, db_spend) = match read {
            Some(Ok(mut at)) => {
                let spend = at.spend.take();
                (Some(Ok(at)), spend)
            }
            other => (other, None),
        };
        let mut restored = restore_from_spool(&dedupe, keys.ttl_secs, &cfg, shards, db_spend);
        match read {
            Some(Ok(at)) => restored.merge_capped(Ok(at.capped), shards),
            Some(Err(e)) => {
                if ledger {
                    tracing::error!(
                        error = %e,
                        "spend not restored from the database: budgets count only what the spool holds"
                    );
                    restored.spend_error = Some(e.to_string());
                }
                restored.merge_capped(Err(e), shards);
            }
            None => {}
        }
        let ivt = crate::quality::IvtLists::start(&cfg.ivt).map_err(|(k, e)| invalid(k, e))?;
        let imps = Arc::new(crate::quality::clicks::ImpTimes::new(
            cfg.bidder.dedupe_slots,
            cfg.ivt.min_click_delay_ms,
        ));
        let deps = Deps {
            ivt,
            imps,
            report: Arc::new(crate::quality::report::Board::new(shards)),
            index,
            dedupe: Arc::new(dedupe),
            keys: Arc::new(keys),
            spend: board,
            restored: Arc::new(restored),
            models,
            spool: Arc::new(spool),
            db,
            fleet,
        };
        let admin = if cfg.admin.listen.is_empty() {
            None
        } else {
            let a = AdminServer::start(
                &cfg.admin,
                AdminHandles {
                    index: deps.index.clone(),
                    models: deps.models.clone(),
                    spend: deps.spend.clone(),
                    fleet: deps.fleet.as_ref().map(|f| f.status.clone()),
                    report: deps.report.clone(),
                    history: (!cfg.events.db.nodes.is_empty())
                        .then(|| Arc::new(super::report::History::new(cfg.events.db.clone()))),
                },
            )
            .map_err(|e| {
                invalid(
                    "admin.listen",
                    format!("cannot listen on {}: {e}", cfg.admin.listen),
                )
            })?;
            Some(a)
        };
        let d = deps.clone();
        // Each shard takes its own sink; only shards hold them, so the writers
        // finish once every shard has stopped.
        let sinks = std::sync::Mutex::new(sinks.into_iter().map(Some).collect::<Vec<_>>());
        // Every helper has started: the shards (and with `server.pin` off,
        // unpinned ones) start from the mask this thread had.
        drop(helpers);
        let server = Server::start(cfg, move |ctx: &ShardCtx| {
            let sink = sinks
                .lock()
                .ok()
                .and_then(|mut v| v.get_mut(ctx.id).and_then(Option::take));
            Api::new(ctx, &d, sink)
        });
        match server {
            Ok(s) => Ok((s, deps, admin, store)),
            Err(e) => {
                if let Some(a) = admin {
                    a.stop();
                }
                Err(e)
            }
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// The admin listener's address, when one is configured.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// Cross-shard state (metrics registry, readiness).
    pub fn shared(&self) -> &Arc<Shared> {
        self.server.shared()
    }

    /// Waits for the shards (after a shutdown began), then stops the loader.
    pub fn join(self) {
        self.server.join();
        if let Some(a) = self.admin {
            a.stop();
        }
        let _ = self.deps.index.tx.send(Command::Stop);
        let _ = self.loader.join();
        // Shards are gone, and their sinks with them: writers drain and sync.
        self.store.join();
    }

    /// Drains the shards and stops everything.
    pub fn stop(self) {
        self.server.begin_shutdown();
        self.join();
    }
}

/// Reads the spool's notice events back at start-up: into the
/// de-duplication table, so that a notice answered before a restart (or a
/// crash) is a duplicate after it, and into each shard's spend, so that
/// budgets count what was spent before (today's and lifetime); and the bids
/// that counted a frequency cap, into each shard's counts. Only those are
/// decoded. With `[events.db]` the spool holds only what the database could
/// not take yet (and replayed segments kept for the notice TTL): there
/// budgets come from the database's ledger (the fleet sync) and frequency
/// counts from its `frequency` table as well ([`Restored::merge_capped`]).
///
/// `db_spend`: the database's spend when it was read instead (campaign ->
/// micro-USD today and in all): split evenly across the shards (each
/// shard's slice of a budget is 1/S of it), and the spend of segments
/// already replayed into the database is then not counted again.
fn restore_from_spool(
    dedupe: &Dedupe,
    ttl: u64,
    cfg: &Config,
    shards: usize,
    db_spend: Option<std::collections::HashMap<u64, (i64, i64)>>,
) -> Restored {
    use std::collections::HashMap;
    let mut spend: Vec<HashMap<u64, (i64, i64)>> = vec![HashMap::new(); shards.max(1)];
    let done_spend = db_spend.is_none();
    if let Some(db) = db_spend {
        let s = spend.len() as i64;
        for (campaign, (day, all)) in db {
            for (i, m) in spend.iter_mut().enumerate() {
                // Shard 0 takes the remainder: the sum is exact.
                let part = |v: i64| v / s + if i == 0 { v % s } else { 0 };
                m.insert(campaign, (part(day), part(all)));
            }
        }
        tracing::info!("spend restored from the database");
    }
    let mut capped = Vec::new();
    let dir = &cfg.events.spool_dir;
    // Live segments and those already replayed into a database (kept for
    // the notice TTL, then pruned).
    crate::events::prune_done(dir, std::time::Duration::from_secs(ttl));
    let mut segs: Vec<_> = (crate::events::list_segments(dir).unwrap_or_default())
        .into_iter()
        .map(|s| (s, true))
        .collect();
    segs.extend(
        (crate::events::list_done(dir).unwrap_or_default())
            .into_iter()
            .map(|s| (s, done_spend)),
    );
    let t = std::time::Instant::now();
    let now = crate::adserve::Now::wall().secs;
    let today = now / 86_400;
    let (mut n, mut bytes) = (0u64, 0u64);
    for (seg, count_spend) in segs {
        // A segment the database writer replays meanwhile is renamed .done.
        let read = std::fs::read(&seg.path)
            .or_else(|_| std::fs::read(seg.path.with_extension("spool.done")));
        let data = match read {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(path = %seg.path.display(), error = %e, "cannot read a spool segment to restore notices and spend");
                continue;
            }
        };
        bytes += data.len() as u64;
        let scanned = crate::events::scan_notices(&data, |ev| {
            if ev.freq_key != 0 {
                capped.push(crate::events::CappedBid {
                    id: ev.id,
                    shard: ev.shard,
                    campaign: ev.campaign_id,
                    key: ev.freq_key,
                    secs: ev.ts_micros.max(0) as u64 / 1_000_000,
                });
                return;
            }
            n += u64::from(dedupe.remember(ev, ttl, now));
            if ev.spend_micros > 0 && count_spend {
                let s = &mut spend[usize::from(ev.shard) % shards.max(1)];
                let e = s.entry(ev.campaign_id).or_insert((0, 0));
                if (ev.ts_micros.max(0) as u64) / 86_400_000_000 == today {
                    e.0 += ev.spend_micros;
                }
                e.1 += ev.spend_micros;
            }
        });
        if let Err(e) = scanned {
            tracing::error!(path = %seg.path.display(), error = %e, "spool segment damaged: its notices and spend before the damage are restored, none after it");
        }
    }
    if bytes > 0 {
        tracing::info!(
            notices = n,
            campaigns = spend.iter().map(HashMap::len).sum::<usize>(),
            capped_bids = capped.len(),
            bytes,
            ms = t.elapsed().as_millis() as u64,
            "notice de-duplication, spend and frequency counts restored from the spool"
        );
    }
    let mut restored = Restored {
        spend: spend
            .into_iter()
            .map(|m| m.into_iter().map(|(c, (d, l))| (c, today, d, l)).collect())
            .collect(),
        freq: vec![Vec::new(); shards.max(1)],
        ..Restored::default()
    };
    restored.from_spool = restored.add_capped(capped, shards);
    restored
}

/// While held, the thread starting the server runs on the helper cores, so
/// that every helper thread it spawns (and every thread those spawn)
/// inherits that mask; dropping it restores the mask the thread had. A
/// mask the system refuses is logged and the helpers run anywhere.
struct HelperPlacement {
    /// The cores the thread may use otherwise (restored on drop).
    allowed: Vec<usize>,
    moved: bool,
}

impl HelperPlacement {
    fn enter(cores: Vec<usize>, allowed: Vec<usize>) -> HelperPlacement {
        let moved = !cores.is_empty()
            && crate::sys::set_thread_cores(&cores)
                .map_err(|e| {
                    tracing::warn!(?cores, error = %e, "helper threads not moved off the shards' cores");
                })
                .is_ok();
        if moved {
            tracing::debug!(?cores, "helper threads run on the cores without a shard");
        }
        HelperPlacement { allowed, moved }
    }
}

impl Drop for HelperPlacement {
    fn drop(&mut self) {
        if self.moved {
            if let Err(e) = crate::sys::set_thread_cores(&self.allowed) {
                tracing::warn!(error = %e, "cannot restore the starting thread's cores");
            }
        }
    }
}
