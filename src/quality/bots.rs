//! Known crawlers and bots by user agent: one case-insensitive regular
//! expression built from a pattern list (one pattern per line, `#`
//! comments). The shipped list (`configs/ivt/bots.txt`, compiled in) is the
//! `isbot` project's (MIT, `configs/ivt/LICENSE-bots`), itself kept from
//! the omrilotan/isbot list; `ivt.bots_file` points at an editable copy,
//! reloaded when it changes. A user agent is read by the automaton only
//! when it holds a piece of some pattern (`trigrams`): most browsers' are
//! told apart by one table lookup per byte.

use super::trigrams::Trigrams;
use regex::bytes::{Regex, RegexBuilder};

/// The shipped pattern list.
pub const DEFAULT: &str = include_str!("../../configs/ivt/bots.txt");

/// A compiled pattern list.
#[derive(Debug, Clone)]
pub struct Bots {
    re: Regex,
    /// The filter in front of `re`, and the patterns it cannot speak for
    /// (checked every time).
    filter: (Trigrams, Option<Regex>),
    patterns: usize,
}

/// Why a pattern list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotsError {
    /// A pattern that is not a regular expression.
    #[error("line {line}: {message}")]
    Pattern {
        /// 1-based line.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// No pattern at all.
    #[error("no patterns")]
    Empty,
}

impl Bots {
    /// Compiles a pattern list.
    pub fn new(text: &str) -> Result<Bots, BotsError> {
        let mut alts = Vec::new();
        let mut raw = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let p = line.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            Regex::new(p).map_err(|e| BotsError::Pattern {
                line: i + 1,
                message: e.to_string(),
            })?;
            alts.push(format!("(?:{p})"));
            raw.push(p);
        }
        if alts.is_empty() {
            return Err(BotsError::Empty);
        }
        let re = compile(&alts)?;
        let (pieces, without) = Trigrams::new(&raw);
        let rest: Vec<String> = without.iter().map(|&i| alts[i].clone()).collect();
        let filter = (
            pieces,
            (!rest.is_empty()).then(|| compile(&rest)).transpose()?,
        );
        Ok(Bots {
            re,
            filter,
            patterns: alts.len(),
        })
    }

    /// Whether the user agent is a known bot's.
    pub fn is_bot(&self, ua: &str) -> bool {
        let ua = ua.as_bytes();
        let (pieces, rest) = &self.filter;
        rest.as_ref().is_some_and(|r| r.is_match(ua)) || (pieces.hit(ua) && self.re.is_match(ua))
    }

    /// The pattern automaton's verdict alone (no filter in front).
    #[cfg(test)]
    fn unfiltered(&self, ua: &str) -> bool {
        self.re.is_match(ua.as_bytes())
    }

    /// Patterns in the list.
    pub fn patterns(&self) -> usize {
        self.patterns
    }
}

/// One case-insensitive automaton for the alternatives `alts`.
fn compile(alts: &[String]) -> Result<Regex, BotsError> {
    RegexBuilder::new(&alts.join("|"))
        .case_insensitive(true)
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .map_err(|e| BotsError::Pattern {
            line: 0,
            message: e.to_string().chars().take(200).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(name: &str) -> Vec<String> {
        let p = format!("{}/tests/fixtures/ivt/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_shipped_list_flags_bots_and_spares_browsers() {
        let b = Bots::new(DEFAULT).unwrap();
        assert!(b.patterns() > 300);
        let bots = lines("bot-user-agents.txt");
        let missed: Vec<&String> = bots.iter().filter(|u| !b.is_bot(u)).collect();
        // The isbot project's own bar: its bot fixtures all flagged.
        assert!(
            missed.len() * 1000 <= bots.len(),
            "{} of {} bots missed: {:?}",
            missed.len(),
            bots.len(),
            &missed[..missed.len().min(5)]
        );
        let browsers = lines("browser-user-agents.txt");
        let flagged: Vec<&String> = browsers.iter().filter(|u| b.is_bot(u)).collect();
        assert!(
            flagged.len() * 1000 <= browsers.len(),
            "{} of {} browsers flagged: {:?}",
            flagged.len(),
            browsers.len(),
            &flagged[..flagged.len().min(5)]
        );
        for ua in [
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "curl/8.4.0",
            "python-requests/2.31",
        ] {
            assert!(b.is_bot(ua), "{ua}");
        }
    }

    #[test]
    fn the_filter_never_changes_a_verdict() {
        let b = Bots::new(DEFAULT).unwrap();
        let (t, rest) = &b.filter;
        let mut uas = lines("bot-user-agents.txt");
        uas.extend(lines("browser-user-agents.txt"));
        // The same in other cases, cut short, and with noise around.
        let more: Vec<String> = uas
            .iter()
            .flat_map(|u| {
                [
                    u.to_uppercase(),
                    u.chars().rev().collect(),
                    u.chars().take(u.len() / 2).collect(),
                    format!("x{u}\u{e9}"),
                ]
            })
            .collect();
        uas.extend(more);
        let mut hits = 0;
        for ua in &uas {
            assert_eq!(b.is_bot(ua), b.unfiltered(ua), "{ua:?}");
            hits += usize::from(t.hit(ua.as_bytes()));
        }
        assert!(hits > 0);
        // Every pattern of the shipped list has a piece: none is checked every time.
        assert!(rest.is_none());
        // Browsers mostly pass on the filter alone (the reason it exists).
        let browsers = lines("browser-user-agents.txt");
        let through = browsers.iter().filter(|u| t.hit(u.as_bytes())).count();
        assert!(
            through * 10 < browsers.len(),
            "{through} of {} browsers read by the automaton",
            browsers.len()
        );
    }

    #[test]
    fn a_list_with_patterns_the_filter_cannot_speak_for_still_matches_them() {
        let b = Bots::new("crawler\n^[a-z]{2}$\nab|cd\n").unwrap();
        for (ua, bot) in [
            ("MyCrawler/1", true),
            ("xy", true),
            ("zzcdzz", true),
            ("Mozilla/5.0", false),
        ] {
            assert_eq!(b.is_bot(ua), bot, "{ua}");
            assert_eq!(b.unfiltered(ua), bot, "{ua}");
        }
    }

    #[test]
    fn a_bad_list_is_refused_naming_the_line() {
        let unclosed = String::from("(") + "unclosed";
        assert_eq!(
            Bots::new(&format!("# c\nbot\n{unclosed}\n")).unwrap_err(),
            BotsError::Pattern {
                line: 3,
                message: regex::Regex::new(&unclosed).unwrap_err().to_string()
            }
        );
        assert_eq!(
            Bots::new("# only comments\n\n").unwrap_err(),
            BotsError::Empty
        );
    }

    /// Pieces of patterns: literals of either case, anchors, classes,
    /// repetitions, groups, alternations, flags, escapes.
    const PATTERN_PIECES: [&str; 30] = [
        "bot", "Crawl", "SPIDER", "http", "s?://", "^", "$", "(?:", "(", ")", "|", ".", "*", "+",
        "?", "{2}", "[a-c]", "[^x]", "\\d", "\\b", "(?-i)", "(?i)", "(?m)", "\\x41", "-", "/", " ",
        "é", "K", "\\.",
    ];
    /// Pieces of user agents: the same letters in other cases and runs.
    const UA_PIECES: [&str; 18] = [
        "bot",
        "BOT",
        "bOt",
        "crawl",
        "CRAWLER",
        "spider",
        "http",
        "https://",
        "Mozilla/5.0 ",
        "a",
        "b",
        "c",
        "1",
        "A",
        " ",
        "/",
        "é",
        "\u{212a}",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]

        /// Whatever the list, the filter in front of the automaton never
        /// changes its verdict (it only skips runs it proved would fail).
        #[test]
        fn the_filter_never_changes_a_verdict_for_any_list(
            lines in proptest::collection::vec(proptest::collection::vec(0..PATTERN_PIECES.len(), 1..7), 1..5),
            uas in proptest::collection::vec(
                (proptest::collection::vec(0..UA_PIECES.len(), 0..8), proptest::collection::vec(proptest::num::u8::ANY, 0..3)),
                1..12,
            ),
        ) {
            let list: Vec<String> = lines
                .iter()
                .map(|l| l.iter().map(|&i| PATTERN_PIECES[i]).collect())
                .collect();
            let Ok(b) = Bots::new(&list.join("\n")) else {
                return Ok(());
            };
            for (pieces, noise) in &uas {
                let mut ua: String = pieces.iter().map(|&i| UA_PIECES[i]).collect();
                ua.push_str(&String::from_utf8_lossy(noise));
                proptest::prop_assert_eq!(b.is_bot(&ua), b.unfiltered(&ua), "{:?} on {:?}", list, ua);
            }
        }
    }
}
