//! Signed tracking URLs. Every notice URL we hand out (nurl, burl, lurl, the
//! markup's impression and click trackers, `/ad`'s URLs) carries an
//! HMAC-SHA256 over everything a charge depends on, truncated to 96 bits
//! and written as 16 base64url characters (`s=`). A notice whose MAC does not verify
//! under any configured key, or whose issue time is older than
//! `bidder.notice_ttl`, is refused before it can charge or record anything.
//!
//! The MAC input is a version byte followed by each field as its length
//! (LEB128) and its bytes (no separator can be smuggled into a field; short
//! input: a bid's MAC is three SHA-256 blocks with the HMAC pads): bid id,
//! auction id, imp id, campaign, creative, bid price and its currency (as the
//! decimal text in the URL), the USD rate the bid used, the test flag, the
//! issue time and the channel (`rtb` for exchange notices and the markup's
//! trackers, `ad` for `/ad`, whose impression is itself charged).
//!
//! Keys: the first configured key signs, every key verifies, so a new key
//! is rolled out by adding it second, then moving it first, then dropping
//! the old one after `notice_ttl`.

use crate::config::BidderConfig;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Read;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept (96 bits).
pub const SIG_BYTES: usize = 12;

/// Characters of the MAC in a URL (base64url, no padding).
pub const SIG_CHARS: usize = SIG_BYTES / 3 * 4;

/// Format version of the MAC input (keys are only for notice URLs).
const TAG: &[u8] = b"\x01";

/// What a notice URL's MAC covers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    /// Our bid id (`b`).
    pub bid: &'a str,
    /// Auction (bid request) id (`a`).
    pub auction: &'a str,
    /// Impression id (`i`).
    pub imp: &'a str,
    /// Campaign id (`c`).
    pub campaign: u64,
    /// Creative id (`cr`).
    pub creative: &'a str,
    /// Bid price, CPM in `cur`, as written in the URL (`bp`).
    pub price: &'a str,
    /// Currency of the bid (`cur`).
    pub cur: &'a str,
    /// USD per unit of `cur` the bid used (`fx`).
    pub fx: &'a str,
    /// Test traffic (`t=1`).
    pub test: bool,
    /// Issue time, Unix seconds (`ts`).
    pub issued: u64,
    /// Channel (`src`): `rtb` or `ad`.
    pub src: &'a str,
}

/// Why a notice's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// No `s` parameter.
    #[error("unsigned: the URL carries no signature (s)")]
    Unsigned,
    /// The MAC does not match under any key: a field was changed.
    #[error("tampered: the signature does not match the URL's fields")]
    Tampered,
    /// Issued longer than `notice_ttl` ago.
    #[error("expired: issued longer than bidder.notice_ttl ago")]
    Expired,
}

impl Rejected {
    /// Metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Rejected::Unsigned => "unsigned",
            Rejected::Tampered => "tampered",
            Rejected::Expired => "expired",
        }
    }
}

/// The signing and verifying keys, keyed once. Shared by all shards
/// (read-only).
#[derive(Clone)]
pub struct NoticeKeys {
    macs: Vec<HmacSha256>,
    /// Seconds a notice is honoured after its issue time.
    pub ttl_secs: u64,
    /// A random key made for this process: its URLs die with it.
    pub ephemeral: bool,
}

impl std::fmt::Debug for NoticeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeKeys")
            .field("keys", &self.macs.len())
            .field("ttl_secs", &self.ttl_secs)
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl NoticeKeys {
    /// Keys from raw key bytes (the first signs). Empty `keys`: none verify.
    pub fn new<K: AsRef<[u8]>>(keys: &[K], ttl_secs: u64) -> Self {
        NoticeKeys {
            macs: keys
                .iter()
                // HMAC takes keys of any length.
                .filter_map(|k| HmacSha256::new_from_slice(k.as_ref()).ok())
                .collect(),
            ttl_secs,
            ephemeral: false,
        }
    }

    /// The configured keys, or (validation allows that only with a loopback
    /// `public_url`) a random key for this process, logged as such.
    pub fn from_config(cfg: &BidderConfig) -> std::io::Result<Self> {
        let ttl = cfg.notice_ttl_secs().unwrap_or(72 * 3600);
        if !cfg.notice_keys.is_empty() {
            return Ok(NoticeKeys::new(&cfg.notice_keys, ttl));
        }
        let key: [u8; 32] = random()?;
        tracing::warn!(
            "bidder.notice_keys is not set: notice URLs are signed with a random key made for this process; they will not be honoured after a restart"
        );
        let mut k = NoticeKeys::new(&[key], ttl);
        k.ephemeral = true;
        Ok(k)
    }

    /// The MAC of `s` under the signing key, as base64url.
    pub fn sign(&self, s: &Signed<'_>) -> [u8; SIG_CHARS] {
        let mut out = [b'A'; SIG_CHARS];
        if let Some(m) = self.macs.first() {
            let tag = mac(m, s);
            base64url(&tag[..SIG_BYTES], &mut out);
        }
        out
    }

    /// Checks `sig` (the URL's `s`) against `s` under every key, then the
    /// issue time against the TTL.
    pub fn verify(&self, s: &Signed<'_>, sig: Option<&str>, now_secs: u64) -> Result<(), Rejected> {
        let sig = sig.filter(|v| !v.is_empty()).ok_or(Rejected::Unsigned)?;
        let bytes = unbase64url(sig).ok_or(Rejected::Tampered)?;
        let ok = self.macs.iter().any(|m| {
            let mut m = m.clone();
            feed(&mut m, s);
            m.verify_truncated_left(&bytes).is_ok()
        });
        if !ok {
            return Err(Rejected::Tampered);
        }
        if now_secs > s.issued.saturating_add(self.ttl_secs) {
            return Err(Rejected::Expired);
        }
        Ok(())
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` (a multiple of 3 long) as base64url into `out` (4/3 as long).
pub fn base64url(bytes: &[u8], out: &mut [u8]) {
    for (i, c) in bytes.chunks_exact(3).enumerate() {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        for k in 0..4 {
            out[4 * i + k] = B64[(n >> (18 - 6 * k) & 63) as usize];
        }
    }
}

fn unbase64url(s: &str) -> Option<[u8; SIG_BYTES]> {
    let b = s.as_bytes();
    if b.len() != SIG_CHARS {
        return None;
    }
    let val = |c: u8| B64.iter().position(|&x| x == c).map(|v| v as u32);
    let mut out = [0u8; SIG_BYTES];
    for (i, c) in b.chunks_exact(4).enumerate() {
        let n = (val(c[0])? << 18) | (val(c[1])? << 12) | (val(c[2])? << 6) | val(c[3])?;
        out[3 * i] = (n >> 16) as u8;
        out[3 * i + 1] = (n >> 8) as u8;
        out[3 * i + 2] = n as u8;
    }
    Some(out)
}

fn field(m: &mut HmacSha256, v: &[u8]) {
    let (mut n, mut len, mut at) = (v.len(), [0u8; 10], 0);
    loop {
        len[at] = (n & 0x7f) as u8 | if n > 0x7f { 0x80 } else { 0 };
        at += 1;
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    m.update(&len[..at]);
    m.update(v);
}

impl<'a> Signed<'a> {
    /// What the MAC covers: everything, except on channel `mk` (the
    /// impression and click trackers in a bid's markup, which charge
    /// nothing and carry neither the auction nor the price): bid id,
    /// campaign, creative, test flag, issue time and channel only.
    fn covered(&self) -> Signed<'a> {
        if self.src != "mk" {
            return *self;
        }
        Signed {
            bid: self.bid,
            campaign: self.campaign,
            creative: self.creative,
            test: self.test,
            issued: self.issued,
            src: self.src,
            ..Default::default()
        }
    }
}

fn feed(m: &mut HmacSha256, s: &Signed<'_>) {
    let s = &s.covered();
    let mut num = [0u8; 20];
    m.update(TAG);
    field(m, s.bid.as_bytes());
    field(m, s.auction.as_bytes());
    field(m, s.imp.as_bytes());
    field(m, decimal(s.campaign, &mut num));
    field(m, s.creative.as_bytes());
    field(m, s.price.as_bytes());
    field(m, s.cur.as_bytes());
    field(m, s.fx.as_bytes());
    field(m, if s.test { b"1" } else { b"0" });
    field(m, decimal(s.issued, &mut num));
    field(m, s.src.as_bytes());
}

fn mac(key: &HmacSha256, s: &Signed<'_>) -> [u8; 32] {
    let mut m = key.clone();
    feed(&mut m, s);
    m.finalize().into_bytes().into()
}

/// `v` in decimal, in `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// `N` bytes from the kernel's random source.
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> Signed<'static> {
        Signed {
            bid: "9f2c-0-1",
            auction: "req-1",
            imp: "1",
            campaign: 1001,
            creative: "cr-1",
            price: "2.5",
            cur: "USD",
            fx: "1",
            test: false,
            issued: 1_800_000_000,
            src: "rtb",
        }
    }

    fn sig(k: &NoticeKeys, s: &Signed<'_>) -> String {
        String::from_utf8(k.sign(s).to_vec()).unwrap()
    }

    #[test]
    fn every_field_is_covered() {
        let k = NoticeKeys::new(&[[7u8; 32]], 3600);
        let s = signed();
        let good = sig(&k, &s);
        assert_eq!(good.len(), 16);
        let now = s.issued + 10;
        assert_eq!(k.verify(&s, Some(&good), now), Ok(()));
        let changed = [
            Signed {
                bid: "9f2c-0-2",
                ..s
            },
            Signed {
                auction: "req-2",
                ..s
            },
            Signed { imp: "2", ..s },
            Signed {
                campaign: 1002,
                ..s
            },
            Signed {
                creative: "cr-2",
                ..s
            },
            Signed { price: "25", ..s },
            Signed { cur: "JPY", ..s },
            Signed { fx: "0.0067", ..s },
            Signed { test: true, ..s },
            Signed {
                issued: s.issued + 1,
                ..s
            },
            Signed { src: "ad", ..s },
            // Moving bytes between fields changes the MAC too.
            Signed {
                auction: "req-11",
                imp: "",
                ..s
            },
        ];
        for c in changed {
            assert_eq!(
                k.verify(&c, Some(&good), now),
                Err(Rejected::Tampered),
                "{c:?}"
            );
        }
        assert_eq!(k.verify(&s, None, now), Err(Rejected::Unsigned));
        assert_eq!(k.verify(&s, Some(""), now), Err(Rejected::Unsigned));
        assert_eq!(k.verify(&s, Some("zz"), now), Err(Rejected::Tampered));
        let flipped: String = good
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        assert_eq!(k.verify(&s, Some(&flipped), now), Err(Rejected::Tampered));
        assert_eq!(
            k.verify(&s, Some(&good[..15]), now),
            Err(Rejected::Tampered)
        );
    }

    #[test]
    fn long_fields_are_framed_too() {
        let k = NoticeKeys::new(&[[7u8; 32]], 3600);
        let long = "x".repeat(300);
        let longer = format!("{long}y");
        let a = Signed {
            auction: &long,
            imp: "1",
            ..signed()
        };
        let b = Signed {
            auction: &longer,
            imp: "",
            ..signed()
        };
        let g = sig(&k, &a);
        assert_eq!(k.verify(&a, Some(&g), a.issued), Ok(()));
        assert_eq!(k.verify(&b, Some(&g), a.issued), Err(Rejected::Tampered));
    }

    #[test]
    fn a_markup_tracker_covers_what_it_carries() {
        let k = NoticeKeys::new(&[[7u8; 32]], 3600);
        let mk = Signed {
            src: "mk",
            ..signed()
        };
        let g = sig(&k, &mk);
        // The auction and the price are not in a tracker's URL nor its MAC...
        let bare = Signed {
            auction: "",
            imp: "",
            price: "",
            cur: "",
            fx: "",
            ..mk
        };
        assert_eq!(k.verify(&bare, Some(&g), mk.issued), Ok(()));
        // ...what it carries is.
        for c in [
            Signed { bid: "other", ..mk },
            Signed { campaign: 7, ..mk },
            Signed { src: "rtb", ..mk },
        ] {
            assert_eq!(
                k.verify(&c, Some(&g), mk.issued),
                Err(Rejected::Tampered),
                "{c:?}"
            );
        }
    }

    #[test]
    fn expires_after_the_ttl() {
        let k = NoticeKeys::new(&[[7u8; 32]], 3600);
        let s = signed();
        let g = sig(&k, &s);
        assert_eq!(k.verify(&s, Some(&g), s.issued + 3600), Ok(()));
        assert_eq!(
            k.verify(&s, Some(&g), s.issued + 3601),
            Err(Rejected::Expired)
        );
    }

    #[test]
    fn first_key_signs_and_every_key_verifies() {
        let old = NoticeKeys::new(&[[1u8; 32]], 3600);
        let rotated = NoticeKeys::new(&[[2u8; 32], [1u8; 32]], 3600);
        let s = signed();
        let now = s.issued;
        assert_eq!(rotated.verify(&s, Some(&sig(&old, &s)), now), Ok(()));
        assert_eq!(
            old.verify(&s, Some(&sig(&rotated, &s)), now),
            Err(Rejected::Tampered)
        );
        let dropped = NoticeKeys::new(&[[2u8; 32]], 3600);
        assert_eq!(
            dropped.verify(&s, Some(&sig(&old, &s)), now),
            Err(Rejected::Tampered)
        );
    }
}
