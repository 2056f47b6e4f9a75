//! Which creative of a campaign an impression can show: the format it
//! offers, https assets on a secure page, video and audio durations, MIME
//! types, markup versions and placements, native assets; and the OpenRTB
//! `mtype` of each format.

use crate::index::{Campaign, Creative, CreativeFormat, FormatKey};
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

/// First creative of `c` that fits an offered format and the imp's
/// constraints: https assets on a secure page; for video and audio the
/// durations, MIME types, a markup version the player takes and (video)
/// the placement; for native every required asset filled.
pub(super) fn pick_creative(
    c: &Campaign,
    imp: &Imp<'_>,
    fmts: &[FormatKey],
) -> Option<(usize, FormatKey)> {
    c.creatives.iter().enumerate().find_map(|(i, cr)| {
        let key = cr.format_key();
        if !fmts.contains(&key) {
            return None;
        }
        // A secure page loads only https assets.
        let https = |u: &Option<String>| u.as_deref().is_none_or(|u| u.starts_with("https://"));
        if imp.is_secure()
            && ![&cr.image_url, &cr.video_url, &cr.audio_url, &cr.icon_url]
                .into_iter()
                .all(https)
        {
            return None;
        }
        let fits = match (cr.format, &imp.video, &imp.audio, &imp.native) {
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
        };
        fits.then_some((i, key))
    })
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
