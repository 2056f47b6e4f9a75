//! `GET /ad`: a publisher's ad request, decided like a bid request and
//! answered with the creative, its markup and its tracking URLs.

use super::{json_error, Api};
use crate::adserve::signing::NoticeKeys;
use crate::adserve::{self, markup, Now, Winner};
use crate::http::{query, Request, Response};
use crate::index::{CreativeFormat, Index};
use crate::openrtb::BidRequest;
use std::borrow::Cow;

impl Api {
    pub(super) fn ad(&self, req: &Request<'_, '_>, resp: &mut Response) {
        let mut st = self.state.borrow_mut();
        let id = format!("ad-{}", st.next_id());
        let br = match ad_request(req, id) {
            Ok(r) => r,
            Err((param, reason)) => {
                json_error(
                    resp,
                    400,
                    serde_json::json!({ "error": "invalid ad request", "param": param, "reason": reason }),
                );
                return;
            }
        };
        let mut cache = self.index.borrow_mut();
        let ix = cache.load();
        let mut d = adserve::decide(ix, &mut st, &br, &self.cfg.bidder, Now::wall());
        self.record(&mut d);
        let Some(w) = d.winners.first() else {
            resp.status = 204;
            return;
        };
        let base = self.cfg.bidder.public_url.trim_end_matches('/');
        let body = ad_answer(ix, &br, w, &d.cur, base, &self.deps.keys);
        resp.set(200, "application/json", body.to_string().as_bytes());
        resp.header("Cache-Control", b"no-store");
    }
}

/// The `/ad` answer for the winner `w` of ad request `br`: the creative,
/// its markup and its tracking URLs, rendered once. The URLs are signed for
/// channel `src=ad`: served directly, the impression itself is charged, at
/// the price signed into it.
fn ad_answer(
    ix: &Index,
    br: &BidRequest<'_>,
    w: &Winner,
    cur: &str,
    base: &str,
    keys: &NoticeKeys,
) -> serde_json::Value {
    let c = ix.at(w.campaign);
    let cr = &c.creatives[w.creative];
    let ids = adserve::response::ids(ix, br, w, cur);
    let t = ids.tracker(keys, "ad");
    serde_json::json!({
        "id": br.id,
        "slot": ids.imp,
        "campaign": c.id,
        "creative": {
            "id": cr.id,
            "format": match cr.format {
                CreativeFormat::Banner => "banner",
                CreativeFormat::Video => "video",
                CreativeFormat::Native => "native",
                CreativeFormat::Audio => "audio",
            },
            "w": w.w,
            "h": w.h,
        },
        "price_cpm": w.price,
        "bid_id": w.bid_id,
        "markup": markup::adm(
            base,
            cr,
            &t,
            c.id,
            &markup::Slot {
                w: w.w,
                h: w.h,
                imp: br.imp.get(w.imp),
                bid: &w.bid_id,
            },
        ),
        "impression_url": markup::notice_url(base, "imp", &t, ""),
        "click_url": markup::notice_url(base, "click", &t, ""),
        "adomain": c.adomain,
    })
}

/// Builds a bid request from a publisher's `GET /ad` query and headers.
/// Returns the offending parameter on error.
fn ad_request(
    req: &Request<'_, '_>,
    id: String,
) -> Result<BidRequest<'static>, (&'static str, String)> {
    use crate::openrtb::{
        App as OApp, Audio, Banner, Data, Device, Geo, Imp, Native, NativeSpec, Segment, Site,
        User, Video,
    };
    let q = req.query;
    let get = |k: &str| {
        query::get(q, k)
            .map(|v| v.into_owned())
            .filter(|v| !v.is_empty())
    };
    let num = |k: &'static str| -> Result<Option<u32>, (&'static str, String)> {
        get(k)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| (k, format!("not a number: {v:?}")))
            })
            .transpose()
    };
    let header = |h: &str| {
        req.header(h)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let slot = get("slot").unwrap_or_else(|| "1".into());
    // The slot is the impression id: it rides in the events (as a request's
    // impression ids do, bounded alike).
    if slot.len() > crate::openrtb::MAX_ID_BYTES {
        return Err((
            "slot",
            format!("longer than {} bytes", crate::openrtb::MAX_ID_BYTES),
        ));
    }
    let mut imp = Imp {
        id: Cow::Owned(slot),
        ..Default::default()
    };
    imp.tagid = imp.id.clone();
    match get("format").as_deref() {
        None | Some("banner") => {
            let (w, h) = (num("w")?, num("h")?);
            if w.is_none() || h.is_none() {
                return Err((
                    "w",
                    "a banner needs w and h (or format=video|audio|native)".into(),
                ));
            }
            imp.banner = Some(Banner {
                w,
                h,
                ..Default::default()
            });
        }
        Some("video") => {
            imp.video = Some(Video {
                w: num("w")?,
                h: num("h")?,
                ..Default::default()
            })
        }
        Some("native") => {
            imp.native = Some(Native {
                spec: Some(NativeSpec::standard()),
                ..Default::default()
            })
        }
        Some("audio") => imp.audio = Some(Audio::default()),
        Some(other) => {
            return Err((
                "format",
                format!("unknown format {other:?}; use banner, video, audio or native"),
            ))
        }
    }
    if let Some(f) = get("floor") {
        imp.bidfloor = f
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or(("floor", format!("not a price: {f:?}")))?;
    }
    let cats: Vec<Cow<'static, str>> = get("cat")
        .map(|c| c.split(',').map(|s| Cow::Owned(s.to_string())).collect())
        .unwrap_or_default();
    let (site, app) = match (get("app"), get("site")) {
        (Some(bundle), _) => (
            None,
            Some(OApp {
                bundle: Cow::Owned(bundle),
                cat: cats,
                ..Default::default()
            }),
        ),
        (None, site) => {
            let domain = site.or_else(|| {
                header("referer").and_then(|r| {
                    r.split("://")
                        .nth(1)
                        .and_then(|h| h.split(['/', ':']).next())
                        .map(str::to_string)
                })
            });
            (
                Some(Site {
                    domain: Cow::Owned(domain.unwrap_or_default()),
                    cat: cats,
                    ..Default::default()
                }),
                None,
            )
        }
    };
    let ua = header("user-agent").unwrap_or_default();
    let sniff_os = if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Android") {
        "Android"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") {
        "OS X"
    } else {
        ""
    };
    let sniff_type = if ua.contains("iPad") || ua.contains("Tablet") {
        5
    } else if ua.contains("Mobile") || ua.contains("iPhone") {
        4
    } else {
        2
    };
    let devicetype = match get("devicetype") {
        Some(v) => Some(
            v.parse::<u8>()
                .map_err(|_| ("devicetype", format!("not a device type: {v:?}")))?,
        ),
        None if !ua.is_empty() => Some(sniff_type),
        None => None,
    };
    let country = get("country")
        .or_else(|| header("x-geo-country"))
        .unwrap_or_default();
    let device = Device {
        ua: Cow::Owned(ua.clone()),
        ip: Cow::Owned(
            header("x-forwarded-for")
                .and_then(|v| v.split(',').next().map(|s| s.trim().to_string()))
                .unwrap_or_default(),
        ),
        os: Cow::Owned(get("os").unwrap_or_else(|| sniff_os.to_string())),
        devicetype,
        geo: Some(Geo {
            country: Cow::Owned(country),
            region: Cow::Owned(get("region").unwrap_or_default()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let uid = get("uid").or_else(|| {
        header("cookie").and_then(|c| {
            c.split(';')
                .find_map(|kv| kv.trim().strip_prefix("uid=").map(str::to_string))
        })
    });
    let segs: Vec<Segment<'static>> = get("segs")
        .map(|s| {
            s.split(',')
                .map(|x| Segment {
                    id: Cow::Owned(x.to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    let user = Some(User {
        id: Cow::Owned(uid.unwrap_or_default()),
        data: vec![Data {
            segment: segs,
            ..Default::default()
        }],
        ..Default::default()
    });
    Ok(BidRequest {
        id: Cow::Owned(id),
        imp: vec![imp],
        site,
        app,
        device: Some(device),
        user,
        test: u8::from(get("test").as_deref() == Some("1")),
        at: 2,
        ..Default::default()
    })
}
