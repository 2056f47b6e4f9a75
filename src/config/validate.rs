//! Range checks of well-typed values; each error names its key.

use super::sections::MIN_NOTICE_KEY_BYTES;
use super::{invalid, is_cql_identifier, Config, ConfigError, MAX_HEADERS_CEILING};
use std::net::SocketAddr;

/// Most notice de-duplication slots (`bidder.dedupe_slots`, 8 bytes each).
const MAX_DEDUPE_SLOTS: usize = 1 << 31;
/// Most events a shard's queue holds (`events.queue_capacity`): its slots
/// are allocated at start.
const MAX_QUEUE_CAPACITY: usize = 1 << 24;

impl Config {
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
        if l.max_body_bytes == 0 || l.max_body_bytes > 1024 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_body_bytes",
                "must be between 1 and 1 GiB (0 would refuse every bid request)",
            ));
        }
        let v = &self.ivt;
        if v.rate_window_secs == 0 || v.rate_window_secs > 3600 {
            return Err(invalid(
                "ivt.rate_window_secs",
                "must be between 1 and 3600",
            ));
        }
        if v.rate_slots < 64 || v.rate_slots > 1 << 26 {
            return Err(invalid("ivt.rate_slots", "must be between 64 and 67108864"));
        }
        if v.reload_poll_ms == 0 {
            return Err(invalid("ivt.reload_poll_ms", "must be positive"));
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
        // Allocated at start (8 bytes a slot): a typo must not become an
        // abort for want of memory.
        if b.dedupe_slots > MAX_DEDUPE_SLOTS {
            return Err(invalid(
                "bidder.dedupe_slots",
                format!("at most {MAX_DEDUPE_SLOTS} (16 GiB)"),
            ));
        }
        if b.notice_ttl_secs().is_none() {
            return Err(invalid(
                "bidder.notice_ttl",
                format!(
                    "`{}` is not a duration such as 72h, 90m, 3600s or 3d",
                    b.notice_ttl
                ),
            ));
        }
        if b.max_scored == 0 || b.max_scored > 4096 {
            return Err(invalid("bidder.max_scored", "must be between 1 and 4096"));
        }
        if b.max_batch == 0 || b.max_batch > 1024 {
            return Err(invalid("bidder.max_batch", "must be between 1 and 1024"));
        }
        if b.batch_budget_us > 100_000 {
            return Err(invalid(
                "bidder.batch_budget_us",
                "must be at most 100000 (100 ms; 0 for no budget)",
            ));
        }
        if !(b.secure_url.is_empty() || b.secure_url.starts_with("https://")) {
            return Err(invalid("bidder.secure_url", "must be an https:// URL"));
        }
        if b.hold_ms == 0 || b.hold_ms > 3_600_000 {
            return Err(invalid(
                "bidder.hold_ms",
                "must be between 1 and 3600000 (an hour)",
            ));
        }
        if !(b.cpc_cap_multiple.is_finite() && b.cpc_cap_multiple >= 1.0) {
            return Err(invalid("bidder.cpc_cap_multiple", "must be at least 1"));
        }
        for (i, k) in b.notice_keys.iter().enumerate() {
            if k.len() < MIN_NOTICE_KEY_BYTES {
                // Never echo a key.
                return Err(invalid(
                    &format!("bidder.notice_keys[{i}]"),
                    format!(
                        "a key of {} bytes is too short: at least {MIN_NOTICE_KEY_BYTES} (e.g. `openssl rand -hex 32`)",
                        k.len()
                    ),
                ));
            }
        }
        if b.notice_keys.is_empty() && !b.public_url_is_loopback() {
            return Err(invalid(
                "bidder.notice_keys",
                format!(
                    "required when bidder.public_url ({}) is not a loopback address: notices signed with a throw-away key would not survive a restart (set ADSHARD__BIDDER__NOTICE_KEYS='[\"<at least {MIN_NOTICE_KEY_BYTES} bytes>\"]')",
                    b.public_url
                ),
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
            ("events.db.seal_interval_ms", db.seal_interval_ms),
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
        if self.events.queue_capacity == 0 || self.events.queue_capacity > MAX_QUEUE_CAPACITY {
            return Err(invalid(
                "events.queue_capacity",
                format!("must be between 1 and {MAX_QUEUE_CAPACITY}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.campaigns.max_shrink) {
            return Err(invalid("campaigns.max_shrink", "must be between 0 and 1"));
        }
        if !(100..=60_000).contains(&self.fleet.sync_interval_ms) {
            return Err(invalid(
                "fleet.sync_interval_ms",
                "must be between 100 and 60000",
            ));
        }
        if !(0.0..=1.0).contains(&self.fleet.fallback_decay) {
            return Err(invalid("fleet.fallback_decay", "must be between 0 and 1"));
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
}
