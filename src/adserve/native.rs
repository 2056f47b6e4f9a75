//! Native ads: which of a creative's parts fill which of the request's
//! assets (by the request's ids and constraints), and the native response
//! markup (1.1+ unwrapped, 1.0 in its `{"native": ...}` wrapper).
//!
//! A creative fills: a title asset with its `title` (no longer than the
//! asset's `len`: advertiser copy is never cut), a main image (type 3 or
//! untyped) with `image_url` at `w` x `h`, an icon (type 1) with `icon_url`
//! at `icon_size` square, data type 1 (sponsored) with `sponsored`, 2
//! (desc) with `description`, 12 (ctatext) with `cta`. An image must meet
//! `wmin`/`hmin` where given, else equal `w`/`h` where given (the spec's
//! rule), and have an accepted MIME type (read from the URL's extension;
//! an unknown extension is not refused). Video assets are never filled. A
//! required asset left unfilled means no bid with this creative; so does a
//! request of which nothing could be filled.

use crate::index::Creative;
use crate::openrtb::native::{AssetKind, NativeSpec, NativeVer};
use serde_json::{json, Value};

/// One filled asset.
#[derive(Debug, Clone, PartialEq)]
pub struct Filled<'a> {
    /// The request's asset id.
    pub id: u32,
    /// What fills it.
    pub part: Part<'a>,
}

/// A creative's part in an asset.
#[derive(Debug, Clone, PartialEq)]
pub enum Part<'a> {
    /// Title text.
    Title(&'a str),
    /// An image and its size.
    Img(&'a str, u32, u32),
    /// Data text.
    Data(&'a str),
}

/// Whether `text` fits a length limit (0: none), in characters.
fn fits_len(text: &str, len: u32) -> bool {
    len == 0 || text.chars().count() <= len as usize
}

/// One side of an image against the asset's minimum, else exact size.
fn fits_side(have: u32, exact: Option<u32>, min: Option<u32>) -> bool {
    match (min, exact) {
        (Some(m), _) => have >= m,
        (None, Some(e)) => have == e,
        (None, None) => true,
    }
}

/// The MIME type an image URL's extension names, if it names one.
fn image_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

fn mime_ok(url: &str, mimes: &[String]) -> bool {
    if mimes.is_empty() {
        return true;
    }
    match image_mime(url) {
        None => true,
        // "image/jpg" is what many exchanges write for JPEG.
        Some(m) => mimes
            .iter()
            .any(|x| x == m || (m == "image/jpeg" && x == "image/jpg")),
    }
}

/// The creative's part for one asset, if it has a fitting one.
fn part<'a>(kind: &AssetKind, cr: &'a Creative) -> Option<Part<'a>> {
    match kind {
        AssetKind::Title { len } => cr
            .title
            .as_deref()
            .filter(|t| fits_len(t, *len))
            .map(Part::Title),
        AssetKind::Img {
            ty,
            w,
            h,
            wmin,
            hmin,
            mimes,
        } => {
            let (url, cw, ch) = match ty {
                None | Some(3) => (cr.image_url.as_deref()?, cr.w?, cr.h?),
                Some(1) => {
                    let s = cr.icon_size?;
                    (cr.icon_url.as_deref()?, s, s)
                }
                _ => return None,
            };
            (fits_side(cw, *w, *wmin) && fits_side(ch, *h, *hmin) && mime_ok(url, mimes))
                .then_some(Part::Img(url, cw, ch))
        }
        AssetKind::Data { ty, len } => match ty {
            1 => cr.sponsored.as_deref(),
            2 => cr.description.as_deref(),
            12 => cr.cta.as_deref(),
            _ => None,
        }
        .filter(|t| fits_len(t, *len))
        .map(Part::Data),
        AssetKind::Other => None,
    }
}

/// The creative's answer to each asset it can fill, or `None` when a
/// required asset cannot be filled or nothing can.
pub fn fill<'a>(spec: &NativeSpec, cr: &'a Creative) -> Option<Vec<Filled<'a>>> {
    let mut out = Vec::with_capacity(spec.assets.len());
    for a in &spec.assets {
        match part(&a.kind, cr) {
            Some(part) => out.push(Filled { id: a.id, part }),
            None if a.required => return None,
            None => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The native response markup: the filled assets by the request's ids,
/// the click URL as `link`, our impression pixel as an `eventtrackers`
/// image pixel where the request lists one, else as `imptrackers`.
pub fn render(spec: &NativeSpec, cr: &Creative, imp: &str, click: &str) -> String {
    let assets: Vec<Value> = fill(spec, cr)
        .unwrap_or_default()
        .into_iter()
        .map(|f| match f.part {
            Part::Title(t) => json!({ "id": f.id, "title": { "text": t } }),
            Part::Img(u, w, h) => json!({ "id": f.id, "img": { "url": u, "w": w, "h": h } }),
            Part::Data(v) => json!({ "id": f.id, "data": { "value": v } }),
        })
        .collect();
    let mut o = json!({
        "ver": spec.ver.as_str(),
        "assets": assets,
        "link": { "url": click },
    });
    if spec.img_event_tracker {
        o["eventtrackers"] = json!([{ "event": 1, "method": 1, "url": imp }]);
    } else {
        o["imptrackers"] = json!([imp]);
    }
    if spec.ver == NativeVer::V1_0 {
        o = json!({ "native": o });
    }
    o.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::CreativeFormat;

    fn creative() -> Creative {
        Creative {
            id: "n1".into(),
            format: CreativeFormat::Native,
            w: Some(1200),
            h: Some(627),
            landing_url: "https://shop.example/".into(),
            image_url: Some("https://cdn.example/main.jpg?v=2".into()),
            video_url: None,
            audio_url: None,
            mime: None,
            duration: None,
            title: Some("Learn about this awesome thing".into()),
            description: Some("Learn all about this awesome story.".into()),
            icon_url: Some("https://cdn.example/icon.png".into()),
            icon_size: Some(80),
            sponsored: Some("My Brand".into()),
            cta: None,
            plcmt: Vec::new(),
        }
    }

    fn spec(assets: &str) -> NativeSpec {
        NativeSpec::parse_str(&format!(r#"{{"ver":"1.2","assets":{assets}}}"#), None).unwrap()
    }

    #[test]
    fn fills_the_iab_example_by_its_ids() {
        // The asset list of the IAB Native 1.2 example 6.3.
        let s = spec(
            r#"[{"id":123,"required":1,"title":{"len":140}},{"id":128,"required":0,"img":{"wmin":836,"hmin":627,"type":3}},{"id":124,"required":1,"img":{"wmin":50,"hmin":50,"type":1}},{"id":126,"required":1,"data":{"type":1,"len":25}},{"id":127,"required":1,"data":{"type":2,"len":140}}]"#,
        );
        let cr = creative();
        let f = fill(&s, &cr).unwrap();
        assert_eq!(
            f.iter().map(|a| a.id).collect::<Vec<_>>(),
            [123, 128, 124, 126, 127]
        );
        assert_eq!(
            f[1].part,
            Part::Img("https://cdn.example/main.jpg?v=2", 1200, 627)
        );
        assert_eq!(f[2].part, Part::Img("https://cdn.example/icon.png", 80, 80));
        let adm: Value = serde_json::from_str(&render(&s, &cr, "I", "C")).unwrap();
        assert_eq!(adm["ver"], "1.2");
        assert_eq!(
            adm["assets"][0],
            json!({"id":123,"title":{"text":cr.title}})
        );
        assert_eq!(adm["link"]["url"], "C");
        assert_eq!(adm["imptrackers"], json!(["I"]));
    }

    #[test]
    fn constraints_decide_and_required_assets_must_be_filled() {
        let cr = creative();
        // Exact size (no minimum): 300x250 is not 1200x627.
        assert!(fill(
            &spec(r#"[{"id":1,"required":1,"img":{"type":3,"w":300,"h":250}}]"#),
            &cr
        )
        .is_none());
        // A minimum wins over the exact size.
        assert!(fill(
            &spec(r#"[{"id":1,"required":1,"img":{"w":300,"wmin":600,"h":250,"hmin":300}}]"#),
            &cr
        )
        .is_some());
        // Title too long for len: never cut.
        assert!(fill(&spec(r#"[{"id":1,"required":1,"title":{"len":10}}]"#), &cr).is_none());
        // An optional asset that cannot be filled is left out.
        let f = fill(
            &spec(r#"[{"id":1,"title":{"len":10}},{"id":2,"data":{"type":12}},{"id":3,"required":1,"data":{"type":1}}]"#),
            &cr,
        )
        .unwrap();
        assert_eq!(
            f,
            [Filled {
                id: 3,
                part: Part::Data("My Brand")
            }]
        );
        // Image MIME types from the extension; jpg is jpeg.
        assert!(fill(
            &spec(r#"[{"id":1,"required":1,"img":{"mimes":["image/png"]}}]"#),
            &cr
        )
        .is_none());
        assert!(fill(
            &spec(r#"[{"id":1,"required":1,"img":{"mimes":["image/jpg"]}}]"#),
            &cr
        )
        .is_some());
        // A required video asset: no bid; nothing fillable: no bid.
        assert!(fill(
            &spec(r#"[{"id":1,"required":1,"video":{}},{"id":2,"title":{}}]"#),
            &cr
        )
        .is_none());
        assert!(fill(&spec(r#"[{"id":1,"data":{"type":3}}]"#), &cr).is_none());
    }

    #[test]
    fn versions_and_trackers() {
        let cr = creative();
        let s = NativeSpec::parse_str(
            r#"{"native":{"ver":"1.0","assets":[{"id":0,"title":{}}]}}"#,
            None,
        )
        .unwrap();
        let adm: Value = serde_json::from_str(&render(&s, &cr, "I", "C")).unwrap();
        assert_eq!(adm["native"]["assets"][0]["id"], 0);
        assert_eq!(adm["native"]["imptrackers"], json!(["I"]));
        let s = NativeSpec::parse_str(
            r#"{"ver":"1.2","assets":[{"id":0,"title":{}}],"eventtrackers":[{"event":1,"methods":[1]}]}"#,
            None,
        )
        .unwrap();
        let adm: Value = serde_json::from_str(&render(&s, &cr, "I", "C")).unwrap();
        assert!(adm.get("native").is_none() && adm.get("imptrackers").is_none());
        assert_eq!(
            adm["eventtrackers"],
            json!([{"event":1,"method":1,"url":"I"}])
        );
    }
}
