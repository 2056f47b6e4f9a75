//! Liberal in what a bid request may hold: a value the bidder cannot use
//! (a negative `banner.pos`, `"w": "300"` as a string, `null` for an array,
//! an object where a number belongs) is dropped, not the whole request. Each
//! drop is noted, by field, in a per-thread log (each shard decodes on its
//! own thread: no locks) that the API reads after decoding, for `/metrics`
//! and for the `ext` of a `test = 1` response.
//!
//! The deserializers here accept any JSON value and keep what fits: numbers
//! in range (a number written as a string is parsed; a whole float is an
//! integer), strings (a number where a string belongs is kept as its text),
//! arrays of such, and objects; anything else is skipped and noted.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

macro_rules! fields {
    ($($v:ident => $label:literal,)*) => {
        /// A field whose value was dropped (or, for `Imp`, `Deal` and `App`,
        /// the object dropped).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Dropped { $($v,)* }

        impl Dropped {
            /// Every field, in `/metrics` order.
            pub const ALL: &'static [Dropped] = &[$(Dropped::$v,)*];

            /// The field's dotted path, as `/metrics` labels it.
            pub const fn label(self) -> &'static str {
                match self { $(Dropped::$v => $label,)* }
            }
        }
    };
}

fields! {
    Id => "id",
    At => "at",
    Tmax => "tmax",
    Test => "test",
    Cattax => "cattax",
    Lists => "wseat|bseat|cur|bcat|badv|bapp",
    App => "app",
    Imp => "imp",
    ImpId => "imp.id",
    ImpMedia => "imp.banner|video|audio|native",
    ImpBidfloor => "imp.bidfloor",
    ImpInstl => "imp.instl",
    ImpStrings => "imp.bidfloorcur|tagid",
    ImpSecure => "imp.secure",
    BannerSize => "imp.banner.w|h",
    BannerFormat => "imp.banner.format",
    BannerPos => "imp.banner.pos",
    BannerId => "imp.banner.id",
    VideoSize => "imp.video.w|h",
    VideoDuration => "imp.video.minduration|maxduration|rqddurs",
    VideoMimes => "imp.video.mimes",
    VideoProtocols => "imp.video.protocols|protocol",
    VideoPlacement => "imp.video.placement|plcmt",
    AudioFields => "imp.audio.mimes|minduration|maxduration|rqddurs|protocols",
    NativeRequest => "imp.native.request|ver",
    Pmp => "imp.pmp",
    Deal => "imp.pmp.deals",
    DealBidfloor => "imp.pmp.deals.bidfloor",
    DealStrings => "imp.pmp.deals.bidfloorcur|wseat|wadomain",
    Site => "site",
    SiteStrings => "site.id|domain|page|cat",
    Publisher => "site|app.publisher",
    AppStrings => "app.id|bundle|domain|cat",
    Device => "device",
    DeviceStrings => "device.ua|ip|ipv6|ifa|os|make|model",
    DeviceNumbers => "device.devicetype|connectiontype",
    Geo => "device|user.geo",
    User => "user",
    UserIds => "user.id|buyeruid",
    UserData => "user.data",
    Source => "source.schain|ext.schain",
    Regs => "regs",
    Consent => "user.consent|ext.consent, regs.gpp",
    Privacy => "regs.gdpr|us_privacy|gpp_sid|ext, device.lmt|dnt",
}

thread_local! {
    static LOG: RefCell<Vec<Dropped>> = const { RefCell::new(Vec::new()) };
}

/// Notes a drop in this thread's log.
pub fn note(d: Dropped) {
    LOG.with(|l| l.borrow_mut().push(d));
}

/// Empties this thread's log (before decoding a request).
pub fn clear() {
    LOG.with(|l| l.borrow_mut().clear());
}

/// Takes this thread's log (after decoding a request).
pub fn take() -> Vec<Dropped> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Whether this thread's log holds anything.
pub fn any() -> bool {
    LOG.with(|l| !l.borrow().is_empty())
}

/// What a lenient value turned out to be.
pub(super) enum Got<T> {
    Absent,
    Value(T),
    Bad,
}

impl<T> Got<T> {
    /// The value, noting `d` if it was unusable.
    pub(super) fn keep(self, d: Dropped) -> Option<T> {
        match self {
            Got::Value(v) => Some(v),
            Got::Absent => None,
            Got::Bad => {
                note(d);
                None
            }
        }
    }
}

/// A number type a lenient field may hold.
pub(super) trait Num: Sized {
    fn from_i128(v: i128) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
}

macro_rules! int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn from_i128(v: i128) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_f64(v: f64) -> Option<Self> {
                (v.fract() == 0.0 && v.is_finite()).then(|| Self::from_i128(v as i128)).flatten()
            }
        }
    )*};
}
int!(u8, u16, u32);

impl Num for f64 {
    fn from_i128(v: i128) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        v.is_finite().then_some(v)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut s: A) -> Result<(), A::Error> {
    while s.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut m: A) -> Result<(), A::Error> {
    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

struct NumV<T>(PhantomData<T>);

impl<'de, T: Num> Visitor<'de> for NumV<T> {
    type Value = Got<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Got<T>, E> {
        Ok(T::from_i128(i128::from(v)).map_or(Got::Bad, Got::Value))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Got<T>, E> {
        Ok(T::from_i128(i128::from(v)).map_or(Got::Bad, Got::Value))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Got<T>, E> {
        Ok(T::from_f64(v).map_or(Got::Bad, Got::Value))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Got<T>, E> {
        let v = v.trim();
        let n = match v.parse::<i128>() {
            Ok(i) => T::from_i128(i),
            Err(_) => v.parse::<f64>().ok().and_then(T::from_f64),
        };
        Ok(n.map_or(Got::Bad, Got::Value))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Got<T>, E> {
        Ok(Got::Bad)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Got<T>, E> {
        Ok(Got::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Got<T>, E> {
        Ok(Got::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Got<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Got<T>, A::Error> {
        skip_seq(s)?;
        Ok(Got::Bad)
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Got<T>, A::Error> {
        skip_map(m)?;
        Ok(Got::Bad)
    }
}

/// Any value, as a number of type `T` if it is one.
pub(super) fn num<'de, D: Deserializer<'de>, T: Num>(d: D) -> Result<Got<T>, D::Error> {
    d.deserialize_any(NumV(PhantomData))
}

struct StrV;

impl<'de> Visitor<'de> for StrV {
    type Value = Got<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Got::Value(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Got::Value(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Got::Value(Cow::Owned(v)))
    }
    // Ids sent as numbers: kept as their text.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Got::Value(Cow::Owned(v.to_string())))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Got::Value(Cow::Owned(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Got::Value(Cow::Owned(v.to_string())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Got::Bad)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Got::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Got::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
        skip_seq(s)?;
        Ok(Got::Bad)
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
        skip_map(m)?;
        Ok(Got::Bad)
    }
}

/// Any value, as a string if it is one (borrowed when unescaped) or a number.
pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Got<Cow<'de, str>>, D::Error> {
    d.deserialize_any(StrV)
}

/// One element of a lenient array: a `T` where the value is one, else
/// skipped.
struct Elem<T>(Got<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Elem<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        obj(d).map(Elem)
    }
}

struct ObjV<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjV<T> {
    type Value = Got<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Got<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(m)).map(Got::Value)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Got<T>, E> {
        Ok(Got::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Got<T>, E> {
        Ok(Got::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Got<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Got<T>, A::Error> {
        skip_seq(s)?;
        Ok(Got::Bad)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Got<T>, E> {
        Ok(Got::Bad)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Got<T>, E> {
        Ok(Got::Bad)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Got<T>, E> {
        Ok(Got::Bad)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Got<T>, E> {
        Ok(Got::Bad)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Got<T>, E> {
        Ok(Got::Bad)
    }
}

/// Any value, as an object `T` if it is one.
pub(super) fn obj<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Got<T>, D::Error> {
    d.deserialize_any(ObjV(PhantomData))
}

/// Any value, as an array of objects `T`: `null` is empty, what is not an
/// array or not an object is dropped (noted as `d`).
pub(super) fn objs<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    what: Dropped,
) -> Result<Vec<T>, D::Error> {
    d.deserialize_any(ListV::<Elem<T>>(PhantomData, what))
}

/// A string element of a lenient array (borrowed when unescaped).
struct StrElem<'a>(Got<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for StrElem<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d).map(StrElem)
    }
}

/// A number element of a lenient array.
struct NumElem<T>(Got<T>);

impl<'de, T: Num> Deserialize<'de> for NumElem<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        num(d).map(NumElem)
    }
}

struct ListV<E>(PhantomData<E>, Dropped);

/// What [`ListV`] collects from each element.
trait Item<'de>: Deserialize<'de> {
    type Out;
    fn got(self) -> Got<Self::Out>;
}

impl<'de: 'a, 'a> Item<'de> for StrElem<'a> {
    type Out = Cow<'a, str>;
    fn got(self) -> Got<Cow<'a, str>> {
        self.0
    }
}

impl<'de, T: Deserialize<'de>> Item<'de> for Elem<T> {
    type Out = T;
    fn got(self) -> Got<T> {
        self.0
    }
}

impl<'de, T: Num> Item<'de> for NumElem<T> {
    type Out = T;
    fn got(self) -> Got<T> {
        self.0
    }
}

impl<'de, E: Item<'de>> Visitor<'de> for ListV<E> {
    type Value = Vec<E::Out>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(s.size_hint().unwrap_or(0).min(64));
        while let Some(e) = s.next_element::<E>()? {
            if let Some(v) = e.got().keep(self.1) {
                out.push(v);
            }
        }
        Ok(out)
    }
    fn visit_unit<Er: de::Error>(self) -> Result<Self::Value, Er> {
        Ok(Vec::new())
    }
    fn visit_none<Er: de::Error>(self) -> Result<Self::Value, Er> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
        skip_map(m)?;
        note(self.1);
        Ok(Vec::new())
    }
    fn visit_bool<Er: de::Error>(self, _: bool) -> Result<Self::Value, Er> {
        note(self.1);
        Ok(Vec::new())
    }
    fn visit_u64<Er: de::Error>(self, _: u64) -> Result<Self::Value, Er> {
        note(self.1);
        Ok(Vec::new())
    }
    fn visit_i64<Er: de::Error>(self, _: i64) -> Result<Self::Value, Er> {
        note(self.1);
        Ok(Vec::new())
    }
    fn visit_f64<Er: de::Error>(self, _: f64) -> Result<Self::Value, Er> {
        note(self.1);
        Ok(Vec::new())
    }
    fn visit_str<Er: de::Error>(self, _: &str) -> Result<Self::Value, Er> {
        note(self.1);
        Ok(Vec::new())
    }
}

/// Any value, as an array of strings (each borrowed when unescaped; a
/// number is kept as its text): `null` is empty, the rest is dropped.
pub(super) fn strings<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
    what: Dropped,
) -> Result<Vec<Cow<'a, str>>, D::Error> {
    d.deserialize_any(ListV::<StrElem<'a>>(PhantomData, what))
}

/// Any value, as an array of numbers `T`.
pub(super) fn nums<'de, D: Deserializer<'de>, T: Num>(
    d: D,
    what: Dropped,
) -> Result<Vec<T>, D::Error> {
    d.deserialize_any(ListV::<NumElem<T>>(PhantomData, what))
}
