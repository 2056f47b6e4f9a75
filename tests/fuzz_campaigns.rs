//! A campaign file with hostile values: every value of the shipped
//! campaigns (configs/campaigns.toml, as JSON) replaced in turn by an
//! extreme or wrongly typed one. The file is refused with a reason that
//! names the campaign or the field, or it loads, and then every IAB example
//! request is decided against it without panicking, and every bid is
//! finite, positive, at or above its floor and within what the campaign
//! may pay: its CPM bid, or its CPC cap (`max_cpm`, else CPC x
//! `expected_ctr` x 1000 x `bidder.cpc_cap_multiple`).
#![allow(clippy::unwrap_used)]

use adshard::adserve::{bid_response, decide_with, Now, ShardState};
use adshard::config::BidderConfig;
use adshard::index::{BidModel, CampaignFile, Index};
use adshard::scoring::CtrModel;
use adshard::testkit::{hostile, models::Fixed};

#[test]
fn hostile_campaign_values_load_or_fail_cleanly() {
    let file: CampaignFile = toml::from_str(adshard::api::EMBEDDED_CAMPAIGNS).unwrap();
    let base = serde_json::to_value(&file).unwrap();
    let paths = hostile::places(&base);
    let requests: Vec<_> = adshard::testkit::fixtures::bid_requests()
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    let cfg = BidderConfig::default();
    let keys = adshard::adserve::signing::NoticeKeys::new(&[[1u8; 32]], 3600);
    let (mut files, mut refused, mut bids) = (0usize, 0usize, 0usize);
    for path in &paths {
        for x in hostile::values() {
            let mut v = base.clone();
            *hostile::slot(&mut v, path).unwrap() = x;
            let text = serde_json::to_string(&v).unwrap();
            files += 1;
            let ix = match Index::load(&text, "hostile.json", 1) {
                Ok(ix) => ix,
                Err(e) => {
                    refused += 1;
                    let e = e.to_string();
                    assert!(
                        e.contains("campaign") || e.contains("currenc"),
                        "{path:?}: {e}"
                    );
                    continue;
                }
            };
            for body in &requests {
                let req = adshard::openrtb::decode_json(body).unwrap();
                for scoring in [false, true] {
                    let mut st = ShardState::new(0, 1, &cfg);
                    let mut m = Fixed(0.9);
                    let model = scoring.then_some(&mut m as &mut dyn CtrModel);
                    let d = decide_with(&ix, &mut st, &req, &cfg, Now::wall(), model);
                    let _ = bid_response(&ix, &req, &d, &cfg, &keys);
                    for w in &d.winners {
                        bids += 1;
                        let c = ix.at(w.campaign);
                        let imp = &req.imp[w.imp];
                        let p = w.price_usd;
                        assert!(p.is_finite() && p > 0.0, "{path:?}: price {p}");
                        if imp.pmp.is_none() && imp.bidfloorcur.is_empty() {
                            assert!(p >= imp.bidfloor, "{path:?}: {p} under {}", imp.bidfloor);
                        }
                        let most = match c.bid.model {
                            BidModel::Cpm => c.bid.amount,
                            BidModel::Cpc => c.bid.max_cpm.unwrap_or(
                                c.bid.amount * c.bid.expected_ctr * 1000.0 * cfg.cpc_cap_multiple,
                            ),
                        };
                        assert!(p <= most * (1.0 + 1e-9), "{path:?}: {p} over {most}");
                        // One impression at the bid price fits the budgets.
                        let cost = p / 1000.0;
                        assert!(
                            cost <= c.budget.daily && cost <= c.budget.lifetime,
                            "{path:?}: an impression at {p} CPM over budget {:?}",
                            c.budget
                        );
                    }
                }
            }
        }
    }
    eprintln!("{files} files: {refused} refused, {bids} bids from the rest");
    assert!(
        refused > 0 && refused < files && bids > files,
        "{files} {refused} {bids}"
    );
}
