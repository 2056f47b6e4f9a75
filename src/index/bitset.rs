//! Posting lists: fixed-size sets of campaign positions, one bit each, with
//! a summary bit per word (64 positions) saying whether the word holds any,
//! so a scan skips 4096 empty positions with one test.

/// A fixed-size set of campaign positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
    /// Bit `w` set: word `w` is not empty.
    summary: Vec<u64>,
}

impl Bitset {
    /// Empty set over `n` positions.
    pub fn new(n: usize) -> Self {
        let words = n.div_ceil(64);
        Bitset {
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
        }
    }
    /// Set over `n` positions with all set.
    pub fn full(n: usize) -> Self {
        let mut b = Self::new(n);
        for i in 0..n {
            b.set(i);
        }
        b
    }
    /// Adds position `i`.
    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
        self.summary[i / 4096] |= 1 << ((i / 64) % 64);
    }
    /// Whether `i` is in the set.
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }
    /// Recomputes the summary after word-wise changes.
    fn resummarise(&mut self) {
        self.summary.iter_mut().for_each(|s| *s = 0);
        for (w, &x) in self.words.iter().enumerate() {
            if x != 0 {
                self.summary[w / 64] |= 1 << (w % 64);
            }
        }
    }
    /// Copies `other`.
    pub fn copy_from(&mut self, other: &Bitset) {
        self.words.copy_from_slice(&other.words);
        self.summary.copy_from_slice(&other.summary);
    }
    /// self |= other.
    pub fn or(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
        for (a, b) in self.summary.iter_mut().zip(&other.summary) {
            *a |= b;
        }
    }
    /// self &= !other.
    pub fn and_not(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
        self.resummarise();
    }
    /// self &= other.
    pub fn and(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
        self.resummarise();
    }
    /// Word `w` (positions `64w..64w+64`); 0 past the end.
    #[inline]
    pub fn word(&self, w: usize) -> u64 {
        self.words.get(w).copied().unwrap_or(0)
    }
    /// Summary word `s`: bit `i` set when word `64s + i` is not empty; 0
    /// past the end.
    #[inline]
    pub fn summary(&self, s: usize) -> u64 {
        self.summary.get(s).copied().unwrap_or(0)
    }
    /// Number of words.
    pub fn words(&self) -> usize {
        self.words.len()
    }
    /// Clears all.
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.summary.iter_mut().for_each(|w| *w = 0);
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.summary.iter().all(|&w| w == 0)
    }
    /// Positions in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let t = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + t)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_follows_the_words() {
        let n = 10_000;
        let mut a = Bitset::new(n);
        for p in [0, 63, 64, 4095, 4096, 9_999] {
            a.set(p);
        }
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
        let mut b = Bitset::new(n);
        b.set(64);
        b.set(9_999);
        let mut c = a.clone();
        c.and(&b);
        assert_eq!(nonempty(&c), vec![1, 156]);
        c.and_not(&b);
        assert!(c.is_empty() && nonempty(&c).is_empty());
        c.or(&a);
        assert_eq!(c, a);
        assert_eq!(a.summary(3), 0, "past the end");
    }
}
