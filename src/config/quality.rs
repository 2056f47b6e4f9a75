//! `[ivt]`: invalid traffic filtering (see `src/quality`).

use serde::Deserialize;

/// `[ivt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvtConfig {
    /// Check bid requests at all.
    pub enabled: bool,
    /// Bot user-agent patterns, one regular expression a line; unset: the
    /// shipped list (configs/ivt/bots.txt, compiled in).
    pub bots_file: Option<std::path::PathBuf>,
    /// `CIDR tag` lines (`reserved`, `datacenter`, ...); unset: the shipped
    /// reserved blocks (configs/ivt/ip-ranges.txt, compiled in).
    pub ip_ranges_file: Option<std::path::PathBuf>,
    /// How often the two files are checked for changes.
    pub reload_poll_ms: u64,
    /// A request without the device signals a real browser or app sends
    /// (`device.ua` and `device.ip`/`ipv6`; in apps `device.ifa` may stand
    /// in for the user agent) is invalid. Malformed ones always are.
    pub require_device: bool,
    /// Length of the sliding window of the rate checks, seconds.
    pub rate_window_secs: u64,
    /// Most bid requests one IP may make per window on one shard; 0: no check.
    pub max_per_ip: u32,
    /// Most bid requests one device (`device.ifa`, else `user.id` /
    /// `buyeruid`) may make per window on one shard; 0: no check.
    pub max_per_device: u32,
    /// Entries of each shard's rate table (24 bytes each).
    pub rate_slots: usize,
    /// A click less than this long after its impression is invalid (ms).
    pub min_click_delay_ms: u64,
}

impl Default for IvtConfig {
    fn default() -> Self {
        IvtConfig {
            enabled: true,
            bots_file: None,
            ip_ranges_file: None,
            reload_poll_ms: 1000,
            require_device: true,
            rate_window_secs: 60,
            max_per_ip: 3000,
            max_per_device: 600,
            rate_slots: 1 << 16,
            min_click_delay_ms: 1000,
        }
    }
}
