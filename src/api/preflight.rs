//! `adshard check-config`: everything `serve` checks before it serves, so a
//! config that passes here does not fail at start-up: the config's own
//! ranges, the shard plan, the campaign file, the spool directory, the
//! listen and admin addresses, the CTR model file.

use crate::config::{Config, ConfigError};

/// Why a config would not serve: the key, and the cause.
fn refuse(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// What `serve` would refuse in `cfg`, short of serving; on success, a line
/// per thing checked.
pub fn preflight(cfg: &Config) -> Result<Vec<String>, ConfigError> {
    let mut ok = Vec::new();
    cfg.validate()?;
    let shards = cfg.shards(&crate::sys::allowed_cores())?;
    ok.push(format!("{} shard(s)", shards.len()));
    if let Some(p) = &cfg.campaigns.path {
        let text = std::fs::read_to_string(p)
            .map_err(|e| refuse("campaigns.path", format!("{}: {e}", p.display())))?;
        let ix = crate::index::Index::load(&text, &p.display().to_string(), 1)
            .map_err(|e| refuse("campaigns.path", e.to_string()))?;
        ok.push(format!("campaigns: {} from {}", ix.len(), p.display()));
    }
    let dir = &cfg.events.spool_dir;
    writable_dir(dir).map_err(|e| refuse("events.spool_dir", format!("{}: {e}", dir.display())))?;
    ok.push(format!("spool: {}", dir.display()));
    let listen = cfg.listen_addr()?;
    if listen.port() != 0 {
        crate::shard::probe_free(listen)
            .map_err(|e| refuse("server.listen", format!("cannot listen on {listen}: {e}")))?;
    }
    ok.push(format!("listen: {listen}"));
    if !cfg.admin.listen.is_empty() {
        std::net::TcpListener::bind(&cfg.admin.listen).map_err(|e| {
            refuse(
                "admin.listen",
                format!("cannot listen on {}: {e}", cfg.admin.listen),
            )
        })?;
        ok.push(format!("admin: {}", cfg.admin.listen));
    }
    if cfg.scoring.enabled {
        if let Some(m) = &cfg.scoring.model {
            std::fs::metadata(m)
                .map_err(|e| refuse("scoring.model", format!("{}: {e}", m.display())))?;
        }
    }
    Ok(ok)
}

/// `dir` exists and takes a new file, or can be created (serve creates it):
/// its nearest existing ancestor is a directory that takes a new file.
fn writable_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let existing = dir
        .ancestors()
        .map(|a| {
            if a.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.exists())
        .ok_or_else(|| std::io::Error::other("no existing ancestor"))?;
    if !existing.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            existing.display()
        )));
    }
    let probe = existing.join(format!(".adshard-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", existing.display())))?;
    std::fs::remove_file(&probe)
}
