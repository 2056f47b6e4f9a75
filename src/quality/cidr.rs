//! IP ranges by tag (`reserved`, `datacenter`, or any word an operator
//! uses): a file of `CIDR tag` lines (`#` comments), IPv4 and IPv6, looked
//! up by binary search over disjoint ranges. Where ranges nest, the more
//! specific wins, so a data-centre block inside a wider one keeps its tag.

use std::net::IpAddr;

/// The shipped ranges: reserved and special-purpose blocks (no data-centre
/// ranges: `deploy/ivt/datacenter-ranges.sh` writes those from the cloud
/// providers' published lists).
pub const DEFAULT: &str = include_str!("../../configs/ivt/ip-ranges.txt");

/// A set of tagged ranges.
#[derive(Debug, Clone)]
pub struct Ranges {
    /// Disjoint, sorted: (first, last, tag index).
    spans: Vec<(u128, u128, u16)>,
    /// The same spans clipped to the IPv4 block, for IPv4 lookups: first
    /// addresses alone (4 bytes a step of the search, where `spans` reads
    /// 48), and beside them (last, tag index).
    v4_first: Vec<u32>,
    v4: Vec<(u32, u16)>,
    /// Per /12 block of IPv4 (4,096 and one more): the first of `v4_first`
    /// at or after its start, so a search covers one block's few spans
    /// instead of all of them (a chain of a dozen dependent loads).
    v4_block: Vec<u32>,
    tags: Vec<String>,
    lines: usize,
}

/// Why a ranges file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RangesError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The IPv4 block on that line (`::ffff:0.0.0.0/96`), first and last.
const V4_FIRST: u128 = 0xffff_u128 << 32;
const V4_LAST: u128 = V4_FIRST | 0xffff_ffff;
/// IPv4 lookups start from the address's /12 block.
const V4_BLOCK_BITS: u32 = 20;
const V4_BLOCKS: usize = 1 << (32 - V4_BLOCK_BITS);

/// An address as a point on one line: IPv4 mapped into IPv6.
fn point(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(v.to_ipv6_mapped()),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn parse_line(line: &str) -> Result<(u128, u128, &str), String> {
    let mut parts = line.split_whitespace();
    let cidr = parts.next().unwrap_or_default();
    let tag = parts.next().ok_or("missing tag (e.g. `datacenter`)")?;
    let (addr, len) = cidr.split_once('/').unwrap_or((cidr, ""));
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("not an IP address: {addr:?}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u32 = if len.is_empty() {
        max
    } else {
        len.parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("bad prefix length {len:?}"))?
    };
    let len = len + if ip.is_ipv4() { 96 } else { 0 };
    let host = if len == 128 { 0 } else { u128::MAX >> len };
    let first = point(ip) & !host;
    Ok((first, first | host, tag))
}

impl Ranges {
    /// Parses a ranges file.
    pub fn parse(text: &str) -> Result<Ranges, RangesError> {
        let mut tags: Vec<String> = Vec::new();
        let mut tag_ix: std::collections::HashMap<String, usize> = Default::default();
        let mut raw: Vec<(u128, u128, u16)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (a, b, tag) = parse_line(line).map_err(|message| RangesError {
                line: i + 1,
                message,
            })?;
            let t = match tag_ix.get(tag) {
                Some(&t) => t,
                None if tags.len() > usize::from(u16::MAX) => {
                    // Spans name their tag in 16 bits.
                    return Err(RangesError {
                        line: i + 1,
                        message: format!("more than {} distinct tags", u32::from(u16::MAX) + 1),
                    });
                }
                None => {
                    tags.push(tag.to_string());
                    tag_ix.insert(tag.to_string(), tags.len() - 1);
                    tags.len() - 1
                }
            };
            raw.push((a, b, t as u16));
        }
        let lines = raw.len();
        let spans = disjoint(raw);
        let (mut v4_first, mut v4) = (Vec::new(), Vec::new());
        for &(a, b, t) in &spans {
            if b < V4_FIRST || a > V4_LAST {
                continue;
            }
            v4_first.push((a.max(V4_FIRST) - V4_FIRST) as u32);
            v4.push(((b.min(V4_LAST) - V4_FIRST) as u32, t));
        }
        let v4_block = (0..=V4_BLOCKS as u64)
            .map(|b| v4_first.partition_point(|&f| u64::from(f) < b << V4_BLOCK_BITS) as u32)
            .collect();
        Ok(Ranges {
            spans,
            v4_first,
            v4,
            v4_block,
            tags,
            lines,
        })
    }

    /// The tag of the most specific range holding `ip`.
    pub fn tag(&self, ip: IpAddr) -> Option<&str> {
        if let IpAddr::V4(v) = ip {
            let p = u32::from(v);
            // Spans before the block start at or before `p`; those after it, after.
            let b = (p >> V4_BLOCK_BITS) as usize;
            let (lo, hi) = (self.v4_block[b] as usize, self.v4_block[b + 1] as usize);
            let i = lo + self.v4_first[lo..hi].partition_point(|&f| f <= p);
            let s = self.v4.get(i.checked_sub(1)?)?;
            return (p <= s.0).then(|| self.tags[usize::from(s.1)].as_str());
        }
        self.spans_tag(point(ip))
    }

    /// `tag` by the general search (every family, as one line of points).
    fn spans_tag(&self, p: u128) -> Option<&str> {
        let i = self.spans.partition_point(|s| s.0 <= p);
        let s = self.spans.get(i.checked_sub(1)?)?;
        (p <= s.1).then(|| self.tags[s.2 as usize].as_str())
    }

    /// Ranges read from the file.
    pub fn len(&self) -> usize {
        self.lines
    }

    /// Whether the file held no range.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

/// Nested or overlapping ranges into disjoint spans, the narrowest range
/// covering each point giving its tag; touching spans of one tag merged.
fn disjoint(mut raw: Vec<(u128, u128, u16)>) -> Vec<(u128, u128, u16)> {
    // Widest first among equal starts, so narrower ones come after (and win).
    raw.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<(u128, u128, u16)> = Vec::new();
    // The ranges open at the cursor, narrowest last (CIDR blocks nest or
    // are apart: they never partly overlap).
    let mut open: Vec<(u128, u128, u16)> = Vec::new();
    let mut cursor = 0u128;
    let emit = |out: &mut Vec<(u128, u128, u16)>, a: u128, b: u128, t: u16| {
        if a > b {
            return;
        }
        match out.last_mut() {
            Some(l) if l.2 == t && l.1.checked_add(1) == Some(a) => l.1 = b,
            _ => out.push((a, b, t)),
        }
    };
    for r in raw {
        // Close what ends before this range starts.
        while let Some(&top) = open.last() {
            if top.1 >= r.0 {
                break;
            }
            emit(&mut out, cursor.max(top.0), top.1, top.2);
            cursor = top.1.saturating_add(1);
            open.pop();
        }
        if let Some(&top) = open.last() {
            if r.0 > cursor {
                emit(&mut out, cursor.max(top.0), r.0 - 1, top.2);
            }
        }
        cursor = cursor.max(r.0);
        if r.1 <= open.last().map_or(u128::MAX, |t| t.1) {
            open.push(r);
        }
    }
    while let Some(top) = open.pop() {
        if top.1 >= cursor {
            emit(&mut out, cursor.max(top.0), top.1, top.2);
            cursor = top.1.saturating_add(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag<'a>(r: &'a Ranges, ip: &str) -> Option<&'a str> {
        r.tag(ip.parse().unwrap())
    }

    #[test]
    fn nested_ranges_the_narrowest_wins() {
        let r = Ranges::parse(
            "# test\n10.0.0.0/8 reserved\n10.1.0.0/16 datacenter\n10.1.2.0/24 office # ours\n11.0.0.1 single\n2001:db8::/32 reserved\n",
        )
        .unwrap();
        assert_eq!(r.len(), 5);
        for (ip, want) in [
            ("9.255.255.255", None),
            ("10.0.0.0", Some("reserved")),
            ("10.0.255.255", Some("reserved")),
            ("10.1.0.0", Some("datacenter")),
            ("10.1.2.7", Some("office")),
            ("10.1.3.0", Some("datacenter")),
            ("10.2.0.0", Some("reserved")),
            ("10.255.255.255", Some("reserved")),
            ("11.0.0.0", None),
            ("11.0.0.1", Some("single")),
            ("11.0.0.2", None),
            ("2001:db8::1", Some("reserved")),
            ("2001:db9::1", None),
        ] {
            assert_eq!(tag(&r, ip), want, "{ip}");
        }
    }

    #[test]
    fn the_shipped_file_holds_the_special_purpose_blocks() {
        let r = Ranges::parse(DEFAULT).unwrap();
        for ip in [
            "10.1.2.3",
            "192.168.0.1",
            "127.0.0.1",
            "100.64.1.1",
            "203.0.113.7",
            "::1",
            "fe80::1",
        ] {
            assert_eq!(tag(&r, ip), Some("reserved"), "{ip}");
        }
        for ip in ["123.145.167.10", "8.8.8.8", "2a00:1450::1"] {
            assert_eq!(tag(&r, ip), None, "{ip}");
        }
    }

    /// The IPv4 table answers as the search over every span does: random
    /// addresses, and each span's edges and the addresses beside them.
    #[test]
    fn ipv4_lookups_agree_with_the_general_search() {
        let r = Ranges::parse(&format!(
            "{DEFAULT}\n::ffff:0:0/100 mapped\n0.0.0.0/1 low\n"
        ))
        .unwrap();
        let mut rng = crate::index::synth::Rng(0x9e37_79b9_7f4a_7c15);
        let mut points: Vec<u32> = (0..200_000).map(|_| rng.bits() as u32).collect();
        for (&a, &(b, _)) in r.v4_first.iter().zip(&r.v4) {
            points.extend([a.wrapping_sub(1), a, b, b.wrapping_add(1)]);
        }
        points.extend([0, u32::MAX]);
        let mut tagged = 0;
        for p in points {
            let ip = IpAddr::V4(p.into());
            let general = r.spans_tag(point(ip));
            assert_eq!(r.tag(ip), general, "{ip}");
            tagged += usize::from(general.is_some());
        }
        assert!(tagged > 1000);
    }

    #[test]
    fn a_file_of_many_tags_is_read_fast_and_more_than_65536_refused() {
        // Tags are looked up by hash (a linear search made this file
        // quadratic), and a span names its tag in 16 bits.
        let lines = |n: u32| -> String {
            (0..n)
                .map(|i| {
                    format!(
                        "{}.{}.{}.0/24 t{i}\n",
                        1 + i / 65536,
                        (i / 256) % 256,
                        i % 256
                    )
                })
                .collect()
        };
        let r = Ranges::parse(&lines(65_536)).unwrap();
        assert_eq!(tag(&r, "2.0.0.1"), None);
        assert_eq!(tag(&r, "1.255.255.9"), Some("t65535"));
        let e = Ranges::parse(&lines(65_537)).unwrap_err();
        assert_eq!(e.line, 65_537);
        assert!(
            e.message.contains("more than 65536 distinct tags"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            Ranges::parse("1.2.3.0/24 dc\n1.2.3.0/33 dc\n")
                .unwrap_err()
                .line,
            2
        );
        assert_eq!(Ranges::parse("nope dc\n").unwrap_err().line, 1);
        assert!(Ranges::parse("1.2.3.0/24\n")
            .unwrap_err()
            .message
            .contains("tag"));
    }
}
