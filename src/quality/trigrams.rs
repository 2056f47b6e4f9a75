//! A necessary condition for the bot patterns, checked before the pattern
//! automaton: each pattern must contain some run of literal bytes (`bot`,
//! `crawler`, `http` in `http[s]?://`), so a user agent holding none of
//! the patterns' chosen three-byte pieces, compared case-insensitively,
//! matches none of them and the automaton need not read it. A browser's
//! user agent is told apart in one pass over its bytes, a table lookup
//! each: the full automaton runs only on a hit (nearly every bot, a few
//! browsers) and on every user agent for the patterns without such a run.
//!
//! The answer is the automaton's in every case (the filter only skips runs
//! whose outcome it has proved); which piece stands for a pattern only
//! changes how often it hits, so each pattern is given the piece rarest in
//! typical browser user agents (`COMMON`).

use regex_syntax::hir::{Hir, HirKind};

/// Bits of the table index: three 5-bit byte classes. The pieces that may
/// occur anywhere are a byte per index (32 KB, of which a browser's user
/// agent touches a few lines): a byte load and an OR per position, 1.4-2.1x
/// faster than testing a bit of a 4 KB table (a scratch program over the
/// 2,072 browser fixtures, 2026-11-30; README, Benchmarks).
const BITS: u32 = 15;

/// Browser user agents the pieces are chosen to avoid (frequent browsers,
/// platforms and in-app views, old and new): a piece these hold is passed
/// over for a rarer one; so is one of common pairs and letters.
const COMMON: &str = "mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) chrome/120.0.0.0 safari/537.36 \
mozilla/5.0 (macintosh; intel mac os x 10_15_7) applewebkit/605.1.15 (khtml, like gecko) version/17.1 safari/605.1.15 \
mozilla/5.0 (iphone; cpu iphone os 17_1 like mac os x) applewebkit/605.1.15 (khtml, like gecko) version/17.1 mobile/15e148 safari/604.1 \
mozilla/5.0 (linux; android 10; k) applewebkit/537.36 (khtml, like gecko) chrome/120.0.0.0 mobile safari/537.36 \
mozilla/5.0 (windows nt 10.0; win64; x64; rv:121.0) gecko/20100101 firefox/121.0 \
mozilla/5.0 (x11; linux x86_64) applewebkit/537.36 (khtml, like gecko) chrome/120.0.0.0 safari/537.36 edg/120.0.0.0 \
mozilla/5.0 (linux; android 13; sm-s918b) applewebkit/537.36 (khtml, like gecko) samsungbrowser/23.0 chrome/115.0.0.0 mobile safari/537.36 \
mozilla/5.0 (ipad; cpu os 16_6 like mac os x) applewebkit/605.1.15 (khtml, like gecko) crios/120.0.6099.119 mobile/15e148 safari/604.1 \
mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) chrome/119.0.0.0 safari/537.36 opr/105.0.0.0 \
dalvik/2.1.0 (linux; u; android 12; pixel 6 build/sq3a.220705.004) \
mozilla/5.0 (linux; u; android 4.0.4; en-us; gt-i9300 build/imm76d) applewebkit/534.30 (khtml, like gecko) version/4.0 mobile safari/534.30 \
opera/9.80 (windows nt 6.1; wow64) presto/2.12.388 version/12.16 \
mozilla/5.0 (compatible; msie 10.0; windows nt 6.1; trident/6.0) \
mozilla/5.0 (windows nt 6.1; wow64; trident/7.0; rv:11.0) like gecko \
mozilla/5.0 (linux; android 9; sm-g960f build/ppr1.180610.011; wv) applewebkit/537.36 (khtml, like gecko) version/4.0 chrome/74.0.3729.157 mobile safari/537.36 \
mozilla/5.0 (iphone; cpu iphone os 12_1 like mac os x) applewebkit/605.1.15 (khtml, like gecko) mobile/16b92 [fban/fbios;fbdv/iphone10,6;fbmd/iphone;fbsn/ios;fbsv/12.1;fbss/3;fbcr/verizon;fbid/phone;fblc/en_us;fbop/5] \
mozilla/5.0 (x11; ubuntu; linux x86_64; rv:109.0) gecko/20100101 firefox/115.0 \
mozilla/5.0 (x11; cros x86_64 14541.0.0) applewebkit/537.36 (khtml, like gecko) chrome/120.0.0.0 safari/537.36 \
mozilla/5.0 (smart-tv; linux; tizen 6.0) applewebkit/537.36 (khtml, like gecko) samsungbrowser/4.0 chrome/76.0.3809.146 tv safari/537.36 \
mozilla/5.0 (windows phone 10.0; android 6.0.1; microsoft; lumia 950) applewebkit/537.36 (khtml, like gecko) chrome/52.0.2743.116 mobile safari/537.36 edge/15.15063 \
mozilla/5.0 (linux; u; android 8.1.0; en-us; cph1803 build/opm1.171019.026) applewebkit/537.36 (khtml, like gecko) version/4.0 chrome/57.0.2987.108 ucbrowser/13.4.0.1306 mobile safari/537.36 \
mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) chrome/118.0.0.0 yabrowser/23.11.0.0 safari/537.36 \
instagram 309.0.0.40.113 android (33/13; 420dpi; 1080x2400; samsung; sm-a546b; a54x; s5e8835; en_us; 541635890)";

/// The pieces of a pattern list, as a bit per possible piece.
#[derive(Debug, Clone)]
pub struct Trigrams {
    /// Byte -> 5-bit class (ASCII letters folded); 0 for bytes no piece holds.
    class: [u8; 256],
    /// One byte per class triple, 1 for pieces that may occur anywhere.
    anywhere: Box<[u8; 1 << BITS]>,
    /// The same for pieces that must open the user agent (`^curl`).
    start: Box<[u64; 1 << (BITS - 6)]>,
}

impl Trigrams {
    /// The pieces for `patterns` (as parsed without case folding), and the
    /// indexes of the patterns that have none (to be checked every time).
    pub fn new(patterns: &[&str]) -> (Trigrams, Vec<usize>) {
        let rarity = Rarity::new(COMMON.as_bytes());
        let mut chosen: Vec<([u8; 3], bool)> = Vec::new();
        let mut without = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(p)
                .ok();
            let mut runs = Vec::new();
            let opening = hir.as_ref().and_then(opening_run);
            if let Some(h) = &hir {
                required_runs(h, &mut runs);
            }
            let piece = |w: &[u8]| [fold(w[0]), fold(w[1]), fold(w[2])];
            let best = match opening {
                // Where the match must start is the sharpest test.
                Some(r) if r.len() >= 3 => Some((piece(&r), true)),
                _ => runs
                    .iter()
                    .flat_map(|r| r.windows(3))
                    .map(piece)
                    .min_by_key(|t| rarity.score(t))
                    .map(|t| (t, false)),
            };
            match best {
                Some(t) => chosen.push(t),
                None => without.push(i),
            }
        }
        // Letters have a class each; other bytes share the rest (a shared
        // class only adds hits, never loses one).
        let mut class = [0u8; 256];
        for b in chosen.iter().flat_map(|(t, _)| t) {
            class[usize::from(*b)] = match b {
                b'a'..=b'z' => b - b'a' + 1,
                _ => 27 + b % 5,
            };
        }
        // ASCII letters compare case-insensitively, as the automaton does.
        for b in b'a'..=b'z' {
            class[usize::from(b.to_ascii_uppercase())] = class[usize::from(b)];
        }
        let mut anywhere = Box::new([0u8; 1 << BITS]);
        let mut start = Box::new([0u64; 1 << (BITS - 6)]);
        for (t, opening) in &chosen {
            let i = index(&class, t[0], t[1], t[2]);
            if *opening {
                start[i >> 6] |= 1 << (i & 63);
            } else {
                anywhere[i] = 1;
            }
        }
        (
            Trigrams {
                class,
                anywhere,
                start,
            },
            without,
        )
    }

    /// Whether `ua` holds one of the pieces (case-insensitively). False
    /// proves that no pattern with a piece matches it.
    #[inline]
    pub fn hit(&self, ua: &[u8]) -> bool {
        if let [a, b, c, ..] = ua {
            let i = index(&self.class, *a, *b, *c);
            if self.start[i >> 6] & (1 << (i & 63)) != 0 {
                return true;
            }
        }
        // The classes of the two bytes before (class 0, which no piece
        // has, in front of the first). Each index is built afresh from
        // three classes, not shifted on from the last one: no step waits
        // on the one before, so the loads of several bytes overlap. Eight
        // positions are ORed before one test (a piece is rare in a
        // browser's user agent: one branch per eight bytes, not per byte).
        let (mut p, mut q) = (0usize, 0usize);
        let mut step = |block: &[u8]| {
            let mut acc = 0u8;
            for &b in block {
                let c = usize::from(self.class[usize::from(b)]);
                acc |= self.anywhere[(p << 10) | (q << 5) | c];
                (p, q) = (q, c);
            }
            acc != 0
        };
        let mut blocks = ua.chunks_exact(8);
        if blocks.any(&mut step) {
            return true;
        }
        step(blocks.remainder())
    }
}

/// ASCII lower case (the automaton folds ASCII only).
fn fold(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

fn index(class: &[u8; 256], a: u8, b: u8, c: u8) -> usize {
    (usize::from(class[usize::from(a)]) << 10)
        | (usize::from(class[usize::from(b)]) << 5)
        | usize::from(class[usize::from(c)])
}

/// How common pieces, pairs and bytes are in browser user agents.
struct Rarity {
    pieces: std::collections::HashMap<[u8; 3], u64>,
    pairs: std::collections::HashMap<[u8; 2], u64>,
    bytes: [u64; 256],
}

impl Rarity {
    fn new(text: &[u8]) -> Rarity {
        let text: Vec<u8> = text.iter().map(|&b| fold(b)).collect();
        let mut r = Rarity {
            pieces: Default::default(),
            pairs: Default::default(),
            bytes: [0; 256],
        };
        for w in text.windows(3) {
            *r.pieces.entry([w[0], w[1], w[2]]).or_insert(0) += 1;
        }
        for w in text.windows(2) {
            *r.pairs.entry([w[0], w[1]]).or_insert(0) += 1;
        }
        for &b in &text {
            r.bytes[usize::from(b)] += 1;
        }
        r
    }

    /// Lower is rarer: the piece itself weighs most, then its pairs.
    fn score(&self, t: &[u8; 3]) -> u64 {
        let get3 = self.pieces.get(t).copied().unwrap_or(0);
        let get2 = |p: [u8; 2]| self.pairs.get(&p).copied().unwrap_or(0);
        let bytes: u64 = t.iter().map(|&b| self.bytes[usize::from(b)]).sum();
        get3 * 1_000_000 + (get2([t[0], t[1]]) + get2([t[1], t[2]])) * 1_000 + bytes
    }
}

/// The literal run a match must open with (`^curl/` -> `curl/`), if the
/// pattern is anchored at the start of the text.
fn opening_run(h: &Hir) -> Option<Vec<u8>> {
    let HirKind::Concat(parts) = h.kind() else {
        return None;
    };
    match (parts.first().map(Hir::kind), parts.get(1).map(Hir::kind)) {
        (Some(HirKind::Look(regex_syntax::hir::Look::Start)), Some(HirKind::Literal(l))) => {
            Some(l.0.to_vec())
        }
        _ => None,
    }
}

/// Appends to `runs` byte strings every match of `h` contains (runs of
/// adjacent literals; a sub-expression that must occur adds its own).
/// Missing some only weakens the filter, never its proof.
fn required_runs(h: &Hir, runs: &mut Vec<Vec<u8>>) {
    match h.kind() {
        HirKind::Literal(l) => runs.push(l.0.to_vec()),
        HirKind::Capture(c) => required_runs(&c.sub, runs),
        HirKind::Repetition(r) if r.min >= 1 => required_runs(&r.sub, runs),
        HirKind::Concat(parts) => {
            let mut run = Vec::new();
            for part in parts {
                if let HirKind::Literal(l) = part.kind() {
                    run.extend_from_slice(&l.0);
                    continue;
                }
                if !run.is_empty() {
                    runs.push(std::mem::take(&mut run));
                }
                required_runs(part, runs);
            }
            if !run.is_empty() {
                runs.push(run);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(p: &str) -> Vec<String> {
        let h = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(p)
            .unwrap();
        let mut r = Vec::new();
        required_runs(&h, &mut r);
        r.into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect()
    }

    #[test]
    fn the_required_literals_of_a_pattern_are_found() {
        assert_eq!(runs("http[s]?://"), ["http", "://"]);
        assert_eq!(runs("^[a-z.0-9/ \\-_]*bot"), ["bot"]);
        assert_eq!(runs("[ ]+bot"), [" ", "bot"]);
        assert_eq!(runs("daum(oa)?[ /][0-9]"), ["daum"]);
        assert_eq!(
            runs("^whatsapp\\+?/[0-9\\.]+ [a-z]$"),
            ["whatsapp", "/", " "]
        );
        assert_eq!(runs("bit\\.ly/"), ["bit.ly/"]);
        // An alternation at the top requires no one literal.
        assert!(runs("ab|cd").is_empty());
    }

    #[test]
    fn a_piece_is_found_in_any_case_and_absent_ones_are_not() {
        let (t, without) = Trigrams::new(&["crawler", "^curl", "ab|cd", "x"]);
        assert_eq!(without, [2, 3]);
        assert!(t.hit(b"Mozilla/5.0 (compatible; SomeCRAWLER/1.0)"));
        assert!(t.hit(b"curl/8.4.0"));
        assert!(t.hit(b"CURL"));
        // `^curl` only where the user agent opens with it.
        assert!(!t.hit(b"libcurl/8.4.0"));
        assert!(!t.hit(b"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"));
        assert!(!t.hit(b""));
        assert!(!t.hit(b"cu"));
    }
}
