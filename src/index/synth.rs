//! Synthetic campaign sets for load tests and benchmarks
//! (`adshard gen-campaigns`): deterministic for a seed, with realistic spreads
//! of sizes, geos, devices, categories, deals and segments, and roughly a third
//! of campaigns leaving each dimension untargeted.

use super::model::*;
use std::collections::HashMap;

const SIZES: [(u32, u32); 6] = [
    (300, 250),
    (728, 90),
    (320, 50),
    (160, 600),
    (300, 600),
    (970, 250),
];
const COUNTRIES: [&str; 10] = [
    "USA", "CAN", "GBR", "DEU", "FRA", "JPN", "BRA", "IND", "AUS", "MEX",
];
const OS: [&str; 5] = ["iOS", "Android", "Windows", "OS X", "Linux"];

/// SplitMix64: small, fast, good enough to spread synthetic data (and
/// synthetic requests, in tests): the same seed, the same sequence.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits() % n
    }
    /// True `pct` percent of the time.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// One of `xs` (not empty).
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// `n` campaigns, ids from 1.
pub fn campaigns(n: usize, seed: u64) -> CampaignFile {
    let mut r = Rng(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = i as u64 + 1;
        let mut t = Targeting::default();
        if r.chance(60) {
            t.countries = (0..1 + r.below(3))
                .map(|_| r.pick(&COUNTRIES).to_string())
                .collect();
        }
        if r.chance(40) {
            t.os = vec![r.pick(&OS).to_string()];
        }
        if r.chance(40) {
            t.device_types = vec![1 + r.below(7) as u8];
        }
        if r.chance(50) {
            t.categories = vec![format!("IAB{}", 1 + r.below(26))];
        }
        if r.chance(10) {
            t.segments = vec![format!("seg-{}", r.below(500))];
        }
        if r.chance(5) {
            t.deals = vec![format!("DEAL-{}", r.below(200))];
        }
        if r.chance(20) {
            t.domains = vec![format!("site{}.example", r.below(2000))];
        }
        let mut creatives = Vec::new();
        for k in 0..1 + r.below(3) {
            let kind = r.below(10);
            let crid = format!("cr-{id}-{k}");
            let landing_url = format!("https://adv{}.example/landing/{id}", id % 997);
            let cr = if kind < 7 {
                let (w, h) = *r.pick(&SIZES);
                Creative {
                    id: crid,
                    format: CreativeFormat::Banner,
                    w: Some(w),
                    h: Some(h),
                    landing_url,
                    image_url: Some(format!("https://cdn.example/{id}/{w}x{h}.png")),
                    video_url: None,
                    mime: None,
                    duration: None,
                    title: Some(format!("Campaign {id}")),
                    description: None,
                    ..Default::default()
                }
            } else if kind < 9 {
                Creative {
                    id: crid,
                    format: CreativeFormat::Video,
                    w: Some(640),
                    h: Some(360),
                    landing_url,
                    image_url: None,
                    video_url: Some(format!("https://cdn.example/{id}/v.mp4")),
                    mime: Some("video/mp4".into()),
                    duration: Some([15, 30][r.below(2) as usize]),
                    title: Some(format!("Campaign {id}")),
                    description: None,
                    ..Default::default()
                }
            } else {
                Creative {
                    id: crid,
                    format: CreativeFormat::Native,
                    w: Some(1200),
                    h: Some(627),
                    landing_url,
                    image_url: Some(format!("https://cdn.example/{id}/n.png")),
                    video_url: None,
                    mime: None,
                    duration: None,
                    title: Some(format!("Campaign {id}")),
                    description: Some("Synthetic native ad".into()),
                    sponsored: Some(format!("Advertiser {}", id % 997)),
                    ..Default::default()
                }
            };
            creatives.push(cr);
        }
        let cpc = r.chance(25);
        out.push(Campaign {
            id,
            name: format!("synthetic {id}"),
            active: true,
            seat: "adshard".into(),
            adomain: vec![format!("adv{}.example", id % 997)],
            bundle: None,
            cat: vec![format!("IAB{}-{}", 1 + r.below(26), 1 + r.below(10))],
            cattax: 1,
            bid: BidSpec {
                model: if cpc { BidModel::Cpc } else { BidModel::Cpm },
                amount: if cpc {
                    0.2 + r.below(200) as f64 / 100.0
                } else {
                    0.1 + r.below(1000) as f64 / 100.0
                },
                expected_ctr: 0.001 + r.below(50) as f64 / 10_000.0,
                max_cpm: None,
            },
            budget: Budget {
                daily: 100.0 + r.below(10_000) as f64,
                lifetime: 1_000_000.0,
            },
            pacing: if r.chance(80) {
                Pacing::Even
            } else {
                Pacing::Asap
            },
            frequency_cap: r.chance(20).then(|| FrequencyCap {
                max: 1 + r.below(10) as u32,
                window_secs: 3600,
            }),
            targeting: t,
            creatives,
        });
    }
    CampaignFile {
        currencies: HashMap::from([("EUR".to_string(), 1.08)]),
        campaign: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    #[test]
    fn synthetic_sets_build_and_are_deterministic() {
        let a = campaigns(500, 7);
        let b = campaigns(500, 7);
        assert_eq!(a.campaign.len(), 500);
        assert_eq!(
            format!("{:?}", a.campaign[123]),
            format!("{:?}", b.campaign[123])
        );
        let ix = Index::build(a, 1).unwrap();
        assert_eq!(ix.len(), 500);
        assert!(ix
            .format_sets
            .contains_key(&crate::index::FormatKey::Banner(300, 250)));
    }
}
