//! Which creative of a campaign an impression can show: the format it
//! offers, https assets on a secure page, video and audio durations, MIME
//! types, markup versions and placements, native assets; and the OpenRTB
//! `mtype` of each format.

use crate::index::{Creative, CreativeFormat, FormatKey, Index};
use crate::openrtb::Imp;

/// The OpenRTB `mtype` of a creative format.
pub(super) fn mtype(f: CreativeFormat) -> u8 {
    match f {
        CreativeFormat::Banner => 1,
        CreativeFormat::Video => 2,
        CreativeFormat::Audio => 3,
        CreativeFormat::Native => 4,
    }
}

/// First creative of the campaign at `pos` that fits an offered format and
/// the imp's constraints: https assets on a secure page; for video and audio
/// the durations, MIME types, a markup version the player takes and (video)
/// the placement; for native every required asset filled. Format and https
/// come from the index's packed briefs; only a creative that is not a banner
/// is read itself.
pub(super) fn pick_creative(
    ix: &Index,
    pos: usize,
    imp: &Imp<'_>,
    fmts: &[FormatKey],
) -> Option<(usize, FormatKey)> {
    let secure = imp.is_secure();
    ix.briefs.at(pos).iter().enumerate().find_map(|(i, b)| {
        if !fmts.contains(&b.format) || (secure && !b.https) {
            return None;
        }
        (b.decides() || media_fits(&ix.at(pos).creatives[i], imp)).then_some((i, b.format))
    })
}

/// Whether a creative's media suit the impression's player or native spec
/// (its format offered, its assets' scheme already checked).
fn media_fits(cr: &Creative, imp: &Imp<'_>) -> bool {
    match (cr.format, &imp.video, &imp.audio, &imp.native) {
        (CreativeFormat::Video, Some(v), _, _) => {
            let media = Media {
                mimes: &v.mimes,
                min: v.minduration,
                max: v.maxduration,
                exact: &v.rqddurs,
                protocols: &v.protocols,
            };
            media.fits(cr, "video/mp4", false)
                && v.plcmt()
                    .is_none_or(|p| cr.plcmt.is_empty() || cr.plcmt.contains(&p))
        }
        (CreativeFormat::Audio, _, Some(a), _) => Media {
            mimes: &a.mimes,
            min: a.minduration,
            max: a.maxduration,
            exact: &a.rqddurs,
            protocols: &a.protocols,
        }
        .fits(cr, "audio/mpeg", true),
        (CreativeFormat::Native, _, _, Some(n)) => n
            .spec
            .as_ref()
            .is_none_or(|spec| super::native::fill(spec, cr).is_some()),
        _ => true,
    }
}

/// A video or audio offer's constraints.
struct Media<'r> {
    mimes: &'r [std::borrow::Cow<'r, str>],
    min: Option<u32>,
    max: Option<u32>,
    exact: &'r [u32],
    protocols: &'r [u8],
}

impl Media<'_> {
    /// Whether the creative's duration, MIME type (`default_mime` when it
    /// names none) and a markup version we write suit the player.
    fn fits(&self, cr: &Creative, default_mime: &str, audio: bool) -> bool {
        let dur = cr.duration.unwrap_or(0);
        let dur_ok = if self.exact.is_empty() {
            !(self.min.is_some_and(|m| dur < m) || self.max.is_some_and(|m| m > 0 && dur > m))
        } else {
            self.exact.contains(&dur)
        };
        let mime = cr.mime.as_deref().unwrap_or(default_mime);
        dur_ok
            && (self.mimes.is_empty() || self.mimes.iter().any(|m| m.eq_ignore_ascii_case(mime)))
            && super::vast::Vast::for_protocols(self.protocols, audio).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Campaign;

    /// The choice as made before the briefs: every creative read whole.
    fn reference(c: &Campaign, imp: &Imp<'_>, fmts: &[FormatKey]) -> Option<(usize, FormatKey)> {
        c.creatives.iter().enumerate().find_map(|(i, cr)| {
            let key = cr.format_key();
            let https = |u: &Option<String>| u.as_deref().is_none_or(|u| u.starts_with("https://"));
            let secure_ok = !imp.is_secure()
                || [&cr.image_url, &cr.video_url, &cr.audio_url, &cr.icon_url]
                    .into_iter()
                    .all(https);
            (fmts.contains(&key) && secure_ok && media_fits(cr, imp)).then_some((i, key))
        })
    }

    #[test]
    fn the_briefs_choose_as_reading_every_creative_does() {
        let mut campaigns = crate::index::synth::campaigns(3000, 7).campaign;
        // Some assets over plain http, so secure pages turn creatives away.
        for c in campaigns.iter_mut().step_by(3) {
            for cr in &mut c.creatives {
                for u in [&mut cr.image_url, &mut cr.video_url, &mut cr.icon_url]
                    .into_iter()
                    .flatten()
                {
                    *u = u.replacen("https://", "http://", 1);
                }
            }
        }
        let mut file = crate::index::synth::campaigns(0, 7);
        file.campaign = campaigns;
        file.campaign.extend(
            Index::parse(
                include_str!("../../configs/campaigns.toml"),
                "campaigns.toml",
            )
            .unwrap()
            .campaign
            .into_iter()
            .map(|mut c| {
                c.id += 1_000_000;
                c
            }),
        );
        let ix = Index::build(file, 1).unwrap();
        let mut checked = 0;
        let mut found = 0;
        for (_, body) in crate::testkit::fixtures::bid_requests() {
            let Ok(req) = crate::openrtb::decode_json(&body) else {
                continue;
            };
            for imp in &req.imp {
                for secure in [0, 1] {
                    let mut imp = imp.clone();
                    imp.secure = Some(secure);
                    let mut fmts = Vec::new();
                    super::super::targeting::offered(&imp, &mut fmts);
                    for pos in 0..ix.len() {
                        let got = pick_creative(&ix, pos, &imp, &fmts);
                        assert_eq!(got, reference(ix.at(pos), &imp, &fmts), "position {pos}");
                        if let Some((ci, _)) = got {
                            let c = ix.at(pos);
                            assert_eq!(
                                ix.briefs.at(pos)[ci].buckets,
                                crate::scoring::ad_buckets(c.id, &c.creatives[ci].id),
                                "the model row's buckets, position {pos}"
                            );
                        }
                        checked += 1;
                        found += usize::from(got.is_some());
                    }
                }
            }
        }
        assert!(
            checked > 50_000 && found > 1_000,
            "{checked} checked, {found} found"
        );
    }
}
