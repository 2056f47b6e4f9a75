//! A candidate plan: the conjunction of posting-list clauses that decides
//! which campaigns may bid, kept as references into the index and evaluated
//! one word (64 campaign positions) at a time, so that an auction visiting
//! the best campaigns first touches only the words it reaches.

use crate::index::Bitset;

/// One clause: the OR of `sets[start..end]`, negated when `not`.
#[derive(Debug, Clone, Copy)]
struct Clause {
    start: u32,
    end: u32,
    not: bool,
}

/// A conjunction of clauses over the index's bitsets.
#[derive(Debug, Default)]
pub(super) struct Plan<'a> {
    clauses: Vec<Clause>,
    sets: Vec<&'a Bitset>,
    /// A clause that nothing satisfies was added (an OR of no sets).
    empty: usize,
}

/// Where a plan stood, to go back to after per-impression clauses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark(usize, usize, usize);

impl<'a> Plan<'a> {
    /// Keeps campaigns in `b`.
    pub(super) fn and(&mut self, b: &'a Bitset) {
        self.any_of(std::iter::once(b));
    }

    /// Drops campaigns in `b`.
    pub(super) fn and_not(&mut self, b: &'a Bitset) {
        let start = self.sets.len() as u32;
        self.sets.push(b);
        self.clauses.push(Clause {
            start,
            end: start + 1,
            not: true,
        });
    }

    /// Keeps campaigns in at least one of `sets` (none: no campaign).
    pub(super) fn any_of(&mut self, sets: impl IntoIterator<Item = &'a Bitset>) {
        let start = self.sets.len();
        self.sets.extend(sets);
        if self.sets.len() == start {
            self.empty += 1;
            return;
        }
        self.clauses.push(Clause {
            start: start as u32,
            end: self.sets.len() as u32,
            not: false,
        });
    }

    /// Keeps no campaign.
    pub(super) fn none(&mut self) {
        self.empty += 1;
    }

    /// The current state, for [`Plan::reset`].
    pub(super) fn mark(&self) -> Mark {
        Mark(self.clauses.len(), self.sets.len(), self.empty)
    }

    /// Drops the clauses added since `m`.
    pub(super) fn reset(&mut self, m: Mark) {
        self.clauses.truncate(m.0);
        self.sets.truncate(m.1);
        self.empty = m.2;
    }

    /// The campaigns of word `w` that satisfy every clause. The latest
    /// clauses (an impression's channel and formats, the most selective)
    /// are tested first, and the first empty result ends the test.
    #[inline]
    pub(super) fn word(&self, w: usize) -> u64 {
        if self.empty > 0 || self.clauses.is_empty() {
            return 0;
        }
        let mut acc = !0u64;
        for c in self.clauses.iter().rev() {
            let mut x = 0;
            for b in &self.sets[c.start as usize..c.end as usize] {
                x |= b.word(w);
            }
            acc &= if c.not { !x } else { x };
            if acc == 0 {
                break;
            }
        }
        acc
    }

    /// Whether a clause that nothing satisfies is on the plan (then no
    /// word needs evaluating).
    pub(super) fn is_empty(&self) -> bool {
        self.empty > 0
    }

    /// Words `64s..64s+64` that may hold campaigns satisfying the plan (a
    /// superset: negated clauses are not summarised): bit `i` for word
    /// `64s + i`.
    #[inline]
    pub(super) fn summary(&self, s: usize) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let mut acc = !0u64;
        for c in self.clauses.iter().rev().filter(|c| !c.not) {
            let mut x = 0;
            for b in &self.sets[c.start as usize..c.end as usize] {
                x |= b.summary(s);
            }
            acc &= x;
            if acc == 0 {
                break;
            }
        }
        acc
    }

    /// Calls `f` with each word at or after `from` (and before `words`)
    /// that may hold campaigns, in order, until it returns false.
    #[inline]
    pub(super) fn words_from(&self, from: usize, words: usize, mut f: impl FnMut(usize) -> bool) {
        let mut s = from / 64;
        let mut mask = self.summary(s) & (!0u64 << (from % 64));
        while s * 64 < words {
            while mask != 0 {
                let w = s * 64 + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if w >= words || !f(w) {
                    return;
                }
            }
            s += 1;
            mask = self.summary(s);
        }
    }

    /// Whether any campaign at positions `from..end` satisfies the plan.
    pub(super) fn any_in(&self, from: usize, end: usize) -> bool {
        let mut any = false;
        self.words_from(from / 64, end.div_ceil(64), |w| {
            let lo = if w * 64 < from {
                !0u64 << (from - w * 64)
            } else {
                !0
            };
            let hi = if end < w * 64 + 64 {
                !0u64 >> (w * 64 + 64 - end)
            } else {
                !0
            };
            any = self.word(w) & lo & hi != 0;
            !any
        });
        any
    }
}

/// The bits of word `w` inside positions `range`.
pub(super) fn span(w: usize, range: &std::ops::Range<usize>) -> u64 {
    let (lo, hi) = (w * 64, w * 64 + 64);
    let mut m = !0u64;
    if range.start > lo {
        m &= !0u64 << (range.start - lo).min(63);
        if range.start - lo >= 64 {
            m = 0;
        }
    }
    if range.end < hi {
        m &= if range.end <= lo {
            0
        } else {
            !0u64 >> (hi - range.end)
        };
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize, pos: &[u32]) -> Bitset {
        Bitset::from_positions(n, pos.to_vec())
    }

    #[test]
    fn words_are_the_conjunction_of_the_clauses() {
        let n = 300;
        let all = Bitset::full(n);
        let a = set(n, &[1, 5, 70, 130, 199]);
        let b = set(n, &[5, 70, 150, 260]);
        let c = set(n, &[1, 199]);
        let blocked = set(n, &[70]);
        let mut p = Plan::default();
        p.and(&all);
        p.any_of([&b, &c]);
        let m = p.mark();
        p.and(&a);
        p.and_not(&blocked);
        let got: Vec<usize> = (0..4)
            .flat_map(|w| {
                let x = p.word(w);
                (0..64)
                    .filter(move |i| x & (1 << i) != 0)
                    .map(move |i| w * 64 + i)
            })
            .collect();
        assert_eq!(got, vec![1, 5, 199]);
        assert!(p.any_in(192, 256) && !p.any_in(128, 192) && !p.any_in(0, 1));
        let mut seen = Vec::new();
        p.words_from(0, 5, |w| {
            seen.push(w);
            true
        });
        // A superset (word 1 holds only a blocked campaign, word 2 none in
        // all clauses), but not word 4 (none in `a`).
        assert_eq!(seen, vec![0, 1, 2, 3]);
        p.reset(m);
        assert_eq!(p.word(2), 1 << (150 - 128), "back to the mark");
        p.any_of([]);
        assert_eq!(p.word(2), 0, "an OR of nothing keeps nothing");
        p.reset(m);
        p.none();
        assert!(!p.any_in(0, n) && p.is_empty());
        p.reset(m);
        assert!(!p.is_empty());
        assert_ne!(p.word(2), 0);
    }
}
