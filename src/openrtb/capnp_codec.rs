//! Cap'n Proto encoding of bid requests and responses (schema/openrtb.capnp),
//! for exchanges that send `Content-Type: application/x-capnp`.
//!
//! Input is untrusted: `ReaderOptions` bound traversal (8 MiB) and nesting,
//! and the decoded request goes through the same [`BidRequest::sanitize`] as
//! JSON, so both encodings are held to the same rules.

use super::lenient::Dropped;
use super::schain::{SChain, SChainNode, Source};
use super::*;
use crate::schema::openrtb_capnp as s;
use capnp::message::{Builder, ReaderOptions};

fn opts() -> ReaderOptions {
    *ReaderOptions::new()
        .traversal_limit_in_words(Some(1 << 20))
        .nesting_limit(16)
}

fn bad(e: capnp::Error) -> RequestError {
    RequestError::new(
        "body",
        format!("malformed Cap'n Proto message: {}", e.extra),
    )
}

fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> Result<Cow<'static, str>, RequestError> {
    let t = t.map_err(bad)?;
    Ok(Cow::Owned(t.to_string().map_err(|_| {
        RequestError::new("body", "text field is not UTF-8")
    })?))
}

fn texts(
    l: capnp::Result<capnp::text_list::Reader<'_>>,
) -> Result<Vec<Cow<'static, str>>, RequestError> {
    let l = l.map_err(bad)?;
    l.iter().map(text).collect()
}

fn nz(v: u32) -> Option<u32> {
    (v != 0).then_some(v)
}

fn geo(g: s::geo::Reader<'_>) -> Result<Geo<'static>, RequestError> {
    Ok(Geo {
        country: text(g.get_country())?,
        region: text(g.get_region())?,
        city: text(g.get_city())?,
    })
}

/// A floor as sent, or none (noted) when negative or not a number.
fn floor(v: f64, what: Dropped) -> f64 {
    if v.is_finite() && v >= 0.0 {
        v
    } else {
        super::lenient::note(what);
        0.0
    }
}

/// Decodes and validates a Cap'n Proto bid request.
pub fn decode_request(body: &[u8]) -> Result<BidRequest<'static>, RequestError> {
    super::lenient::clear();
    let mut slice = body;
    let msg = capnp::serialize::read_message_from_flat_slice(&mut slice, opts()).map_err(bad)?;
    let r = msg.get_root::<s::bid_request::Reader<'_>>().map_err(bad)?;
    let mut imps = Vec::new();
    for i in r.get_imp().map_err(bad)?.iter() {
        let mut imp = Imp {
            id: text(i.get_id())?,
            bidfloor: floor(i.get_bidfloor(), Dropped::ImpBidfloor),
            bidfloorcur: text(i.get_bidfloorcur())?,
            instl: i.get_instl(),
            tagid: text(i.get_tagid())?,
            ..Default::default()
        };
        if imp.bidfloorcur.is_empty() {
            imp.bidfloorcur = Cow::Borrowed("USD");
        }
        if i.has_banner() {
            let b = i.get_banner().map_err(bad)?;
            let format = b
                .get_format()
                .map_err(bad)?
                .iter()
                .map(|f| Format {
                    w: f.get_w(),
                    h: f.get_h(),
                })
                .collect();
            imp.banner = Some(Banner {
                w: nz(b.get_w()),
                h: nz(b.get_h()),
                format,
                pos: Some(b.get_pos()),
                ..Default::default()
            });
        }
        if i.has_video() {
            let v = i.get_video().map_err(bad)?;
            imp.video = Some(Video {
                mimes: texts(v.get_mimes())?,
                w: nz(v.get_w()),
                h: nz(v.get_h()),
                minduration: nz(v.get_minduration()),
                maxduration: nz(v.get_maxduration()),
                protocols: v.get_protocols().map_err(bad)?.iter().collect(),
                rqddurs: v.get_rqddurs().map_err(bad)?.iter().collect(),
                plcmt: (v.get_plcmt() != 0).then_some(v.get_plcmt()),
                ..Default::default()
            });
        }
        if i.has_audio() {
            let a = i.get_audio().map_err(bad)?;
            imp.audio = Some(Audio {
                mimes: texts(a.get_mimes())?,
                minduration: nz(a.get_minduration()),
                maxduration: nz(a.get_maxduration()),
                protocols: a.get_protocols().map_err(bad)?.iter().collect(),
                rqddurs: a.get_rqddurs().map_err(bad)?.iter().collect(),
            });
        }
        imp.secure = (i.get_secure() != 0).then_some(i.get_secure());
        if i.has_native() {
            let n = i.get_native().map_err(bad)?;
            let ver = text(n.get_ver())?;
            imp.native = Some(Native {
                request: serde_json::from_str(&text(n.get_request())?).ok(),
                ver: (!ver.is_empty()).then_some(ver),
                spec: None,
            });
        }
        if i.has_pmp() {
            let p = i.get_pmp().map_err(bad)?;
            let mut deals = Vec::new();
            for d in p.get_deals().map_err(bad)?.iter() {
                let cur = text(d.get_bidfloorcur())?;
                deals.push(Deal {
                    id: text(d.get_id())?,
                    bidfloor: floor(d.get_bidfloor(), Dropped::DealBidfloor),
                    bidfloorcur: if cur.is_empty() {
                        Cow::Borrowed("USD")
                    } else {
                        cur
                    },
                    wseat: texts(d.get_wseat())?,
                    wadomain: texts(d.get_wadomain())?,
                });
            }
            imp.pmp = Some(Pmp {
                private_auction: p.get_private_auction(),
                deals,
            });
        }
        imps.push(imp);
    }
    let site = if r.has_site() {
        let x = r.get_site().map_err(bad)?;
        Some(Site {
            id: text(x.get_id())?,
            domain: text(x.get_domain())?,
            cat: texts(x.get_cat())?,
            page: text(x.get_page())?,
            publisher: Some(Publisher {
                id: text(x.get_publisher_id())?,
            }),
        })
    } else {
        None
    };
    let app = if r.has_app() {
        let x = r.get_app().map_err(bad)?;
        Some(App {
            id: text(x.get_id())?,
            bundle: text(x.get_bundle())?,
            domain: text(x.get_domain())?,
            cat: texts(x.get_cat())?,
            publisher: Some(Publisher {
                id: text(x.get_publisher_id())?,
            }),
        })
    } else {
        None
    };
    let device = if r.has_device() {
        let d = r.get_device().map_err(bad)?;
        Some(Device {
            ua: text(d.get_ua())?,
            ip: text(d.get_ip())?,
            ipv6: text(d.get_ipv6())?,
            ifa: text(d.get_ifa())?,
            devicetype: (d.get_devicetype() != 0).then_some(d.get_devicetype()),
            os: text(d.get_os())?,
            make: text(d.get_make())?,
            model: text(d.get_model())?,
            connectiontype: (d.get_connectiontype() != 0).then_some(d.get_connectiontype()),
            geo: if d.has_geo() {
                Some(geo(d.get_geo().map_err(bad)?)?)
            } else {
                None
            },
            lmt: (d.get_lmt() != 0).then_some(d.get_lmt()),
            dnt: (d.get_dnt() != 0).then_some(d.get_dnt()),
        })
    } else {
        None
    };
    let user = if r.has_user() {
        let u = r.get_user().map_err(bad)?;
        let segment = texts(u.get_segments())?
            .into_iter()
            .map(|id| Segment { id })
            .collect();
        Some(User {
            id: text(u.get_id())?,
            buyeruid: text(u.get_buyeruid())?,
            data: vec![Data {
                id: Cow::Borrowed(""),
                segment,
            }],
            geo: if u.has_geo() {
                Some(geo(u.get_geo().map_err(bad)?)?)
            } else {
                None
            },
            ..Default::default()
        })
    } else {
        None
    };
    let consent = text(r.get_consent())?;
    let user = match user {
        _ if consent.is_empty() => user,
        Some(u) => Some(User { consent, ..u }),
        None => Some(User {
            consent,
            ..Default::default()
        }),
    };
    let mut req = BidRequest {
        id: text(r.get_id())?,
        imp: imps,
        site,
        app,
        device,
        user,
        test: r.get_test(),
        at: r.get_at(),
        tmax: nz(r.get_tmax()),
        wseat: texts(r.get_wseat())?,
        bseat: texts(r.get_bseat())?,
        cur: texts(r.get_cur())?,
        bcat: texts(r.get_bcat())?,
        cattax: (r.get_cattax() != 0).then_some(r.get_cattax()),
        badv: texts(r.get_badv())?,
        bapp: texts(r.get_bapp())?,
        regs: Some(Regs {
            coppa: r.get_coppa(),
            gdpr: (r.get_gdpr() != 0).then_some(r.get_gdpr()),
            us_privacy_opt_out: r.get_us_privacy_opt_out(),
            gpp: text(r.get_gpp())?.into_owned(),
            ..Default::default()
        }),
        source: source(&r)?,
        consent: Default::default(),
    };
    req.sanitize()?;
    Ok(req)
}

fn source(r: &s::bid_request::Reader<'_>) -> Result<Option<Source<'static>>, RequestError> {
    if !r.has_schain_nodes() {
        return Ok(None);
    }
    let mut nodes = Vec::new();
    for n in r.get_schain_nodes().map_err(bad)?.iter() {
        nodes.push(SChainNode {
            asi: text(n.get_asi())?,
            sid: text(n.get_sid())?,
            hp: n.get_hp(),
            domain: text(n.get_domain())?,
        });
    }
    Ok(Some(Source {
        schain: Some(SChain {
            complete: r.get_schain_complete(),
            nodes,
        }),
        ext: None,
    }))
}

fn set_nums<T: capnp::private::layout::PrimitiveElement + Copy>(
    mut l: capnp::primitive_list::Builder<'_, T>,
    v: &[T],
) {
    for (i, x) in v.iter().enumerate() {
        l.set(i as u32, *x);
    }
}

fn set_texts<'a>(mut l: capnp::text_list::Builder<'a>, v: &[impl AsRef<str>]) {
    for (i, t) in v.iter().enumerate() {
        l.set(i as u32, t.as_ref());
    }
}

/// Encodes a bid request (for clients, tests and benchmarks).
pub fn encode_request(req: &BidRequest<'_>, out: &mut Vec<u8>) {
    let mut msg = Builder::new_default();
    let mut r = msg.init_root::<s::bid_request::Builder<'_>>();
    r.set_id(req.id.as_ref());
    r.set_test(req.test);
    r.set_at(req.at);
    r.set_tmax(req.tmax.unwrap_or(0));
    r.set_cattax(req.cattax.unwrap_or(0));
    r.set_coppa(req.regs.as_ref().map_or(0, |x| x.coppa));
    // The 2.5 `ext` locations travel in the 2.6 fields.
    let regs = req.regs.clone().unwrap_or_default();
    r.set_gpp(regs.gpp.as_str());
    if let Some(u) = &req.user {
        let ext = u.ext.as_ref().map_or("", |e| &e.consent);
        r.set_consent(if u.consent.is_empty() {
            ext
        } else {
            &u.consent
        });
    }
    let ext = regs.ext.unwrap_or_default();
    r.set_gdpr(regs.gdpr.or(ext.gdpr).unwrap_or(u8::from(regs.gpp_tcf)));
    r.set_us_privacy_opt_out(regs.us_privacy_opt_out || ext.us_privacy_opt_out);
    if let Some(sc) = req.schain() {
        r.set_schain_complete(sc.complete);
        let mut nl = r.reborrow().init_schain_nodes(sc.nodes.len() as u32);
        for (j, n) in sc.nodes.iter().enumerate() {
            let mut x = nl.reborrow().get(j as u32);
            x.set_asi(n.asi.as_ref());
            x.set_sid(n.sid.as_ref());
            x.set_hp(n.hp);
            x.set_domain(n.domain.as_ref());
        }
    }
    set_texts(r.reborrow().init_wseat(req.wseat.len() as u32), &req.wseat);
    set_texts(r.reborrow().init_bseat(req.bseat.len() as u32), &req.bseat);
    set_texts(r.reborrow().init_cur(req.cur.len() as u32), &req.cur);
    set_texts(r.reborrow().init_bcat(req.bcat.len() as u32), &req.bcat);
    set_texts(r.reborrow().init_badv(req.badv.len() as u32), &req.badv);
    set_texts(r.reborrow().init_bapp(req.bapp.len() as u32), &req.bapp);
    let mut imps = r.reborrow().init_imp(req.imp.len() as u32);
    for (k, imp) in req.imp.iter().enumerate() {
        let mut i = imps.reborrow().get(k as u32);
        i.set_id(imp.id.as_ref());
        i.set_bidfloor(imp.bidfloor);
        i.set_bidfloorcur(imp.bidfloorcur.as_ref());
        i.set_instl(imp.instl);
        i.set_tagid(imp.tagid.as_ref());
        if let Some(b) = &imp.banner {
            let mut bb = i.reborrow().init_banner();
            bb.set_w(b.w.unwrap_or(0));
            bb.set_h(b.h.unwrap_or(0));
            bb.set_pos(b.pos.unwrap_or(0));
            let mut fl = bb.init_format(b.format.len() as u32);
            for (j, f) in b.format.iter().enumerate() {
                let mut x = fl.reborrow().get(j as u32);
                x.set_w(f.w);
                x.set_h(f.h);
            }
        }
        if let Some(v) = &imp.video {
            let mut vb = i.reborrow().init_video();
            vb.set_w(v.w.unwrap_or(0));
            vb.set_h(v.h.unwrap_or(0));
            vb.set_minduration(v.minduration.unwrap_or(0));
            vb.set_maxduration(v.maxduration.unwrap_or(0));
            set_texts(vb.reborrow().init_mimes(v.mimes.len() as u32), &v.mimes);
            vb.set_plcmt(v.plcmt().unwrap_or(0));
            set_nums(
                vb.reborrow().init_rqddurs(v.rqddurs.len() as u32),
                &v.rqddurs,
            );
            set_nums(vb.init_protocols(v.protocols.len() as u32), &v.protocols);
        }
        if let Some(a) = &imp.audio {
            let mut ab = i.reborrow().init_audio();
            ab.set_minduration(a.minduration.unwrap_or(0));
            ab.set_maxduration(a.maxduration.unwrap_or(0));
            set_texts(ab.reborrow().init_mimes(a.mimes.len() as u32), &a.mimes);
            set_nums(
                ab.reborrow().init_rqddurs(a.rqddurs.len() as u32),
                &a.rqddurs,
            );
            set_nums(ab.init_protocols(a.protocols.len() as u32), &a.protocols);
        }
        i.set_secure(imp.secure.unwrap_or(0));
        if let Some(n) = &imp.native {
            let mut nb = i.reborrow().init_native();
            let text = match (&n.spec, &n.request) {
                (Some(spec), _) => spec.to_json(),
                (None, Some(v)) => v.to_string(),
                (None, None) => String::new(),
            };
            nb.set_request(text.as_str());
            nb.set_ver(n.ver.as_deref().unwrap_or(""));
        }
        if let Some(p) = &imp.pmp {
            let mut pb = i.reborrow().init_pmp();
            pb.set_private_auction(p.private_auction);
            let mut dl = pb.init_deals(p.deals.len() as u32);
            for (j, d) in p.deals.iter().enumerate() {
                let mut db = dl.reborrow().get(j as u32);
                db.set_id(d.id.as_ref());
                db.set_bidfloor(d.bidfloor);
                db.set_bidfloorcur(d.bidfloorcur.as_ref());
                set_texts(db.reborrow().init_wseat(d.wseat.len() as u32), &d.wseat);
                set_texts(db.init_wadomain(d.wadomain.len() as u32), &d.wadomain);
            }
        }
    }
    if let Some(x) = &req.site {
        let mut sb = r.reborrow().init_site();
        sb.set_id(x.id.as_ref());
        sb.set_domain(x.domain.as_ref());
        sb.set_page(x.page.as_ref());
        sb.set_publisher_id(x.publisher.as_ref().map_or("", |p| p.id.as_ref()));
        set_texts(sb.init_cat(x.cat.len() as u32), &x.cat);
    }
    if let Some(x) = &req.app {
        let mut ab = r.reborrow().init_app();
        ab.set_id(x.id.as_ref());
        ab.set_bundle(x.bundle.as_ref());
        ab.set_domain(x.domain.as_ref());
        ab.set_publisher_id(x.publisher.as_ref().map_or("", |p| p.id.as_ref()));
        set_texts(ab.init_cat(x.cat.len() as u32), &x.cat);
    }
    if let Some(d) = &req.device {
        let mut db = r.reborrow().init_device();
        db.set_ua(d.ua.as_ref());
        db.set_ip(d.ip.as_ref());
        db.set_ipv6(d.ipv6.as_ref());
        db.set_ifa(d.ifa.as_ref());
        db.set_devicetype(d.devicetype.unwrap_or(0));
        db.set_os(d.os.as_ref());
        db.set_make(d.make.as_ref());
        db.set_model(d.model.as_ref());
        db.set_connectiontype(d.connectiontype.unwrap_or(0));
        db.set_lmt(d.lmt.unwrap_or(0));
        db.set_dnt(d.dnt.unwrap_or(0));
        if let Some(g) = &d.geo {
            let mut gb = db.init_geo();
            gb.set_country(g.country.as_ref());
            gb.set_region(g.region.as_ref());
            gb.set_city(g.city.as_ref());
        }
    }
    if let Some(u) = &req.user {
        let mut ub = r.reborrow().init_user();
        ub.set_id(u.id.as_ref());
        ub.set_buyeruid(u.buyeruid.as_ref());
        let segs: Vec<&str> = u
            .data
            .iter()
            .flat_map(|d| d.segment.iter().map(|s| s.id.as_ref()))
            .collect();
        set_texts(ub.reborrow().init_segments(segs.len() as u32), &segs);
        if let Some(g) = &u.geo {
            let mut gb = ub.init_geo();
            gb.set_country(g.country.as_ref());
            gb.set_region(g.region.as_ref());
            gb.set_city(g.city.as_ref());
        }
    }
    // Writing into a Vec cannot fail.
    let _ = capnp::serialize::write_message(out, &msg);
}

/// Encodes a bid response.
pub fn encode_response(resp: &BidResponse, out: &mut Vec<u8>) {
    let mut msg = Builder::new_default();
    let mut r = msg.init_root::<s::bid_response::Builder<'_>>();
    r.set_id(&*resp.id);
    r.set_bidid(&*resp.bidid);
    r.set_cur(&*resp.cur);
    let mut sl = r.init_seatbid(resp.seatbid.len() as u32);
    for (i, sb) in resp.seatbid.iter().enumerate() {
        let mut x = sl.reborrow().get(i as u32);
        x.set_seat(&*sb.seat);
        let mut bl = x.init_bid(sb.bid.len() as u32);
        for (j, b) in sb.bid.iter().enumerate() {
            let mut y = bl.reborrow().get(j as u32);
            y.set_id(&*b.id);
            y.set_impid(&*b.impid);
            y.set_price(b.price);
            y.set_nurl(b.nurl.as_str());
            y.set_burl(b.burl.as_str());
            y.set_lurl(b.lurl.as_str());
            y.set_adm(b.adm.as_str());
            y.set_cid(b.cid.as_str());
            y.set_crid(&*b.crid);
            y.set_cattax(b.cattax.unwrap_or(0));
            y.set_w(b.w.unwrap_or(0));
            y.set_h(b.h.unwrap_or(0));
            y.set_dealid(b.dealid.as_deref().unwrap_or(""));
            y.set_mtype(b.mtype);
            set_texts(
                y.reborrow().init_adomain(b.adomain.len() as u32),
                &b.adomain,
            );
            set_texts(y.init_cat(b.cat.len() as u32), &b.cat);
        }
    }
    // Writing into a Vec cannot fail.
    let _ = capnp::serialize::write_message(out, &msg);
}

fn rtext(t: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<String> {
    t?.to_string()
        .map_err(|e| capnp::Error::failed(e.to_string()))
}

/// Decodes a bid response (for clients and tests).
pub fn decode_response(body: &[u8]) -> capnp::Result<BidResponse<'static>> {
    let mut slice = body;
    let msg = capnp::serialize::read_message_from_flat_slice(&mut slice, opts())?;
    let r = msg.get_root::<s::bid_response::Reader<'_>>()?;
    let mut seatbid = Vec::new();
    for sb in r.get_seatbid()?.iter() {
        let mut bids = Vec::new();
        for b in sb.get_bid()?.iter() {
            let list =
                |l: capnp::Result<capnp::text_list::Reader<'_>>| -> capnp::Result<Vec<String>> {
                    l?.iter().map(rtext).collect()
                };
            let dealid = rtext(b.get_dealid())?;
            bids.push(Bid {
                id: rtext(b.get_id())?.into(),
                impid: rtext(b.get_impid())?.into(),
                price: b.get_price(),
                nurl: rtext(b.get_nurl())?,
                burl: rtext(b.get_burl())?,
                lurl: rtext(b.get_lurl())?,
                adm: rtext(b.get_adm())?,
                adomain: list(b.get_adomain())?.into(),
                cid: rtext(b.get_cid())?,
                crid: rtext(b.get_crid())?.into(),
                cat: list(b.get_cat())?.into(),
                cattax: (b.get_cattax() != 0).then_some(b.get_cattax()),
                w: nz(b.get_w()),
                h: nz(b.get_h()),
                dealid: (!dealid.is_empty()).then_some(dealid.into()),
                mtype: b.get_mtype(),
            });
        }
        seatbid.push(SeatBid {
            seat: rtext(sb.get_seat())?.into(),
            bid: bids,
        });
    }
    Ok(BidResponse {
        id: rtext(r.get_id())?.into(),
        seatbid,
        bidid: rtext(r.get_bidid())?.into(),
        cur: rtext(r.get_cur())?.into(),
    })
}

#[cfg(test)]
mod tests;
