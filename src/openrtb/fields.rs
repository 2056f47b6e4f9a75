//! The lenient reader of each bid request field, and the drop it notes
//! when the value cannot be used (see [`super::lenient`]).

use super::lenient::{self, Dropped as X, Got};
use super::schain::{SChain, SChainNode, Source, SourceExt};
use super::{
    App, Audio, Banner, Data, Deal, Device, Format, Geo, Imp, Native, Pmp, Publisher, Regs,
    RegsExt, Segment, Site, User, UserExt, Video,
};
use serde::Deserializer;
use std::borrow::Cow;

macro_rules! num {
    ($($name:ident: $t:ty => $d:ident;)*) => {$(
        pub(super) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$t>, D::Error> {
            Ok(lenient::num::<D, $t>(d)?.keep(X::$d))
        }
    )*};
}

macro_rules! num_or_zero {
    ($($name:ident: $t:ty => $d:ident;)*) => {$(
        pub(super) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
            Ok(lenient::num::<D, $t>(d)?.keep(X::$d).unwrap_or_default())
        }
    )*};
}

macro_rules! string {
    ($($name:ident => $d:ident;)*) => {$(
        pub(super) fn $name<'de: 'a, 'a, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Cow<'a, str>, D::Error> {
            Ok(lenient::string(d)?.keep(X::$d).unwrap_or_default())
        }
    )*};
}

macro_rules! strings {
    ($($name:ident => $d:ident;)*) => {$(
        pub(super) fn $name<'de: 'a, 'a, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<Cow<'a, str>>, D::Error> {
            lenient::strings(d, X::$d)
        }
    )*};
}

macro_rules! object {
    ($($name:ident: $t:ident => $d:ident;)*) => {$(
        pub(super) fn $name<'de: 'a, 'a, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<$t<'a>>, D::Error> {
            Ok(lenient::obj(d)?.keep(X::$d))
        }
    )*};
}

macro_rules! objects {
    ($($name:ident: $t:ident => $d:ident;)*) => {$(
        pub(super) fn $name<'de: 'a, 'a, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<$t<'a>>, D::Error> {
            lenient::objs(d, X::$d)
        }
    )*};
}

num! {
    tmax: u32 => Tmax;
    cattax: u16 => Cattax;
    banner_size: u32 => BannerSize;
    pos: u8 => BannerPos;
    video_size: u32 => VideoSize;
    duration: u32 => VideoDuration;
    protocol: u8 => VideoProtocols;
    placement: u8 => VideoPlacement;
    audio_duration: u32 => AudioFields;
    device_num: u8 => DeviceNumbers;
    secure: u8 => ImpSecure;
    flag: u8 => Privacy;
}

num_or_zero! {
    test: u8 => Test;
    instl: u8 => ImpInstl;
    format_size: u32 => BannerFormat;
    private_auction: u8 => Pmp;
    coppa: u8 => Regs;
    schain_flag: u8 => Source;
}

string! {
    id => Id;
    imp_id => ImpId;
    imp_str => ImpStrings;
    banner_id => BannerId;
    deal_id => DealStrings;
    site_str => SiteStrings;
    app_str => AppStrings;
    publisher_str => Publisher;
    device_str => DeviceStrings;
    geo_str => Geo;
    user_id => UserIds;
    consent => Consent;
    schain_str => Source;
    data_str => UserData;
}

strings! {
    lists => Lists;
    mimes => VideoMimes;
    audio_mimes => AudioFields;
    deal_list => DealStrings;
    site_list => SiteStrings;
    app_list => AppStrings;
}

object! {
    site: Site => Site;
    app: App => App;
    device: Device => Device;
    user: User => User;
    user_ext: UserExt => User;
    banner: Banner => ImpMedia;
    video: Video => ImpMedia;
    native: Native => ImpMedia;
    audio: Audio => ImpMedia;
    pmp: Pmp => Pmp;
    publisher: Publisher => Publisher;
    geo: Geo => Geo;
    source: Source => Source;
    source_ext: SourceExt => Source;
    schain: SChain => Source;
}

objects! {
    imps: Imp => Imp;
    deals: Deal => Deal;
    data: Data => UserData;
    segments: Segment => UserData;
    schain_nodes: SChainNode => Source;
}

/// Auction type; unusable: second price, the default.
pub(super) fn at<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    Ok(lenient::num::<D, u16>(d)?.keep(X::At).unwrap_or(2))
}

fn floor<'de, D: Deserializer<'de>>(d: D, what: X) -> Result<f64, D::Error> {
    Ok(match lenient::num::<D, f64>(d)? {
        Got::Value(v) if v >= 0.0 => v,
        Got::Absent => 0.0,
        Got::Value(_) | Got::Bad => {
            lenient::note(what);
            0.0
        }
    })
}

/// An impression's floor; negative or unusable: none.
pub(super) fn bidfloor<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    floor(d, X::ImpBidfloor)
}

/// A deal's floor; negative or unusable: none.
pub(super) fn deal_floor<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    floor(d, X::DealBidfloor)
}

fn currency<'de: 'a, 'a, D: Deserializer<'de>>(d: D, what: X) -> Result<Cow<'a, str>, D::Error> {
    Ok(lenient::string(d)?
        .keep(what)
        .filter(|c| !c.is_empty())
        .unwrap_or(Cow::Borrowed("USD")))
}

/// An impression's floor currency; absent or unusable: USD.
pub(super) fn floorcur<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Cow<'a, str>, D::Error> {
    currency(d, X::ImpStrings)
}

/// A deal's floor currency; absent or unusable: USD.
pub(super) fn deal_cur<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Cow<'a, str>, D::Error> {
    currency(d, X::DealStrings)
}

/// The native request: a JSON string holding the request object (as the
/// spec says), or the object itself; anything else is read as absent (and
/// noted when the impression is sanitized).
pub(super) fn native_request<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    use serde::Deserialize as _;
    use serde_json::Value;
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => serde_json::from_str::<Value>(&s)
            .ok()
            .filter(Value::is_object),
        v @ Value::Object(_) => Some(v),
        _ => None,
    })
}

/// The native spec version.
pub(super) fn native_ver<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(lenient::string(d)?.keep(X::NativeRequest))
}

/// Video protocols; elements that are not protocol numbers are dropped.
pub(super) fn protocols<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    lenient::nums(d, X::VideoProtocols)
}

/// Exact video durations; elements that are not durations are dropped.
pub(super) fn rqddurs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    lenient::nums(d, X::VideoDuration)
}

/// Audio protocols; elements that are not protocol numbers are dropped.
pub(super) fn audio_protocols<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    lenient::nums(d, X::AudioFields)
}

/// Exact audio durations.
pub(super) fn audio_rqddurs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    lenient::nums(d, X::AudioFields)
}

/// Banner sizes; elements that are not objects are dropped.
pub(super) fn formats<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Format>, D::Error> {
    lenient::objs(d, X::BannerFormat)
}

/// A US Privacy string (`1YNN`: version, notice, opt-out of sale, LSPA):
/// whether it says the user opted out. One that is not such a string is
/// dropped (noted) and read as no opt-out.
pub(super) fn us_privacy<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let Some(s) = lenient::string(d)?.keep(X::Privacy) else {
        return Ok(false);
    };
    let b = s.as_bytes();
    if b.is_empty() {
        return Ok(false);
    }
    let valid = b.len() == 4
        && b[0] == b'1'
        && b[1..]
            .iter()
            .all(|c| matches!(c.to_ascii_uppercase(), b'Y' | b'N' | b'-'));
    if valid {
        Ok(b[2].eq_ignore_ascii_case(&b'Y'))
    } else {
        lenient::note(X::Privacy);
        Ok(false)
    }
}

/// GPP section ids: whether they include the EU TCF v2 section (2).
pub(super) fn gpp_tcf<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(lenient::nums::<D, u16>(d, X::Privacy)?.contains(&2))
}

/// The GPP string (owned: `Regs` is kept apart from the body's lifetime).
pub(super) fn gpp<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient::string(d)?
        .keep(X::Consent)
        .map(Cow::into_owned)
        .unwrap_or_default())
}

/// `regs.ext`.
pub(super) fn regs_ext<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RegsExt>, D::Error> {
    Ok(lenient::obj(d)?.keep(X::Regs))
}

/// Regulations.
pub(super) fn regs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regs>, D::Error> {
    Ok(lenient::obj(d)?.keep(X::Regs))
}
