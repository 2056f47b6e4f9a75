//! Typed configuration: a TOML file (or the embedded default), then
//! `ADSHARD__SECTION__KEY` environment overrides, then CLI flags.
//!
//! Everything is read and validated at start-up; nothing here does I/O after
//! that. Every error names the key it is about (`server.cores: ...`), so an
//! operator can fix the file without reading code.

mod cores;
mod quality;
mod sections;
mod validate;

pub use cores::{parse_core_spec, CoreSpec, Cores, ShardOverride, ShardSettings};
pub use quality::IvtConfig;
pub use sections::*;

use serde::Deserialize;
use std::path::Path;

/// The configuration compiled into the binary, used when no file is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../configs/default.toml");

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

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
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
    /// Budgets shared across nodes through `[events.db]`.
    #[serde(default)]
    pub fleet: FleetConfig,
    /// Invalid traffic filtering.
    #[serde(default)]
    pub ivt: IvtConfig,
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
}

#[cfg(test)]
mod tests;
