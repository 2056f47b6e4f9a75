//! What an impression offers (banner, video, audio, native) and the
//! constraints each puts on a creative, as read from the request.

use super::fields as f;
use super::NativeSpec;
use serde::Deserialize;
use std::borrow::Cow;

/// Banner (3.2.6).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Banner<'a> {
    /// Width.
    #[serde(default, deserialize_with = "f::banner_size")]
    pub w: Option<u32>,
    /// Height.
    #[serde(default, deserialize_with = "f::banner_size")]
    pub h: Option<u32>,
    /// Allowed sizes.
    #[serde(default, deserialize_with = "f::formats")]
    pub format: Vec<Format>,
    /// Position.
    #[serde(default, deserialize_with = "f::pos")]
    pub pos: Option<u8>,
    /// Banner id.
    #[serde(borrow, default, deserialize_with = "f::banner_id")]
    pub id: Cow<'a, str>,
}

/// One allowed size (3.2.10).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Format {
    /// Width.
    #[serde(default, deserialize_with = "f::format_size")]
    pub w: u32,
    /// Height.
    #[serde(default, deserialize_with = "f::format_size")]
    pub h: u32,
}

/// Video (3.2.7).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Video<'a> {
    /// Accepted MIME types.
    #[serde(borrow, default, deserialize_with = "f::mimes")]
    pub mimes: Vec<Cow<'a, str>>,
    /// Player width.
    #[serde(default, deserialize_with = "f::video_size")]
    pub w: Option<u32>,
    /// Player height.
    #[serde(default, deserialize_with = "f::video_size")]
    pub h: Option<u32>,
    /// Minimum duration, seconds.
    #[serde(default, deserialize_with = "f::duration")]
    pub minduration: Option<u32>,
    /// Maximum duration, seconds.
    #[serde(default, deserialize_with = "f::duration")]
    pub maxduration: Option<u32>,
    /// Supported VAST protocols (list 5.8).
    #[serde(default, deserialize_with = "f::protocols")]
    pub protocols: Vec<u8>,
    /// The one protocol of 2.2-era requests (deprecated; read into
    /// `protocols` when that is empty).
    #[serde(default, deserialize_with = "f::protocol")]
    pub protocol: Option<u8>,
    /// Exact durations allowed, seconds (2.6; instead of min/max).
    #[serde(default, deserialize_with = "f::rqddurs")]
    pub rqddurs: Vec<u32>,
    /// Placement (2.5 list 5.9: 1 in-stream, 2 in-banner, 3 in-article,
    /// 4 in-feed, 5 interstitial/slider/floating).
    #[serde(default, deserialize_with = "f::placement")]
    pub placement: Option<u8>,
    /// Placement (2.6 `plcmt`: 1 instream, 2 accompanying content, 3
    /// interstitial, 4 no content / standalone); wins over `placement`.
    #[serde(default, deserialize_with = "f::placement")]
    pub plcmt: Option<u8>,
}

impl Video<'_> {
    /// The 2.6 placement: `plcmt`, else `placement` mapped as the 2.6
    /// guidance maps it (in-stream 1 -> 1, interstitial 5 -> 3, in-banner,
    /// in-article and in-feed -> 4 no content / standalone).
    pub fn plcmt(&self) -> Option<u8> {
        self.plcmt.or(match self.placement? {
            1 => Some(1),
            2..=4 => Some(4),
            5 => Some(3),
            _ => None,
        })
    }
}

/// Audio (3.2.8).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Audio<'a> {
    /// Accepted MIME types.
    #[serde(borrow, default, deserialize_with = "f::audio_mimes")]
    pub mimes: Vec<Cow<'a, str>>,
    /// Minimum duration, seconds.
    #[serde(default, deserialize_with = "f::audio_duration")]
    pub minduration: Option<u32>,
    /// Maximum duration, seconds.
    #[serde(default, deserialize_with = "f::audio_duration")]
    pub maxduration: Option<u32>,
    /// Exact durations allowed, seconds (2.6).
    #[serde(default, deserialize_with = "f::audio_rqddurs")]
    pub rqddurs: Vec<u32>,
    /// Supported protocols (VAST and DAAST, list 5.8).
    #[serde(default, deserialize_with = "f::audio_protocols")]
    pub protocols: Vec<u8>,
}

/// Native (3.2.9).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Native<'a> {
    /// The native request as sent: a JSON string decoded, or an object
    /// (some exchanges send one). Read into [`Native::spec`] by
    /// [`BidRequest::sanitize`], once `ver` is known too.
    #[serde(default, deserialize_with = "f::native_request")]
    pub request: Option<serde_json::Value>,
    /// Native spec version.
    #[serde(borrow, default, deserialize_with = "f::native_ver")]
    pub ver: Option<Cow<'a, str>>,
    /// The request's assets and trackers; `None` until sanitized (an
    /// impression whose native request is unusable loses its native offer).
    #[serde(skip)]
    pub spec: Option<NativeSpec>,
}
