//! The IVT lists in service (bot patterns, IP ranges), loaded at start-up
//! and reloaded by a poller thread when their files change. A file that
//! does not load keeps the lists in service; why is logged and shown on
//! `/metrics` (`adshard_ivt_lists_last_error`). The poller ends by itself
//! once nothing else holds the lists.

use super::bots::{self, Bots};
use super::cidr::{self, Ranges};
use crate::config::IvtConfig;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// One version of the lists.
#[derive(Debug, Clone)]
pub struct Lists {
    /// Bot user-agent patterns.
    pub bots: Bots,
    /// Tagged IP ranges.
    pub ranges: Ranges,
    /// Loads so far when these were loaded (0: the first).
    pub version: u64,
}

impl Lists {
    /// The shipped lists.
    pub fn shipped() -> Lists {
        Lists {
            bots: Bots::new(bots::DEFAULT).unwrap_or_else(|e| unreachable!("shipped list: {e}")),
            ranges: Ranges::parse(cidr::DEFAULT)
                .unwrap_or_else(|e| unreachable!("shipped ranges: {e}")),
            version: 0,
        }
    }
}

/// The published lists and what their loader last did.
#[derive(Debug)]
pub struct IvtLists {
    /// The lists in service.
    pub lists: ArcSwap<Lists>,
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// Refused reloads.
    pub errors: AtomicU64,
    /// The last refusal (control characters blanked), cleared by a good reload.
    pub last_error: Mutex<Option<String>>,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn load(cfg: &IvtConfig) -> Result<Lists, (&'static str, String)> {
    let bots = match &cfg.bots_file {
        Some(p) => read(p).and_then(|t| Bots::new(&t).map_err(|e| format!("{}: {e}", p.display()))),
        None => Bots::new(bots::DEFAULT).map_err(|e| e.to_string()),
    }
    .map_err(|e| ("ivt.bots_file", e))?;
    let ranges = match &cfg.ip_ranges_file {
        Some(p) => {
            read(p).and_then(|t| Ranges::parse(&t).map_err(|e| format!("{}: {e}", p.display())))
        }
        None => Ranges::parse(cidr::DEFAULT).map_err(|e| e.to_string()),
    }
    .map_err(|e| ("ivt.ip_ranges_file", e))?;
    Ok(Lists {
        bots,
        ranges,
        version: 0,
    })
}

fn stamp(p: &Option<PathBuf>) -> Option<(SystemTime, u64)> {
    p.as_deref().and_then(crate::sys::file_stamp)
}

impl IvtLists {
    /// Loads the lists (an error names the config key) and, when a file is
    /// configured, starts the poller that reloads it.
    pub fn start(cfg: &IvtConfig) -> Result<Arc<IvtLists>, (&'static str, String)> {
        let lists = load(cfg)?;
        let me = Arc::new(IvtLists {
            lists: ArcSwap::from_pointee(lists),
            reloads: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        if cfg.bots_file.is_some() || cfg.ip_ranges_file.is_some() {
            let weak = Arc::downgrade(&me);
            let cfg = cfg.clone();
            let poll = Duration::from_millis(cfg.reload_poll_ms);
            std::thread::Builder::new()
                .name("ivt-lists".into())
                .spawn(move || {
                    let mut seen = (stamp(&cfg.bots_file), stamp(&cfg.ip_ranges_file));
                    loop {
                        std::thread::sleep(poll);
                        let Some(me) = weak.upgrade() else { return };
                        let now = (stamp(&cfg.bots_file), stamp(&cfg.ip_ranges_file));
                        if now != seen {
                            seen = now;
                            me.reload(&cfg);
                        }
                    }
                })
                .map_err(|e| ("ivt.reload_poll_ms", e.to_string()))?;
        }
        Ok(me)
    }

    /// Loads the files again: published if good, else kept and counted.
    pub fn reload(&self, cfg: &IvtConfig) {
        match load(cfg) {
            Ok(mut l) => {
                l.version = self.reloads.fetch_add(1, Relaxed) + 1;
                self.lists.store(Arc::new(l));
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
                tracing::info!("ivt lists reloaded");
            }
            Err((key, e)) => {
                self.errors.fetch_add(1, Relaxed);
                tracing::warn!(key, error = %e, "ivt lists not reloaded; the old ones stay");
                if let Ok(mut l) = self.last_error.lock() {
                    *l = Some(format!("{key}: {e}").replace(|c: char| c.is_control(), " "));
                }
            }
        }
    }

    /// The loader's families on the `/metrics` page.
    pub fn render(&self, out: &mut String) {
        use crate::prom::single;
        let l = self.lists.load();
        single(
            out,
            "adshard_ivt_bot_patterns",
            "gauge",
            "Bot user-agent patterns in service.",
            l.bots.patterns(),
        );
        single(
            out,
            "adshard_ivt_ip_ranges",
            "gauge",
            "IP ranges in service.",
            l.ranges.len(),
        );
        single(
            out,
            "adshard_ivt_lists_reloads_total",
            "counter",
            "Successful reloads of the IVT lists.",
            self.reloads.load(Relaxed),
        );
        single(
            out,
            "adshard_ivt_lists_reload_errors_total",
            "counter",
            "Refused reloads of the IVT lists (the old ones stay).",
            self.errors.load(Relaxed),
        );
        if let Some(e) = self.last_error.lock().ok().and_then(|e| e.clone()) {
            crate::prom::error(
                out,
                "adshard_ivt_lists_last_error",
                "Last refused reload of the IVT lists (value is 1).",
                &e,
            );
        }
    }
}
