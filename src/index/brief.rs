//! What the auction reads of a campaign's creatives before it reads the
//! creatives themselves, packed by position: each creative's format, whether
//! all its assets are https, and its two CTR model feature buckets (the
//! campaign's and the creative's). Choosing a banner and filling its model
//! row then touch one packed entry instead of the campaign, its creative
//! list and their strings, which at 100k campaigns are cache misses each.

use super::{Campaign, FormatKey};

/// One creative, as the auction first sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brief {
    /// The format it fills.
    pub format: FormatKey,
    /// Every asset URL it has is https (it may show on a secure page).
    pub https: bool,
    /// Its CTR model buckets (`scoring::ad_buckets`: campaign, creative).
    pub buckets: [i64; 2],
}

impl Brief {
    /// Whether the brief alone decides that the creative fits an impression
    /// offering this format (a banner: format and https are all there is to
    /// check); otherwise the creative itself is checked (durations, MIME
    /// types, placements, native assets).
    pub fn decides(&self) -> bool {
        matches!(self.format, FormatKey::Banner(..))
    }
}

/// The briefs of every position.
#[derive(Debug, Clone, Default)]
pub struct Briefs {
    all: Vec<Brief>,
    /// Position -> first brief; one more entry at the end.
    start: Vec<u32>,
}

impl Briefs {
    /// The briefs of `campaigns` (in file order; `rank[i]` is the
    /// position of campaign `i`). Read in file order, the order the parser
    /// allocated their strings in: the build follows memory instead of
    /// jumping across it once per position.
    pub fn build(campaigns: &[Campaign], rank: &[u32]) -> Briefs {
        let n = campaigns.len();
        let mut len = vec![0u32; n];
        for (c, &p) in campaigns.iter().zip(rank) {
            len[p as usize] = c.creatives.len() as u32;
        }
        let mut start = Vec::with_capacity(n + 1);
        let mut total = 0u32;
        for l in len {
            start.push(total);
            total += l;
        }
        start.push(total);
        let blank = Brief {
            format: FormatKey::Native,
            https: false,
            buckets: [0; 2],
        };
        let mut all = vec![blank; total as usize];
        for (c, &p) in campaigns.iter().zip(rank) {
            let from = start[p as usize] as usize;
            let campaign = crate::scoring::campaign_bucket(c.id);
            for (k, cr) in c.creatives.iter().enumerate() {
                let https = [&cr.image_url, &cr.video_url, &cr.audio_url, &cr.icon_url]
                    .into_iter()
                    .all(|u| u.as_deref().is_none_or(|u| u.starts_with("https://")));
                all[from + k] = Brief {
                    format: cr.format_key(),
                    https,
                    buckets: [campaign, crate::scoring::creative_bucket(&cr.id)],
                };
            }
        }
        Briefs { all, start }
    }

    /// The briefs of the campaign at `pos`, in creative order.
    pub fn at(&self, pos: usize) -> &[Brief] {
        match (self.start.get(pos), self.start.get(pos + 1)) {
            (Some(&a), Some(&b)) => &self.all[a as usize..b as usize],
            _ => &[],
        }
    }
}
