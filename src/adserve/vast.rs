//! Video and audio markup: which VAST (or DAAST) version an impression's
//! player takes, from its `protocols` (OpenRTB list 5.8 / 2.6 list
//! "Creative Subtypes - Audio/Video"), and the inline document in it.
//!
//! We serve inline ads only, so a wrapper protocol is read as its version
//! (a player that unwraps VAST 3.0 plays 3.0 inline). The highest version
//! offered that we write wins: VAST 2.0, 3.0, 4.0, 4.1, 4.2; DAAST 1.0 only
//! for audio and only when no VAST version is offered. A list naming only
//! VAST 1.0 gets no bid; an empty list gets VAST 3.0.

use crate::index::Creative;
use std::fmt::Write as _;

use super::markup::escape;

/// A markup version we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vast {
    /// DAAST 1.0 (audio only; ranks below every VAST).
    Daast1,
    /// VAST 2.0.
    V2,
    /// VAST 3.0.
    V3,
    /// VAST 4.0 (`UniversalAdId` required).
    V4_0,
    /// VAST 4.1 (`AdServingId` required, audio by MIME type).
    V4_1,
    /// VAST 4.2.
    V4_2,
}

impl Vast {
    /// The version for a player offering `protocols` (`None`: none we write).
    pub fn for_protocols(protocols: &[u8], audio: bool) -> Option<Vast> {
        if protocols.is_empty() {
            return Some(Vast::V3);
        }
        protocols
            .iter()
            .filter_map(|p| match p {
                2 | 5 => Some(Vast::V2),
                3 | 6 => Some(Vast::V3),
                7 | 8 => Some(Vast::V4_0),
                11 | 12 => Some(Vast::V4_1),
                13 | 14 => Some(Vast::V4_2),
                9 | 10 if audio => Some(Vast::Daast1),
                _ => None,
            })
            .max()
    }

    /// The `version` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Vast::Daast1 => "1.0",
            Vast::V2 => "2.0",
            Vast::V3 => "3.0",
            Vast::V4_0 => "4.0",
            Vast::V4_1 => "4.1",
            Vast::V4_2 => "4.2",
        }
    }
}

/// What goes into one document besides the creative.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    /// Version to write.
    pub version: Vast,
    /// Campaign id (the `Ad` id).
    pub campaign: u64,
    /// Our bid id (the 4.1+ `AdServingId`).
    pub serving_id: &'a str,
    /// Impression pixel URL.
    pub imp: &'a str,
    /// Click URL.
    pub click: &'a str,
    /// Player size (video).
    pub w: u32,
    /// Player height (video).
    pub h: u32,
}

/// The inline document for a video or audio creative.
pub fn render(d: &Doc<'_>, cr: &Creative, audio: bool) -> String {
    let dur = cr.duration.unwrap_or(0);
    let (media, mime) = if audio {
        (
            cr.audio_url.as_deref(),
            cr.mime.as_deref().unwrap_or("audio/mpeg"),
        )
    } else {
        (
            cr.video_url.as_deref(),
            cr.mime.as_deref().unwrap_or("video/mp4"),
        )
    };
    let media = media.unwrap_or_default();
    let title = escape(cr.title.as_deref().unwrap_or("ad"));
    let crid = escape(&cr.id);
    let v4 = d.version >= Vast::V4_0;
    let mut o = String::with_capacity(640 + d.imp.len() + d.click.len() + media.len());
    o.push_str("<?xml version='1.0' encoding='UTF-8'?>");
    if d.version == Vast::Daast1 {
        o.push_str("<DAAST version='1.0'>");
    } else if v4 {
        let _ = write!(
            o,
            "<VAST version='{}' xmlns='http://www.iab.com/VAST'>",
            d.version.as_str()
        );
    } else {
        let _ = write!(o, "<VAST version='{}'>", d.version.as_str());
    }
    let _ = write!(
        o,
        "<Ad id='{}'><InLine><AdSystem>adshard</AdSystem><AdTitle>{title}</AdTitle>",
        d.campaign
    );
    if d.version >= Vast::V4_1 {
        o.push_str("<AdServingId>");
        o.push_str(&escape(d.serving_id));
        o.push_str("</AdServingId>");
    }
    let _ = write!(
        o,
        "<Impression id='adshard'><![CDATA[{}]]></Impression><Creatives><Creative id='{crid}'>",
        d.imp
    );
    if v4 {
        let _ = write!(
            o,
            "<UniversalAdId idRegistry='adshard'>{crid}</UniversalAdId>"
        );
    }
    let _ = write!(
        o,
        "<Linear><Duration>{:02}:{:02}:{:02}</Duration>",
        dur / 3600,
        dur / 60 % 60,
        dur % 60
    );
    let clicks = |o: &mut String| {
        let tag = if d.version == Vast::Daast1 {
            "AudioInteractions"
        } else {
            "VideoClicks"
        };
        let _ = write!(
            o,
            "<{tag}><ClickThrough><![CDATA[{}]]></ClickThrough></{tag}>",
            d.click
        );
    };
    // VAST 2 and 3 list clicks before media files, 4.x after.
    if !v4 {
        clicks(&mut o);
    }
    let _ = write!(
        o,
        "<MediaFiles><MediaFile delivery='progressive' type='{}'",
        escape(mime)
    );
    if !audio {
        let _ = write!(o, " width='{}' height='{}'", d.w, d.h);
    } else if d.version < Vast::V4_1 && d.version != Vast::Daast1 {
        // Required attributes before 4.1, meaningless for audio.
        o.push_str(" width='0' height='0'");
    }
    let _ = write!(o, "><![CDATA[{media}]]></MediaFile></MediaFiles>");
    if v4 {
        clicks(&mut o);
    }
    o.push_str("</Linear></Creative></Creatives></InLine></Ad>");
    o.push_str(if d.version == Vast::Daast1 {
        "</DAAST>"
    } else {
        "</VAST>"
    });
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::CreativeFormat;

    #[test]
    fn the_version_comes_from_protocols() {
        let v = |p: &[u8], audio| Vast::for_protocols(p, audio);
        assert_eq!(v(&[], false), Some(Vast::V3));
        assert_eq!(v(&[2, 3, 5, 6], false), Some(Vast::V3));
        assert_eq!(v(&[7], false), Some(Vast::V4_0));
        assert_eq!(v(&[2, 3, 7, 8, 11, 12, 13, 14], false), Some(Vast::V4_2));
        assert_eq!(
            v(&[6], false),
            Some(Vast::V3),
            "a wrapper means its version"
        );
        assert_eq!(v(&[1, 4], false), None, "VAST 1.0 only");
        assert_eq!(v(&[9, 10], false), None, "DAAST is audio");
        assert_eq!(v(&[9, 10], true), Some(Vast::Daast1));
        assert_eq!(v(&[9, 11], true), Some(Vast::V4_1));
        assert_eq!(v(&[200], false), None);
    }

    #[test]
    fn documents_per_version() {
        let cr = Creative {
            id: "v<1".into(),
            format: CreativeFormat::Video,
            video_url: Some("https://cdn/v.mp4".into()),
            audio_url: Some("https://cdn/a.mp3".into()),
            duration: Some(75),
            ..Default::default()
        };
        let doc = |version| Doc {
            version,
            campaign: 7,
            serving_id: "b-1",
            imp: "https://h/imp?a=1&b=2",
            click: "https://h/click",
            w: 640,
            h: 360,
        };
        let v3 = render(&doc(Vast::V3), &cr, false);
        assert!(
            v3.contains("<VAST version='3.0'>") && v3.contains("<Duration>00:01:15</Duration>")
        );
        assert!(v3.contains("<Creative id='v&lt;1'>") && !v3.contains("UniversalAdId"));
        assert!(v3.contains("width='640' height='360'><![CDATA[https://cdn/v.mp4]]>"));
        let v42 = render(&doc(Vast::V4_2), &cr, false);
        assert!(v42.starts_with("<?xml version='1.0' encoding='UTF-8'?><VAST version='4.2' xmlns="));
        assert!(v42.contains("<AdServingId>b-1</AdServingId>"));
        assert!(v42.contains("<UniversalAdId idRegistry='adshard'>v&lt;1</UniversalAdId>"));
        assert!(v42.find("</MediaFiles>") < v42.find("<VideoClicks>"));
        let a = render(&doc(Vast::V4_1), &cr, true);
        assert!(
            a.contains("type='audio/mpeg'><![CDATA[https://cdn/a.mp3]]>"),
            "{a}"
        );
        let d = render(&doc(Vast::Daast1), &cr, true);
        assert!(d.contains("<DAAST version='1.0'>") && d.ends_with("</DAAST>"));
        assert!(d.contains("<AudioInteractions><ClickThrough>"));
    }
}
