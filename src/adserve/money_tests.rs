//! Money: signed notice URLs from real bid responses, exact charges in the
//! bid currency, de-duplication by bid id, calibrated and capped CPC bids.

use super::dedupe::Dedupe;
use super::tests::{banner, cfg, ix, keys, st, CAMPAIGNS, NOON};
use super::*;
use crate::events::Kind;
use crate::openrtb::decode_json;

/// The nurl, burl and lurl of the first bid for `json`, decided at `now`.
fn urls(ix: &Index, s: &mut ShardState, json: &str, now: Now) -> [String; 3] {
    let req = decode_json(json.as_bytes()).unwrap();
    let d = decide(ix, s, &req, &cfg(), now);
    let r = bid_response(ix, &req, &d, &cfg(), &keys()).expect("a bid");
    let b = &r.seatbid[0].bid[0];
    [b.nurl.clone(), b.burl.clone(), b.lurl.clone()]
}

/// The query of `url` with the clearing price macro substituted (and the
/// loss reason: 102, lost to a higher bid).
fn q(url: &str, price: &str) -> String {
    url.split_once('?')
        .unwrap()
        .1
        .replace("${AUCTION_PRICE}", price)
        .replace("${AUCTION_LOSS}", "102")
}

fn send(
    ix: &Index,
    s: &mut ShardState,
    dd: &Dedupe,
    kind: NoticeKind,
    query: &str,
    now: Now,
) -> Result<NoticeOutcome, NoticeError> {
    let n = Notice::parse(Some(query))?;
    notice(
        ix,
        s,
        dd,
        &crate::quality::clicks::ImpTimes::new(64, 1000),
        &keys(),
        kind,
        &n,
        now,
    )
}

fn reason(r: Result<NoticeOutcome, NoticeError>) -> Reason {
    r.unwrap_err().reason
}

#[test]
fn a_win_charges_the_clearing_price_once_per_bid() {
    let (ix, mut s, dd, now) = (ix(), st(), Dedupe::new(4096), Now::at(NOON));
    let [nurl, burl, lurl] = urls(&ix, &mut s, &banner(""), now);
    let o = send(&ix, &mut s, &dd, NoticeKind::Win, &q(&nurl, "1.5"), now).unwrap();
    assert_eq!(o.charge, Some((1, 1_500)), "1.5 CPM USD = 1,500 micro-USD");
    assert!(o.durable && !o.duplicate);
    let ev = o.event.unwrap();
    assert_eq!(
        (ev.kind, ev.spend_micros, ev.price_micros),
        (Kind::Win, 1_500, 1_500_000)
    );
    assert!(ev.bid_id.ends_with("-0-1"), "{}", ev.bid_id);
    // Replayed: a duplicate, nothing charged or recorded.
    let o = send(&ix, &mut s, &dd, NoticeKind::Win, &q(&nurl, "1.5"), now).unwrap();
    assert!(o.duplicate && o.charge.is_none() && o.event.is_none());
    // The bill of the same bid is recorded, not charged again.
    let o = send(&ix, &mut s, &dd, NoticeKind::Bill, &q(&burl, "1.5"), now).unwrap();
    assert!(!o.duplicate && o.charge.is_none() && o.event.is_some());
    // A loss charges nothing, with its price above ours or left unsubstituted.
    for p in ["9.5", "${AUCTION_PRICE}"] {
        let o = send(
            &ix,
            &mut st(),
            &Dedupe::new(64),
            NoticeKind::Loss,
            &format!("{}&p={p}", q(&lurl, "")),
            now,
        );
        assert!(o.unwrap().charge.is_none(), "{p}");
    }
}

#[test]
fn an_unsubstituted_loss_is_ignored_and_the_real_one_recorded() {
    let (ix, mut s, dd, now) = (ix(), st(), Dedupe::new(4096), Now::at(NOON));
    let [_, _, lurl] = urls(&ix, &mut s, &banner(""), now);
    let query = lurl.split_once('?').unwrap().1;
    let encoded = query.replace("${AUCTION_LOSS}", "%24%7BAUCTION_LOSS%7D");
    for template in [query.to_string(), encoded] {
        let o = send(&ix, &mut s, &dd, NoticeKind::Loss, &template, now).unwrap();
        assert!(o.unsubstituted && o.event.is_none() && o.settles.is_none());
        assert!(o.claims.is_empty(), "nothing marked as seen");
    }
    let o = send(&ix, &mut s, &dd, NoticeKind::Loss, &q(&lurl, ""), now).unwrap();
    assert!(!o.unsubstituted && !o.duplicate && o.event.is_some());
}

#[test]
fn a_second_auction_with_the_same_request_id_is_billed_too() {
    let (ix, mut s, dd, now) = (ix(), st(), Dedupe::new(4096), Now::at(NOON));
    let [first, ..] = urls(&ix, &mut s, &banner(""), now);
    let [second, ..] = urls(&ix, &mut s, &banner(""), now);
    for u in [first, second] {
        let o = send(&ix, &mut s, &dd, NoticeKind::Win, &q(&u, "2"), now).unwrap();
        assert_eq!(o.charge, Some((1, 2_000)));
    }
}

#[test]
fn foreign_currency_is_charged_in_usd_at_the_bids_rate() {
    let (ix, mut s, dd, now) = (ix(), st(), Dedupe::new(4096), Now::at(NOON));
    // 2.0 USD CPM bid in EUR (1 EUR = 1.10 USD) is 1.8182 EUR.
    let [nurl, ..] = urls(&ix, &mut s, &banner(r#","cur":["EUR"]"#), now);
    assert!(nurl.contains("&bp=1.8182&cur=EUR&fx=1.1&"), "{nurl}");
    let [usd, ..] = urls(&ix, &mut s, &banner(""), now);
    assert!(
        !usd.contains("cur=") && !usd.contains("fx="),
        "USD at 1 is implied: {usd}"
    );
    let o = send(&ix, &mut s, &dd, NoticeKind::Win, &q(&nurl, "1.5"), now).unwrap();
    assert_eq!(o.charge, Some((1, 1_650)), "1.5 EUR CPM = 1.65 USD CPM");
    let ev = o.event.unwrap();
    assert_eq!((ev.currency.as_str(), ev.price_micros), ("EUR", 1_500_000));
}

#[test]
fn forged_tampered_expired_and_above_bid_notices_are_refused() {
    let (ix, mut s, dd, now) = (ix(), st(), Dedupe::new(4096), Now::at(NOON));
    let [nurl, ..] = urls(&ix, &mut s, &banner(""), now);
    let good = q(&nurl, "1");
    let win = |s: &mut ShardState, query: &str, at: Now| {
        reason(send(&ix, s, &dd, NoticeKind::Win, query, at))
    };
    // Forged from scratch, unsigned.
    assert_eq!(
        win(&mut s, "a=NEVER&i=1&c=1&cr=c1&p=1e300", now),
        Reason::Unsigned
    );
    // Each signed field changed.
    let good = format!("&{good}");
    for (from, to) in [
        ("&c=1&", "&c=2&"),
        ("&cr=c1&", "&cr=c2&"),
        ("&a=req-1&", "&a=req-2&"),
        ("&bp=2&", "&bp=200&"),
        // USD at 1 is implied; naming another currency or rate is a change.
        ("&bp=2&", "&bp=2&cur=JPY&fx=1&"),
        ("&bp=2&", "&bp=2&cur=USD&fx=100&"),
        ("&src=", "&src=ad&x="),
    ] {
        let good = if from == "&src=" {
            format!("{good}&src=")
        } else {
            good.clone()
        };
        assert!(good.contains(from), "{good} lacks {from}");
        assert_eq!(
            win(&mut s, &good.replacen(from, to, 1), now),
            Reason::Tampered,
            "{from}"
        );
    }
    assert_eq!(
        win(&mut s, &format!("{good}&t=1"), now),
        Reason::Tampered,
        "the test flag is signed"
    );
    assert_eq!(
        win(&mut s, &format!("{good}&a=req-1"), now),
        Reason::Malformed,
        "repeated"
    );
    let later = Now::at(NOON + 72 * 3600 + 1);
    assert_eq!(win(&mut s, &good, later), Reason::Expired);
    // Above the bid (2.0): refused; repeated keys: refused.
    assert_eq!(win(&mut s, &q(&nurl, "2.01"), now), Reason::AboveBid);
    assert_eq!(
        win(&mut s, &format!("{good}&p=1e9"), now),
        Reason::Malformed
    );
    assert_eq!(
        win(
            &mut s,
            &q(&nurl, "${AUCTION_PRICE}").replace("p=$", "p=%24"),
            now
        ),
        Reason::Malformed
    );
    // Nothing was charged by any of them; the good one still charges.
    assert_eq!(s.spent(&ix, 1, now), Some((0, 0)));
    let o = send(&ix, &mut s, &dd, NoticeKind::Win, &good, now).unwrap();
    assert_eq!(o.charge, Some((1, 1_000)));
}

#[test]
fn a_full_dedupe_table_refuses_and_charges_nothing() {
    let (ix, mut s, now) = (ix(), st(), Now::at(NOON));
    // 64 slots (one probe run): 32 charged wins fit (a win and its charge).
    let dd = Dedupe::new(64);
    let mut refused = 0;
    for _ in 0..40 {
        let [nurl, ..] = urls(&ix, &mut s, &banner(""), now);
        match send(&ix, &mut s, &dd, NoticeKind::Win, &q(&nurl, "1"), now) {
            Ok(o) => assert!(o.charge.is_some()),
            Err(e) => {
                assert_eq!((e.reason, e.status()), (Reason::DedupeFull, 503));
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 40 - 64 / 2);
    assert_eq!(dd.full(), refused);
}

#[test]
fn an_ad_impression_charges_its_signed_price_and_ignores_p() {
    let (ix, mut s, dd, now) = (ix(), st(), Dedupe::new(4096), Now::at(NOON));
    let text_req = banner("");
    let req = decode_json(text_req.as_bytes()).unwrap();
    let d = decide(&ix, &mut s, &req, &cfg(), now);
    let w = &d.winners[0];
    let ids = response::ids(&ix, &req, w, &d.cur);
    let t = ids.tracker(&keys(), "ad");
    let imp = markup::notice_url("http://x", "imp", &t, "p=1000000");
    let o = send(&ix, &mut s, &dd, NoticeKind::Imp, &q(&imp, ""), now).unwrap();
    assert_eq!(o.charge, Some((1, 2_000)), "the signed 2.0 CPM, not p");
    // The impression tracker in a bid's markup charges nothing (the
    // exchange bills), and an exchange notice's MAC does not serve a beacon.
    let mk = ids.tracker(&keys(), "mk");
    let imp = markup::notice_url("http://x", "imp", &mk, "");
    assert!(!imp.contains("a=") && !imp.contains("bp="), "{imp}");
    let o = send(
        &ix,
        &mut s,
        &Dedupe::new(64),
        NoticeKind::Imp,
        &q(&imp, ""),
        now,
    )
    .unwrap();
    // Uncharged, but written before it is answered: reports count it and
    // its clicks are checked against it, after a crash too.
    assert!(o.charge.is_none() && o.durable);
    assert_eq!(o.event.unwrap().auction_id, "");
    let rtb = ids.tracker(&keys(), "rtb");
    let imp = markup::notice_url("http://x", "imp", &rtb, "");
    let e = send(&ix, &mut s, &dd, NoticeKind::Imp, &q(&imp, ""), now).unwrap_err();
    assert_eq!(e.reason, Reason::Tampered);
    // Clicks redirect to the landing page.
    let click = markup::notice_url("http://x", "click", &t, "");
    let o = send(&ix, &mut s, &dd, NoticeKind::Click, &q(&click, ""), now).unwrap();
    assert_eq!(o.redirect.as_deref(), Some("https://alpha.com/"));
}

#[test]
fn test_traffic_is_never_charged() {
    let (ix, mut s, dd, now) = (ix(), st(), Dedupe::new(4096), Now::at(NOON));
    let [nurl, ..] = urls(&ix, &mut s, &banner(r#","test":1"#), now);
    let o = send(&ix, &mut s, &dd, NoticeKind::Win, &q(&nurl, "1"), now).unwrap();
    assert!(o.charge.is_none() && !o.durable && o.event.is_some());
}

/// Campaign 1 bids 2.0 CPM (2,000 micro-USD an impression); its shard's
/// slice of the daily budget (100 USD over 4 shards) has 10,000 left.
#[test]
fn a_bid_holds_its_price_against_the_budget_until_its_notice() {
    let (ix, dd, now) = (ix(), Dedupe::new(4096), Now::at(NOON));
    let mut s = ShardState::new(0, 4, &cfg());
    s.sync(&ix);
    s.charge(&ix, 1, 24_990_000, now);
    let text = banner("");
    let campaign = |s: &mut ShardState, at: Now| {
        let req = decode_json(text.as_bytes()).unwrap();
        let d = decide(&ix, s, &req, &cfg(), at);
        let r = bid_response(&ix, &req, &d, &cfg(), &keys())?;
        let b = &r.seatbid[0].bid[0];
        Some((b.cid.clone(), b.nurl.clone(), b.lurl.clone()))
    };
    // Five bids no notice has answered yet fill what is left.
    let bids: Vec<_> = (0..5).map(|_| campaign(&mut s, now).unwrap()).collect();
    assert!(bids.iter().all(|b| b.0 == "1"));
    assert_eq!(s.spent(&ix, 1, now), Some((24_990_000, 24_990_000)));
    assert_eq!(s.holds(), 5);
    let next = campaign(&mut s, now).unwrap();
    assert_eq!(
        next.0, "2",
        "campaign 1's slice is held by its bids in flight"
    );
    // A loss frees its bid's price; a win charges its clearing price instead
    // of the bid's (here they meet the slice exactly).
    let o = send(&ix, &mut s, &dd, NoticeKind::Loss, &q(&bids[0].2, "3"), now).unwrap();
    s.settle(&ix, o.settles.as_deref().unwrap());
    let o = send(&ix, &mut s, &dd, NoticeKind::Win, &q(&bids[1].1, "2"), now).unwrap();
    s.charge(&ix, 1, o.charge.unwrap().1, now);
    s.settle(&ix, o.settles.as_deref().unwrap());
    // Left: 10,000 - 2,000 charged - 3 x 2,000 held = 2,000: one more bid.
    assert_eq!(campaign(&mut s, now).unwrap().0, "1");
    assert_eq!(campaign(&mut s, now).unwrap().0, "2");
    // A notice for another shard's bid (or a replayed one) frees nothing.
    let mut other = ShardState::new(1, 4, &cfg());
    other.sync(&ix);
    let theirs = urls(&ix, &mut other, &banner(""), now);
    let o = send(&ix, &mut s, &dd, NoticeKind::Loss, &q(&theirs[2], "3"), now).unwrap();
    s.settle(&ix, o.settles.as_deref().unwrap());
    s.settle(&ix, &bids[0].2);
    assert_eq!(campaign(&mut s, now).unwrap().0, "2");
    // Holds lapse after `bidder.hold_ms` (5 s): the slice is free again.
    let later = Now::at(NOON + 6);
    assert_eq!(campaign(&mut s, later).unwrap().0, "1");
    assert_eq!(s.holds(), 1, "only the bid just made is held");
    // Test traffic holds nothing.
    urls(&ix, &mut s, &banner(r#","test":1"#), later);
    assert_eq!(s.holds(), 1);
}

/// A bid never starts below its budget and ends past it: with less left in
/// the slice than one impression at the campaign's price, it does not bid.
#[test]
fn a_bid_that_would_end_past_the_budget_is_not_made() {
    let (ix, now) = (ix(), Now::at(NOON));
    let bidder = |left: i64| {
        let mut s = ShardState::new(0, 4, &cfg());
        s.sync(&ix);
        // Campaign 1 bids 2 USD CPM (2,000 micro-USD an impression) from
        // a 25,000,000 slice.
        s.charge(&ix, 1, 25_000_000 - left, now);
        let text = banner("");
        let req = decode_json(text.as_bytes()).unwrap();
        let d = decide(&ix, &mut s, &req, &cfg(), now);
        bid_response(&ix, &req, &d, &cfg(), &keys()).map(|r| r.seatbid[0].bid[0].cid.clone())
    };
    assert_eq!(
        bidder(2_000).as_deref(),
        Some("1"),
        "exactly one impression left"
    );
    assert_eq!(
        bidder(1_999).as_deref(),
        Some("2"),
        "not quite one: the next campaign"
    );
}

/// A model that answers a fixed pCTR with a given training base rate.
struct Prior(f32, f64);

impl crate::scoring::CtrModel for Prior {
    fn predict(&mut self, rows: &[[i64; crate::scoring::FEATURES]], out: &mut Vec<f32>) -> bool {
        out.clear();
        out.extend(std::iter::repeat_n(self.0, rows.len()));
        true
    }
    fn base_rate(&self) -> f64 {
        self.1
    }
}

#[test]
fn cpc_bids_are_calibrated_to_the_campaign_and_capped() {
    // Only the CPC campaign (2: 0.5 USD CPC, expected_ctr 0.002).
    let text = CAMPAIGNS.replacen("amount = 2.0 }", "amount = 0.01 }", 1);
    let ix = Index::load(&text, "t.toml", 1).unwrap();
    let text_req = banner("");
    let req = decode_json(text_req.as_bytes()).unwrap();
    let price = |m: &mut Prior, cfg: &BidderConfig| {
        let d = decide_with(&ix, &mut st(), &req, cfg, Now::at(NOON), Some(m));
        d.winners.first().map(|w| (ix.at(w.campaign).id, w.price))
    };
    // The model's average (its base rate, 0.17) maps to the campaign's 0.002:
    // 0.002 x 0.5 x 1000 = 1.0 CPM, not 85.
    assert_eq!(price(&mut Prior(0.17, 0.17), &cfg()), Some((2, 1.0)));
    // Twice the base odds: about twice the campaign's CTR.
    let (_, p) = price(&mut Prior(0.2906, 0.17), &cfg()).unwrap();
    assert!((p - 1.996).abs() < 0.01, "{p}");
    // A wild pCTR is capped at 3x the rule-based value...
    assert_eq!(price(&mut Prior(0.99, 0.17), &cfg()), Some((2, 3.0)));
    // ...or the configured multiple, or max_cpm when set.
    let two = BidderConfig {
        cpc_cap_multiple: 2.0,
        ..cfg()
    };
    assert_eq!(price(&mut Prior(0.99, 0.17), &two), Some((2, 2.0)));
    let capped = text.replacen(
        "expected_ctr = 0.002 }",
        "expected_ctr = 0.002, max_cpm = 1.5 }",
        1,
    );
    let ix = Index::load(&capped, "t.toml", 1).unwrap();
    let d = decide_with(
        &ix,
        &mut st(),
        &req,
        &cfg(),
        Now::at(NOON),
        Some(&mut Prior(0.99, 0.17)),
    );
    assert_eq!(d.winners[0].price, 1.5);
}
