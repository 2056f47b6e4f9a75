//! Which cores run shards: `server.cores`, `--cores`, `[[shard]]`
//! overrides, resolved against the cores this process may use.

use super::{invalid, Config, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// `server.listen` as an address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("`{}` is not an IP:port address", self.server.listen),
            )
        })
    }

    /// The cores the server's helper threads (index, model and list
    /// loaders, spool and database writers, fleet sync, admin listener) run
    /// on: those of `allowed` that run no shard, so that a helper never
    /// takes a shard's core from it. Empty (no restriction) when shards are
    /// not pinned or every allowed core runs one.
    pub fn helper_cores(&self, allowed: &[usize]) -> Result<Vec<usize>, ConfigError> {
        if !self.server.pin {
            return Ok(Vec::new());
        }
        let shards: Vec<usize> = self.shards(allowed)?.iter().map(|s| s.core).collect();
        Ok(allowed
            .iter()
            .copied()
            .filter(|c| !shards.contains(c))
            .collect())
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
