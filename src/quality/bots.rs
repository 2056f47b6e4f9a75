//! Known crawlers and bots by user agent: one case-insensitive regular
//! expression built from a pattern list (one pattern per line, `#`
//! comments). The shipped list (`configs/ivt/bots.txt`, compiled in) is the
//! `isbot` project's (MIT, `configs/ivt/LICENSE-bots`), itself kept from
//! the omrilotan/isbot list; `ivt.bots_file` points at an editable copy,
//! reloaded when it changes.

use regex::bytes::{Regex, RegexBuilder};

/// The shipped pattern list.
pub const DEFAULT: &str = include_str!("../../configs/ivt/bots.txt");

/// A compiled pattern list.
#[derive(Debug, Clone)]
pub struct Bots {
    re: Regex,
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
        }
        if alts.is_empty() {
            return Err(BotsError::Empty);
        }
        let re = RegexBuilder::new(&alts.join("|"))
            .case_insensitive(true)
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .map_err(|e| BotsError::Pattern {
                line: 0,
                message: e.to_string().chars().take(200).collect(),
            })?;
        Ok(Bots {
            re,
            patterns: alts.len(),
        })
    }

    /// Whether the user agent is a known bot's.
    pub fn is_bot(&self, ua: &str) -> bool {
        self.re.is_match(ua.as_bytes())
    }

    /// Patterns in the list.
    pub fn patterns(&self) -> usize {
        self.patterns
    }
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
}
