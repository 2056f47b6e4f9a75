//! Posting lists: immutable sets of campaign positions, stored as their
//! non-empty 64-position words only, with a summary bit per word saying
//! whether it holds any (so a scan skips 4096 empty positions with one
//! test) and, per summary word, how many non-empty words come before it
//! (so a word is found with one popcount, not a search).
//!
//! Memory follows the positions a list holds, not the index's size: the
//! posting lists of 100,000 synthetic campaigns (`adshard gen-campaigns`)
//! take 4.5 MB (`adshard_index_postings_bytes` in /metrics) where a plain
//! bit per campaign in each of them took about 50 MB, and would have taken
//! half a gigabyte at a million. [`Builder`] collects positions in any
//! order while an index is built.

/// An immutable set of campaign positions in `0..n`. The default is the
/// empty set over no positions (it allocates nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitset {
    /// Words (64 positions each) the set spans: `n.div_ceil(64)`.
    span: usize,
    /// Per summary word `s` (words `64s..64s+64`): bit `i` set when word
    /// `64s + i` is not empty, and the number of non-empty words before
    /// word `64s` (the first of them in `words`).
    index: Vec<(u64, u32)>,
    /// The non-empty words, in order.
    words: Vec<u64>,
}

impl Bitset {
    /// Empty set over `n` positions.
    pub fn new(n: usize) -> Self {
        Self::from_positions(n, Vec::new())
    }

    /// Set over `n` positions with all set.
    pub fn full(n: usize) -> Self {
        Self::from_positions(n, (0..n as u32).collect())
    }

    /// The set of `positions` (any order, repeats allowed; each below `n`).
    pub fn from_positions(n: usize, mut positions: Vec<u32>) -> Self {
        positions.sort_unstable();
        debug_assert!(positions.last().is_none_or(|&p| (p as usize) < n));
        let span = n.div_ceil(64);
        let mut index = vec![(0u64, 0u32); span.div_ceil(64)];
        let mut words: Vec<u64> = Vec::new();
        let mut last = usize::MAX;
        for p in positions {
            let w = p as usize / 64;
            if w != last {
                words.push(0);
                index[w / 64].0 |= 1 << (w % 64);
                last = w;
            }
            if let Some(x) = words.last_mut() {
                *x |= 1 << (p % 64);
            }
        }
        let mut before = 0u32;
        for (summary, rank) in &mut index {
            *rank = before;
            before += summary.count_ones();
        }
        words.shrink_to_fit();
        Bitset { span, index, words }
    }

    /// Whether `i` is in the set.
    pub fn get(&self, i: usize) -> bool {
        self.word(i / 64) & (1 << (i % 64)) != 0
    }

    /// Word `w` (positions `64w..64w+64`); 0 past the end.
    #[inline]
    pub fn word(&self, w: usize) -> u64 {
        let Some(&(summary, rank)) = self.index.get(w / 64) else {
            return 0;
        };
        let bit = 1u64 << (w % 64);
        if summary & bit == 0 {
            return 0;
        }
        let at = rank as usize + (summary & (bit - 1)).count_ones() as usize;
        self.words.get(at).copied().unwrap_or(0)
    }

    /// Summary word `s`: bit `i` set when word `64s + i` is not empty; 0
    /// past the end.
    #[inline]
    pub fn summary(&self, s: usize) -> u64 {
        self.index.get(s).map_or(0, |&(summary, _)| summary)
    }

    /// Number of words the set spans (its size in positions / 64).
    pub fn words(&self) -> usize {
        self.span
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.index.capacity() * std::mem::size_of::<(u64, u32)>()
            + self.words.capacity() * std::mem::size_of::<u64>()
    }

    /// Positions in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let at = self
            .index
            .iter()
            .enumerate()
            .flat_map(|(s, &(summary, _))| {
                let mut m = summary;
                std::iter::from_fn(move || {
                    (m != 0).then(|| {
                        let w = s * 64 + m.trailing_zeros() as usize;
                        m &= m - 1;
                        w
                    })
                })
            });
        at.zip(&self.words).flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let t = w.trailing_zeros() as usize;
                    w &= w - 1;
                    wi * 64 + t
                })
            })
        })
    }
}

/// Collects a posting list's positions while an index is built.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    positions: Vec<u32>,
}

impl Builder {
    /// Adds position `i`.
    pub fn set(&mut self, i: usize) {
        self.positions.push(i as u32);
    }

    /// The set over `n` positions.
    pub fn build(self, n: usize) -> Bitset {
        Bitset::from_positions(n, self.positions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(n: usize, pos: &[u32]) -> Bitset {
        Bitset::from_positions(n, pos.to_vec())
    }

    /// The plain bit-per-position set the compressed one must read as.
    fn dense(n: usize, pos: &[u32]) -> Vec<u64> {
        let mut w = vec![0u64; n.div_ceil(64)];
        pos.iter()
            .for_each(|&p| w[p as usize / 64] |= 1 << (p % 64));
        w
    }

    #[test]
    fn the_summary_follows_the_words() {
        let n = 10_000;
        let a = of(n, &[9_999, 4096, 0, 63, 64, 4095, 64]);
        let nonempty = |b: &Bitset| -> Vec<usize> {
            (0..b.words())
                .filter(|&w| b.summary(w / 64) & (1 << (w % 64)) != 0)
                .collect()
        };
        assert_eq!(nonempty(&a), vec![0, 1, 63, 64, 156]);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![0, 63, 64, 4095, 4096, 9_999]
        );
        assert_eq!(a.iter().count(), 6);
        assert!(a.get(4095) && !a.get(4094) && !a.get(20_000));
        assert_eq!(a.summary(3), 0, "past the end");
        assert_eq!(a.word(157), 0, "past the end");
        assert!(Bitset::new(n).is_empty() && nonempty(&Bitset::new(n)).is_empty());
        assert_eq!(Bitset::full(130).iter().count(), 130);
        assert_eq!(Bitset::full(130).word(2), 0b11);
    }

    #[test]
    fn every_word_reads_as_the_plain_set() {
        // Sparse, clustered and full stretches, across summary words.
        let n = 20_000;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for density in [1, 20, 300, 5_000, 19_000] {
            let mut pos: Vec<u32> = (0..density).map(|_| (next() % n as u64) as u32).collect();
            pos.extend(8_000..8_200);
            let b = of(n, &pos);
            let want = dense(n, &pos);
            for (w, &x) in want.iter().enumerate() {
                assert_eq!(b.word(w), x, "word {w} at density {density}");
            }
            let mut sorted = pos.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let got: Vec<u32> = b.iter().map(|p| p as u32).collect();
            assert_eq!(got, sorted);
            let built = {
                let mut bl = Builder::default();
                pos.iter().rev().for_each(|&p| bl.set(p as usize));
                bl.build(n)
            };
            assert_eq!(built, b, "a builder fed in any order builds the same set");
            let nonempty = want.iter().filter(|&&x| x != 0).count();
            assert!(b.heap_bytes() <= 8 * nonempty + 16 * n.div_ceil(4096) + 64);
        }
    }
}
