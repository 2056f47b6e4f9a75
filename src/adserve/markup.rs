//! Ad markup (banner HTML; VAST and DAAST by [`super::vast`], native by
//! [`super::native`]) and the notice and
//! tracking URLs placed in it. Every id that goes into a URL is
//! percent-encoded; every value that goes into HTML or XML is escaped.

use super::native;
use super::signing::{NoticeKeys, Signed};
use super::vast::{self, Doc, Vast};
use crate::http::query::encode_into;
use crate::index::{Creative, CreativeFormat};
use crate::openrtb::{Imp, NativeSpec};
use std::fmt::Write as _;

/// What a bid's notice URLs carry, all of it signed.
#[derive(Debug, Clone)]
pub struct Ids<'a> {
    /// Our bid id.
    pub bid: &'a str,
    /// Auction (bid request) id, or the `/ad` request id.
    pub auction: &'a str,
    /// Impression id.
    pub imp: &'a str,
    /// Campaign id.
    pub campaign: u64,
    /// Creative id.
    pub creative: &'a str,
    /// Test traffic.
    pub test: bool,
    /// Bid price, CPM in `cur`, as decimal text.
    pub price: String,
    /// Currency of the bid.
    pub cur: &'a str,
    /// USD per unit of `cur` the bid used, as decimal text.
    pub fx: String,
    /// Issue time, Unix seconds.
    pub issued: u64,
}

/// Channels a MAC is made for: exchange notices (`nurl`, `burl`, `lurl`),
/// the impression and click trackers in a bid's markup (they charge nothing
/// and carry only what their events need), and `/ad`'s URLs (its impression
/// is charged).
pub const CHANNELS: [&str; 3] = ["rtb", "mk", "ad"];

impl<'a> Ids<'a> {
    /// The fields the MAC covers, for channel `src` (see [`CHANNELS`]).
    pub fn signed(&'a self, src: &'a str) -> Signed<'a> {
        Signed {
            bid: self.bid,
            auction: self.auction,
            imp: self.imp,
            campaign: self.campaign,
            creative: self.creative,
            price: &self.price,
            cur: self.cur,
            fx: &self.fx,
            test: self.test,
            issued: self.issued,
            src,
        }
    }

    /// Signs the ids for channel `src` and renders the query every URL of
    /// that channel carries (once: its URLs copy it).
    pub fn tracker(&'a self, keys: &NoticeKeys, src: &'static str) -> Tracker {
        let sig = keys.sign(&self.signed(src));
        let mut q = String::with_capacity(96 + self.auction.len());
        let _ = write!(q, "c={}&cr=", self.campaign);
        encode_into(&mut q, self.creative);
        q.push_str("&b=");
        encode_into(&mut q, self.bid);
        if src != "mk" {
            q.push_str("&a=");
            encode_into(&mut q, self.auction);
            q.push_str("&i=");
            encode_into(&mut q, self.imp);
            q.push_str("&bp=");
            q.push_str(&self.price);
            if self.cur != "USD" || self.fx != "1" {
                q.push_str("&cur=");
                encode_into(&mut q, self.cur);
                q.push_str("&fx=");
                q.push_str(&self.fx);
            }
        }
        let _ = write!(q, "&ts={}", self.issued);
        if self.test {
            q.push_str("&t=1");
        }
        if src != "rtb" {
            q.push_str("&src=");
            q.push_str(src);
        }
        q.push_str("&s=");
        // base64url: ASCII.
        q.push_str(std::str::from_utf8(&sig).unwrap_or_default());
        Tracker { query: q }
    }
}

/// A channel's signed query, ready to be put in URLs.
#[derive(Debug, Clone)]
pub struct Tracker {
    query: String,
}

/// `{base}/{path}?c=..&cr=..&b=..&a=..&i=..&bp=..[&cur=..&fx=..]&ts=..[&t=1][&src=..]&s=..[&extra]`
/// (`cur` and `fx` only when not USD; the markup's trackers (`src=mk`) carry
/// `c`, `cr`, `b`, `ts` only). `extra` is appended raw (it carries the
/// exchange's `${...}` macros, which must stay literal) and is not signed.
pub fn notice_url(base: &str, path: &str, t: &Tracker, extra: &str) -> String {
    let mut u = String::with_capacity(base.len() + path.len() + t.query.len() + extra.len() + 3);
    u.push_str(base);
    u.push('/');
    u.push_str(path);
    u.push('?');
    u.push_str(&t.query);
    if !extra.is_empty() {
        u.push('&');
        u.push_str(extra);
    }
    u
}

/// Escapes for HTML text and attribute values, and XML.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    push_escaped(&mut o, s);
    o
}

/// Appends `s` escaped for HTML text and attribute values, and XML.
fn push_escaped(o: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
}

/// Where a creative is shown: the slot size, the impression it answers
/// (for its video, audio or native constraints; none for `/ad`) and our
/// bid id.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// Width of the slot or player.
    pub w: Option<u32>,
    /// Height.
    pub h: Option<u32>,
    /// The impression, when answering a bid request.
    pub imp: Option<&'a Imp<'a>>,
    /// Bid id (VAST 4.1+ `AdServingId`).
    pub bid: &'a str,
}

/// The markup for a creative, with our impression and click trackers
/// (signed by `t`: channel `mk` for a bid's markup, `ad` for `/ad`).
pub fn adm(base: &str, cr: &Creative, t: &Tracker, campaign: u64, slot: &Slot<'_>) -> String {
    let imp = notice_url(base, "imp", t, "");
    let click = notice_url(base, "click", t, "");
    let (w, h) = (slot.w, slot.h);
    match cr.format {
        // Single-quoted attributes: no escaping when the markup is put in
        // a JSON string.
        CreativeFormat::Banner => {
            let img = cr.image_url.as_deref().unwrap_or_default();
            let title = cr.title.as_deref().unwrap_or_default();
            let mut o = String::with_capacity(240 + 2 * imp.len() + img.len() + title.len());
            o.push_str("<a href='");
            // Our URLs go in as they are: percent-encoded, and every `&` is
            // followed by a parameter name and `=`, which HTML5 never reads as
            // a character reference (saves 4 bytes a parameter).
            o.push_str(&click);
            o.push_str("' target='_blank' rel='noopener'><img src='");
            push_escaped(&mut o, img);
            let _ = write!(
                o,
                "' width='{}' height='{}' alt='",
                w.unwrap_or(0),
                h.unwrap_or(0)
            );
            push_escaped(&mut o, title);
            o.push_str("' style='border:0'></a><img src='");
            o.push_str(&imp);
            o.push_str("' width='1' height='1' style='display:none' alt=''>");
            o
        }
        CreativeFormat::Video | CreativeFormat::Audio => {
            let audio = cr.format == CreativeFormat::Audio;
            let protocols = slot.imp.map_or(&[][..], |i| match (&i.video, &i.audio) {
                (Some(v), _) if !audio => &v.protocols[..],
                (_, Some(a)) if audio => &a.protocols[..],
                _ => &[],
            });
            let doc = Doc {
                version: Vast::for_protocols(protocols, audio).unwrap_or(Vast::V3),
                campaign,
                serving_id: slot.bid,
                imp: &imp,
                click: &click,
                w: w.unwrap_or(640),
                h: h.unwrap_or(360),
            };
            vast::render(&doc, cr, audio)
        }
        CreativeFormat::Native => {
            let spec = slot.imp.and_then(|i| i.native.as_ref()?.spec.as_ref());
            match spec {
                Some(spec) => native::render(spec, cr, &imp, &click),
                None => native::render(&NativeSpec::standard(), cr, &imp, &click),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_ids_sign_them_and_keep_macros() {
        let ids = Ids {
            bid: "ab-0-1",
            auction: "a&b c",
            imp: "1",
            campaign: 7,
            creative: "cr/1",
            test: true,
            price: "1.5".into(),
            cur: "EUR",
            fx: "1.08".into(),
            issued: 1_800_000_000,
        };
        let keys = NoticeKeys::new(&[[9u8; 32]], 3600);
        let t = ids.tracker(&keys, "rtb");
        let sig = String::from_utf8(keys.sign(&ids.signed("rtb")).to_vec()).unwrap();
        let u = notice_url("http://h:1", "win", &t, "p=${AUCTION_PRICE}");
        assert_eq!(
            u,
            format!("http://h:1/win?c=7&cr=cr%2F1&b=ab-0-1&a=a%26b%20c&i=1&bp=1.5&cur=EUR&fx=1.08&ts=1800000000&t=1&s={sig}&p=${{AUCTION_PRICE}}")
        );
        let ad = ids.tracker(&keys, "ad");
        assert!(notice_url("http://h:1", "imp", &ad, "").contains("&src=ad&s="));
    }

    #[test]
    fn markup_escapes() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
