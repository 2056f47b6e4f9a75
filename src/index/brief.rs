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
    /// The briefs of campaigns given in position order.
    pub fn build<'c>(by_pos: impl ExactSizeIterator<Item = &'c Campaign>) -> Briefs {
        let mut b = Briefs {
            all: Vec::new(),
            start: Vec::with_capacity(by_pos.len() + 1),
        };
        for c in by_pos {
            b.start.push(b.all.len() as u32);
            b.all.extend(c.creatives.iter().map(|cr| {
                let https = [&cr.image_url, &cr.video_url, &cr.audio_url, &cr.icon_url]
                    .into_iter()
                    .all(|u| u.as_deref().is_none_or(|u| u.starts_with("https://")));
                Brief {
                    format: cr.format_key(),
                    https,
                    buckets: crate::scoring::ad_buckets(c.id, &cr.id),
                }
            }));
        }
        b.start.push(b.all.len() as u32);
        b
    }

    /// The briefs of the campaign at `pos`, in creative order.
    pub fn at(&self, pos: usize) -> &[Brief] {
        match (self.start.get(pos), self.start.get(pos + 1)) {
            (Some(&a), Some(&b)) => &self.all[a as usize..b as usize],
            _ => &[],
        }
    }
}
