//! Traffic quality: general invalid traffic (GIVT, as MRC and TAG define
//! it) kept out of the auction, and clicks checked before they count.
//!
//! - [`bots`]: known crawlers and bots by user agent (a shipped, editable
//!   pattern list), with `trigrams` in front: the literal pieces the
//!   patterns require, so most browsers' user agents skip the automaton.
//! - [`cidr`]: reserved and data-centre IP ranges (a hot-reloaded file).
//! - [`rate`]: per-shard request rates per IP and per device over a
//!   sliding window.
//! - [`lists`]: the lists in service and their reloads.
//! - [`clicks`]: click validation against the impression it follows.
//! - [`report`]: per-campaign hourly counters, merged for reports.
//!
//! A bid request is invalid when its user agent is a bot's, its device IP
//! is reserved or a data centre's, its device signals are malformed (an IP
//! that is not one, control characters in the user agent) or missing
//! (`ivt.require_device`), or its IP or device bids far above normal on
//! this shard. It gets a no-bid with the OpenRTB reason (3 known web
//! spider, 4 suspected non-human traffic, 5 cloud, data centre or proxy
//! IP), counted by reason in `adshard_ivt_requests_total{reason}`.

pub mod bots;
pub mod cidr;
pub mod clicks;
pub mod lists;
pub mod rate;
pub mod report;
mod trigrams;

use crate::config::IvtConfig;
use crate::openrtb::BidRequest;
pub use lists::{IvtLists, Lists};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a bid request is invalid traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ivt {
    /// A known crawler's or bot's user agent.
    BotUa,
    /// A reserved or special-purpose address (never a user's public one).
    ReservedIp,
    /// A data-centre address (any tag but `reserved` in the ranges file).
    DatacenterIp,
    /// Device signals malformed, or missing where required.
    Device,
    /// The IP's request rate on this shard is past `ivt.max_per_ip`.
    RateIp,
    /// The device's request rate on this shard is past `ivt.max_per_device`.
    RateDevice,
}

impl Ivt {
    /// Every reason, in `/metrics` order.
    pub const ALL: [Ivt; 6] = [
        Ivt::BotUa,
        Ivt::ReservedIp,
        Ivt::DatacenterIp,
        Ivt::Device,
        Ivt::RateIp,
        Ivt::RateDevice,
    ];

    /// The reason's metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Ivt::BotUa => "bot_ua",
            Ivt::ReservedIp => "reserved_ip",
            Ivt::DatacenterIp => "datacenter_ip",
            Ivt::Device => "device",
            Ivt::RateIp => "rate_ip",
            Ivt::RateDevice => "rate_device",
        }
    }

    /// The OpenRTB no-bid reason code.
    pub const fn nbr(self) -> u16 {
        match self {
            Ivt::BotUa => 3,
            Ivt::DatacenterIp => 5,
            Ivt::ReservedIp | Ivt::Device | Ivt::RateIp | Ivt::RateDevice => 4,
        }
    }
}

/// A shard's checker: the config it applies, its rate table, and the
/// verdicts of the user agents it has seen.
#[derive(Debug)]
pub struct Checker {
    cfg: IvtConfig,
    rates: rate::Rates,
    /// User agent hash -> its verdict, direct-mapped. Real traffic repeats
    /// a few hundred user agents; the checks read a browser's whole user
    /// agent to find nothing, the cache one hash.
    uas: Vec<(u64, UaVerdict)>,
    /// The version of the lists the cached verdicts came from (cleared on
    /// a reload).
    uas_of: u64,
    /// Drawn per checker: without the seed, nobody can shape a user agent
    /// whose hash lands on a browser's cached verdict, or an IP or device
    /// id that shares another's rate counter.
    seed: u64,
}

/// What a user agent alone says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UaVerdict {
    /// Nothing against it.
    Fine,
    /// A known crawler's or bot's.
    Bot,
    /// Holds control characters.
    Malformed,
}

/// Whether `s` holds an ASCII control character. No early exit: the loop
/// folds 16 bytes a step.
fn has_control(s: &[u8]) -> bool {
    s.iter().fold(0u8, |acc, &b| {
        acc | u8::from(b < 0x20) | u8::from(b == 0x7f)
    }) != 0
}

/// Entries of the user-agent verdict cache.
const UA_CACHE: usize = 4096;

/// Distinct hash seeds, so an IP and a device id never share a counter.
const IP_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const DEVICE_SEED: u64 = 0xc2b2_ae3d_27d4_eb4f;

impl Checker {
    /// A checker for one shard.
    pub fn new(cfg: &IvtConfig) -> Checker {
        Checker {
            cfg: cfg.clone(),
            rates: rate::Rates::new(cfg.rate_slots, cfg.rate_window_secs * 1000),
            uas: vec![(0, UaVerdict::Fine); UA_CACHE],
            uas_of: 0,
            seed: {
                use std::hash::BuildHasher;
                // The standard library's SipHash keys come from the OS's randomness.
                std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
            },
        }
    }

    /// What `ua` alone says of a request, through the verdict cache.
    fn ua_verdict(&mut self, lists: &Lists, ua: &str) -> UaVerdict {
        if lists.version != self.uas_of {
            self.uas.iter_mut().for_each(|e| *e = (0, UaVerdict::Fine));
            self.uas_of = lists.version;
        }
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(ua.as_bytes(), self.seed).max(1);
        let slot = &mut self.uas[(h as usize) & (UA_CACHE - 1)];
        if slot.0 == h {
            return slot.1;
        }
        let v = if has_control(ua.as_bytes()) {
            UaVerdict::Malformed
        } else if lists.bots.is_bot(ua) {
            UaVerdict::Bot
        } else {
            UaVerdict::Fine
        };
        *slot = (h, v);
        v
    }

    /// Whether checks are on.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// The first reason the request is invalid traffic, if any; counts the
    /// request against its IP's and device's rates when it is not.
    pub fn check(&mut self, lists: &Lists, req: &BidRequest<'_>, now_ms: u64) -> Option<Ivt> {
        if !self.cfg.enabled {
            return None;
        }
        let dev = req.device.as_ref();
        let ua = dev.map_or("", |d| &d.ua);
        if !ua.is_empty() {
            match self.ua_verdict(lists, ua) {
                UaVerdict::Fine => {}
                UaVerdict::Malformed => return Some(Ivt::Device),
                UaVerdict::Bot => return Some(Ivt::BotUa),
            }
        }
        let ip4 = dev.map_or("", |d| &d.ip);
        let ip6 = dev.map_or("", |d| &d.ipv6);
        for (text, v6) in [(ip4, false), (ip6, true)] {
            if text.is_empty() {
                continue;
            }
            // `device.ip` holds IPv4, `device.ipv6` IPv6: anything else is
            // malformed. Each is parsed as its own family only.
            let ip = if v6 {
                text.parse::<Ipv6Addr>().map(IpAddr::V6)
            } else {
                text.parse::<Ipv4Addr>().map(IpAddr::V4)
            };
            let Ok(ip) = ip else {
                return Some(Ivt::Device);
            };
            match lists.ranges.tag(ip) {
                None => {}
                Some("reserved") => return Some(Ivt::ReservedIp),
                Some(_) => return Some(Ivt::DatacenterIp),
            }
        }
        let ifa = dev.map_or("", |d| &d.ifa);
        if self.cfg.require_device {
            let no_ip = ip4.is_empty() && ip6.is_empty();
            let no_ua = ua.is_empty() && (req.site.is_some() || ifa.is_empty());
            if no_ip || no_ua {
                return Some(Ivt::Device);
            }
        }
        let ip = if ip4.is_empty() { ip6 } else { ip4 };
        if self.cfg.max_per_ip > 0 && !ip.is_empty() {
            let key = xxhash_rust::xxh3::xxh3_64_with_seed(ip.as_bytes(), self.seed ^ IP_SEED);
            if self.rates.hit(key, now_ms) > self.cfg.max_per_ip {
                return Some(Ivt::RateIp);
            }
        }
        let device = if ifa.is_empty() {
            req.user
                .as_ref()
                .map_or("", |u| if u.id.is_empty() { &u.buyeruid } else { &u.id })
        } else {
            ifa
        };
        if self.cfg.max_per_device > 0 && !device.is_empty() {
            let key =
                xxhash_rust::xxh3::xxh3_64_with_seed(device.as_bytes(), self.seed ^ DEVICE_SEED);
            if self.rates.hit(key, now_ms) > self.cfg.max_per_device {
                return Some(Ivt::RateDevice);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
