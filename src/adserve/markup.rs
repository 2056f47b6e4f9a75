//! Ad markup (banner HTML, VAST 3.0, native 1.2 JSON) and the notice and
//! tracking URLs placed in it. Every id that goes into a URL is
//! percent-encoded; every value that goes into HTML or XML is escaped.

use crate::http::query::encode_into;
use crate::index::{Creative, CreativeFormat};

/// The ids a notice URL carries.
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    /// Auction (bid request) id, or the `/ad` request id.
    pub auction: &'a str,
    /// Impression id.
    pub imp: &'a str,
    /// Campaign id.
    pub campaign: u64,
    /// Creative id.
    pub creative: &'a str,
    /// Test traffic.
    pub test: bool,
}

/// `{base}/{path}?a=..&i=..&c=..&cr=..[&t=1]&{extra}`. `extra` is appended raw
/// (it carries the exchange's `${...}` macros, which must stay literal).
pub fn notice_url(base: &str, path: &str, ids: &Ids<'_>, extra: &str) -> String {
    let mut u = String::with_capacity(base.len() + 96);
    u.push_str(base);
    u.push('/');
    u.push_str(path);
    u.push_str("?a=");
    encode_into(&mut u, ids.auction);
    u.push_str("&i=");
    encode_into(&mut u, ids.imp);
    u.push_str("&c=");
    u.push_str(&ids.campaign.to_string());
    u.push_str("&cr=");
    encode_into(&mut u, ids.creative);
    if ids.test {
        u.push_str("&t=1");
    }
    if !extra.is_empty() {
        u.push('&');
        u.push_str(extra);
    }
    u
}

/// Escapes for HTML text and attribute values, and XML.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The markup for a creative, with our impression and click trackers.
pub fn adm(base: &str, cr: &Creative, ids: &Ids<'_>, w: Option<u32>, h: Option<u32>) -> String {
    adm_with(base, cr, ids, w, h, "src=rtb")
}

/// As [`adm`], with `imp_extra` appended to the impression tracker.
pub fn adm_with(
    base: &str,
    cr: &Creative,
    ids: &Ids<'_>,
    w: Option<u32>,
    h: Option<u32>,
    imp_extra: &str,
) -> String {
    let imp = notice_url(base, "imp", ids, imp_extra);
    let click = notice_url(base, "click", ids, "");
    let img = cr.image_url.as_deref().unwrap_or_default();
    match cr.format {
        CreativeFormat::Banner => format!(
            "<a href=\"{}\" target=\"_blank\" rel=\"noopener\"><img src=\"{}\" width=\"{}\" height=\"{}\" alt=\"{}\" style=\"border:0\"></a><img src=\"{}\" width=\"1\" height=\"1\" style=\"display:none\" alt=\"\">",
            escape(&click),
            escape(img),
            w.unwrap_or(0),
            h.unwrap_or(0),
            escape(cr.title.as_deref().unwrap_or_default()),
            escape(&imp)
        ),
        CreativeFormat::Video => {
            let d = cr.duration.unwrap_or(0);
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><VAST version=\"3.0\"><Ad id=\"{cid}\"><InLine><AdSystem>adshard</AdSystem><AdTitle>{title}</AdTitle><Impression><![CDATA[{imp}]]></Impression><Creatives><Creative id=\"{crid}\"><Linear><Duration>{hh:02}:{mm:02}:{ss:02}</Duration><VideoClicks><ClickThrough><![CDATA[{click}]]></ClickThrough></VideoClicks><MediaFiles><MediaFile delivery=\"progressive\" type=\"{mime}\" width=\"{w}\" height=\"{h}\"><![CDATA[{media}]]></MediaFile></MediaFiles></Linear></Creative></Creatives></InLine></Ad></VAST>",
                cid = ids.campaign,
                title = escape(cr.title.as_deref().unwrap_or("ad")),
                crid = escape(&cr.id),
                hh = d / 3600,
                mm = d / 60 % 60,
                ss = d % 60,
                mime = escape(cr.mime.as_deref().unwrap_or("video/mp4")),
                w = w.unwrap_or(640),
                h = h.unwrap_or(360),
                media = cr.video_url.as_deref().unwrap_or_default(),
            )
        }
        CreativeFormat::Native => serde_json::json!({
            "native": {
                "ver": "1.2",
                "assets": [
                    { "id": 1, "required": 1, "title": { "text": cr.title.as_deref().unwrap_or_default() } },
                    { "id": 2, "required": 1, "img": { "url": img, "w": cr.w.unwrap_or(1200), "h": cr.h.unwrap_or(627) } },
                    { "id": 3, "data": { "value": cr.description.as_deref().unwrap_or_default() } }
                ],
                "link": { "url": click },
                "imptrackers": [imp]
            }
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_ids_and_keep_macros() {
        let ids = Ids {
            auction: "a&b c",
            imp: "1",
            campaign: 7,
            creative: "cr/1",
            test: true,
        };
        let u = notice_url("http://h:1", "win", &ids, "p=${AUCTION_PRICE}");
        assert_eq!(
            u,
            "http://h:1/win?a=a%26b%20c&i=1&c=7&cr=cr%2F1&t=1&p=${AUCTION_PRICE}"
        );
    }

    #[test]
    fn markup_escapes() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
