//! The native ad request an impression carries (`imp.native.request`, IAB
//! OpenRTB Native 1.0, 1.1 and 1.2): what assets the placement wants, by id,
//! with their constraints, and which trackers it fires. Read from the JSON
//! string the spec prescribes or from an object (some exchanges send one),
//! with or without the 1.0 `{"native": ...}` wrapper, and leniently: an
//! asset that cannot be read is dropped (a required one makes the request
//! unusable, so the native offer is dropped and noted).

use serde_json::Value;

/// Native spec version of the request, which decides the response's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NativeVer {
    /// 1.0: the response is wrapped in `{"native": ...}`.
    V1_0,
    /// 1.1: unwrapped.
    V1_1,
    /// 1.2: unwrapped, `eventtrackers`.
    V1_2,
}

impl NativeVer {
    /// As the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            NativeVer::V1_0 => "1.0",
            NativeVer::V1_1 => "1.1",
            NativeVer::V1_2 => "1.2",
        }
    }

    fn parse(s: &str) -> Option<NativeVer> {
        match s.trim() {
            "1" | "1.0" => Some(NativeVer::V1_0),
            "1.1" => Some(NativeVer::V1_1),
            "1.2" => Some(NativeVer::V1_2),
            _ => None,
        }
    }
}

/// A parsed native request.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeSpec {
    /// Version (from `ver`; else 1.0 when wrapped, else `imp.native.ver`, else 1.2).
    pub ver: NativeVer,
    /// Requested assets, in request order.
    pub assets: Vec<AssetReq>,
    /// Whether the placement fires image-pixel impression trackers through
    /// `eventtrackers` (event 1, method 1): then the response uses them
    /// rather than the deprecated `imptrackers`.
    pub img_event_tracker: bool,
    /// Event trackers as sent (event, methods), for re-encoding.
    pub eventtrackers: Vec<(u8, Vec<u8>)>,
}

/// One requested asset.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetReq {
    /// Asset id: the response answers by it.
    pub id: u32,
    /// The ad is unusable without it.
    pub required: bool,
    /// What it asks for.
    pub kind: AssetKind,
}

/// The kind of an asset and its constraints.
#[derive(Debug, Clone, PartialEq)]
pub enum AssetKind {
    /// A title of at most `len` characters (0 = no limit).
    Title {
        /// Maximum length.
        len: u32,
    },
    /// An image.
    Img {
        /// Image type: 1 icon, 3 main (absent: main).
        ty: Option<u8>,
        /// Exact width, when no minimum is given.
        w: Option<u32>,
        /// Exact height, when no minimum is given.
        h: Option<u32>,
        /// Minimum width.
        wmin: Option<u32>,
        /// Minimum height.
        hmin: Option<u32>,
        /// Accepted MIME types (empty: any).
        mimes: Vec<String>,
    },
    /// A data field of type `ty` (1 sponsored, 2 desc, 12 ctatext, ...), at
    /// most `len` characters (0 = no limit).
    Data {
        /// Data asset type.
        ty: u8,
        /// Maximum length.
        len: u32,
    },
    /// A video asset (we have none to give), or a kind we do not know.
    Other,
}

/// Why a native request could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativeError {
    /// Not JSON, or not an object.
    #[error("not a JSON object")]
    NotObject,
    /// No `assets` array, or no asset in it could be read.
    #[error("no usable assets")]
    NoAssets,
    /// A required asset could not be read.
    #[error("a required asset is unreadable")]
    RequiredUnreadable,
}

/// A number, also when sent as a string.
fn num(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn small<T: TryFrom<u64>>(v: Option<&Value>) -> Option<T> {
    num(v).and_then(|n| T::try_from(n).ok())
}

impl NativeSpec {
    /// Parses the text of `imp.native.request`; `imp_ver` is `imp.native.ver`.
    pub fn parse_str(s: &str, imp_ver: Option<&str>) -> Result<NativeSpec, NativeError> {
        let v: Value = serde_json::from_str(s).map_err(|_| NativeError::NotObject)?;
        Self::from_value(&v, imp_ver)
    }

    /// The layout `/ad` serves (no request to follow): title (id 1) and
    /// main image (id 2) required, description (id 3) optional; 1.2.
    pub fn standard() -> NativeSpec {
        let a = |id, required, kind| AssetReq { id, required, kind };
        NativeSpec {
            ver: NativeVer::V1_2,
            assets: vec![
                a(1, true, AssetKind::Title { len: 0 }),
                a(
                    2,
                    true,
                    AssetKind::Img {
                        ty: Some(3),
                        w: None,
                        h: None,
                        wmin: None,
                        hmin: None,
                        mimes: Vec::new(),
                    },
                ),
                a(3, false, AssetKind::Data { ty: 2, len: 0 }),
            ],
            img_event_tracker: false,
            eventtrackers: Vec::new(),
        }
    }

    /// Reads a native request object, wrapped (`{"native": {...}}`) or not.
    pub fn from_value(v: &Value, imp_ver: Option<&str>) -> Result<NativeSpec, NativeError> {
        let Value::Object(top) = v else {
            return Err(NativeError::NotObject);
        };
        let (o, wrapped) = match top.get("native") {
            Some(Value::Object(inner)) => (inner, true),
            _ => (top, false),
        };
        let ver = o
            .get("ver")
            .and_then(|v| match v {
                Value::String(s) => NativeVer::parse(s),
                Value::Number(n) => NativeVer::parse(&n.to_string()),
                _ => None,
            })
            .or(if wrapped { Some(NativeVer::V1_0) } else { None })
            .or_else(|| imp_ver.and_then(NativeVer::parse))
            .unwrap_or(NativeVer::V1_2);
        let Some(Value::Array(list)) = o.get("assets") else {
            return Err(NativeError::NoAssets);
        };
        let mut assets = Vec::with_capacity(list.len());
        for a in list {
            let required = a.get("required").and_then(|r| num(Some(r))) == Some(1);
            match asset(a) {
                Some(x) if !assets.iter().any(|y: &AssetReq| y.id == x.id) => {
                    assets.push(AssetReq { required, ..x })
                }
                _ if required => return Err(NativeError::RequiredUnreadable),
                _ => {}
            }
        }
        if assets.is_empty() {
            return Err(NativeError::NoAssets);
        }
        let eventtrackers: Vec<(u8, Vec<u8>)> = match o.get("eventtrackers") {
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(|t| {
                    let event = small::<u8>(t.get("event"))?;
                    let methods = match t.get("methods") {
                        Some(Value::Array(m)) => m.iter().filter_map(|x| small(Some(x))).collect(),
                        _ => Vec::new(),
                    };
                    Some((event, methods))
                })
                .collect(),
            _ => Vec::new(),
        };
        let img_event_tracker = eventtrackers.iter().any(|(e, m)| *e == 1 && m.contains(&1));
        Ok(NativeSpec {
            ver,
            assets,
            img_event_tracker,
            eventtrackers,
        })
    }

    /// The request as Native 1.2 JSON text (what Cap'n Proto carries).
    pub fn to_json(&self) -> String {
        let assets: Vec<Value> = self
            .assets
            .iter()
            .map(|a| {
                let mut o = serde_json::Map::new();
                o.insert("id".into(), a.id.into());
                if a.required {
                    o.insert("required".into(), 1.into());
                }
                let (k, v) = match &a.kind {
                    AssetKind::Title { len } => ("title", serde_json::json!({ "len": len })),
                    AssetKind::Img {
                        ty,
                        w,
                        h,
                        wmin,
                        hmin,
                        mimes,
                    } => {
                        let mut m = serde_json::Map::new();
                        for (k, v) in [("type", ty.map(u32::from)), ("w", *w), ("h", *h)]
                            .into_iter()
                            .chain([("wmin", *wmin), ("hmin", *hmin)])
                        {
                            if let Some(v) = v {
                                m.insert(k.into(), v.into());
                            }
                        }
                        if !mimes.is_empty() {
                            m.insert("mimes".into(), mimes.clone().into());
                        }
                        ("img", Value::Object(m))
                    }
                    AssetKind::Data { ty, len } => {
                        ("data", serde_json::json!({ "type": ty, "len": len }))
                    }
                    AssetKind::Other => ("video", serde_json::json!({})),
                };
                o.insert(k.into(), v);
                Value::Object(o)
            })
            .collect();
        let trackers: Vec<Value> = self
            .eventtrackers
            .iter()
            .map(|(e, m)| serde_json::json!({ "event": e, "methods": m }))
            .collect();
        let mut o = serde_json::json!({ "ver": self.ver.as_str(), "assets": assets });
        if !trackers.is_empty() {
            o["eventtrackers"] = trackers.into();
        }
        if self.ver == NativeVer::V1_0 {
            o = serde_json::json!({ "native": o });
        }
        o.to_string()
    }
}

/// One asset of the request; `None` when it has no id or no readable kind.
fn asset(a: &Value) -> Option<AssetReq> {
    let id = small::<u32>(a.get("id"))?;
    let kind = if let Some(t) = a.get("title").filter(|t| t.is_object()) {
        AssetKind::Title {
            len: small(t.get("len")).unwrap_or(0),
        }
    } else if let Some(i) = a.get("img").filter(|t| t.is_object()) {
        AssetKind::Img {
            ty: small(i.get("type")),
            w: small(i.get("w")).filter(|&x: &u32| x > 0),
            h: small(i.get("h")).filter(|&x: &u32| x > 0),
            wmin: small(i.get("wmin")).filter(|&x: &u32| x > 0),
            hmin: small(i.get("hmin")).filter(|&x: &u32| x > 0),
            mimes: match i.get("mimes") {
                Some(Value::Array(m)) => m
                    .iter()
                    .filter_map(|x| x.as_str().map(|s| s.to_ascii_lowercase()))
                    .collect(),
                _ => Vec::new(),
            },
        }
    } else if let Some(d) = a.get("data").filter(|t| t.is_object()) {
        AssetKind::Data {
            ty: small(d.get("type"))?,
            len: small(d.get("len")).unwrap_or(0),
        }
    } else if a.get("video").is_some_and(Value::is_object) {
        AssetKind::Other
    } else {
        return None;
    };
    Some(AssetReq {
        id,
        required: false,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request of the IAB Native 1.2 specification's example 6.3
    /// ("Third-Party Ad Serving"), with the `eventtrackers` of 4.7 added.
    const IAB_1_2: &str = r#"{"ver":"1.2","context":2,"contextsubtype":20,"plcmttype":11,"plcmtcnt":1,"aurlsupport":0,"durlsupport":0,"assets":[{"id":123,"required":1,"title":{"len":140}},{"id":128,"required":0,"img":{"wmin":836,"hmin":627,"type":3}},{"id":124,"required":1,"img":{"wmin":50,"hmin":50,"type":1}},{"id":126,"required":1,"data":{"type":1,"len":25}},{"id":127,"required":1,"data":{"type":2,"len":140}}],"eventtrackers":[{"event":1,"methods":[1,2]},{"event":2,"methods":[1]}]}"#;

    #[test]
    fn reads_the_iab_1_2_example() {
        let n = NativeSpec::parse_str(IAB_1_2, None).unwrap();
        assert_eq!(n.ver, NativeVer::V1_2);
        assert_eq!(
            n.assets.iter().map(|a| a.id).collect::<Vec<_>>(),
            [123, 128, 124, 126, 127]
        );
        assert_eq!(n.assets[0].kind, AssetKind::Title { len: 140 });
        assert!(n.assets[0].required && !n.assets[1].required);
        assert!(matches!(
            n.assets[2].kind,
            AssetKind::Img {
                ty: Some(1),
                wmin: Some(50),
                ..
            }
        ));
        assert_eq!(n.assets[4].kind, AssetKind::Data { ty: 2, len: 140 });
        assert!(n.img_event_tracker);
        // Round trip through the text Cap'n Proto carries.
        assert_eq!(NativeSpec::parse_str(&n.to_json(), None).unwrap(), n);
    }

    #[test]
    fn the_1_0_wrapper_and_lenient_values() {
        let n = NativeSpec::parse_str(
            r#"{"native":{"assets":[{"id":"1","required":"1","title":{"len":"25"}},{"img":{"type":3}},{"id":2,"data":{"type":"x"}}]}}"#,
            Some("1.2"),
        )
        .unwrap();
        assert_eq!(n.ver, NativeVer::V1_0, "a wrapper without ver is 1.0");
        assert_eq!(n.assets.len(), 1, "assets without id or type are dropped");
        assert_eq!(n.assets[0].kind, AssetKind::Title { len: 25 });
        assert!(n.assets[0].required);
        assert!(!n.img_event_tracker);
        assert_eq!(
            NativeSpec::parse_str(r#"{"assets":[{"id":1,"title":{}}]}"#, Some("1.1"))
                .unwrap()
                .ver,
            NativeVer::V1_1
        );
    }

    #[test]
    fn unusable_requests() {
        for (s, e) in [
            ("not json", NativeError::NotObject),
            ("[1]", NativeError::NotObject),
            ("{}", NativeError::NoAssets),
            (r#"{"assets":[{"id":1}]}"#, NativeError::NoAssets),
            (
                r#"{"assets":[{"id":1,"title":{}},{"required":1,"img":{}}]}"#,
                NativeError::RequiredUnreadable,
            ),
        ] {
            assert_eq!(NativeSpec::parse_str(s, None), Err(e), "{s}");
        }
    }
}
