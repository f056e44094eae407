//! Title → hashed features, as fastText builds them: words, word n-grams and the
//! character n-grams of each word (`<word>` with boundary marks), each hashed (FNV-1a,
//! fastText's hash) into one of `buckets` rows of the embedding table.
//!
//! Words are lower-cased maximal runs of letters and digits in any script, so
//! punctuation, emoji and spacing never make two spellings of a title differ.
//! Scripts written without spaces (Chinese, Japanese, Thai) give one long "word";
//! its character n-grams carry the signal there. Titles are cut at [`MAX_CHARS`]
//! characters: a title is a line, and a 100,000-character one must cost no more
//! than a long title does.

use serde::{Deserialize, Serialize};

/// Characters of a title that are read; the rest is ignored.
pub const MAX_CHARS: usize = 1_000;

/// How titles become features. Stored in the bundle's manifest: the same settings
/// must be used to score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextFeatures {
    /// Rows of the embedding table the features are hashed into.
    pub buckets: u32,
    /// Word n-grams up to this length (1: words only).
    pub word_ngrams: u32,
    /// Character n-gram lengths (`min..=max`); `min = 0` turns them off.
    pub char_ngrams_min: u32,
    pub char_ngrams_max: u32,
}

impl Default for TextFeatures {
    fn default() -> Self {
        TextFeatures {
            buckets: 1 << 18,
            word_ngrams: 2,
            char_ngrams_min: 3,
            char_ngrams_max: 5,
        }
    }
}

/// FNV-1a over bytes (fastText's `dictionary::hash`).
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

/// The lower-cased words of a title.
pub fn words(title: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in title.chars().take(MAX_CHARS) {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

impl TextFeatures {
    /// The bucket of every feature of a title, in a fixed order, repeats kept (a word
    /// said twice counts twice, as in fastText). Empty for a title with no words.
    pub fn extract(&self, title: &str) -> Vec<u32> {
        let words = words(title);
        let buckets = self.buckets.max(1);
        let mut out = Vec::with_capacity(words.len() * 8);
        // Distinct prefixes keep a word, an n-gram and a character n-gram that are
        // spelled alike in different rows.
        let word_hashes: Vec<u32> = words
            .iter()
            .map(|w| fnv1a(b"w ".iter().copied().chain(w.bytes())))
            .collect();
        out.extend(word_hashes.iter().map(|h| h % buckets));
        for n in 2..=self.word_ngrams as usize {
            for window in word_hashes.windows(n) {
                // fastText's n-gram hash: h = h * 116049371 + next.
                let h = window.iter().fold(u64::from(n as u32), |h, &w| {
                    h.wrapping_mul(116_049_371).wrapping_add(u64::from(w))
                });
                out.push((h % u64::from(buckets)) as u32);
            }
        }
        if self.char_ngrams_min > 0 {
            let (lo, hi) = (
                self.char_ngrams_min as usize,
                self.char_ngrams_max.max(self.char_ngrams_min) as usize,
            );
            for w in &words {
                let marked = format!("<{w}>");
                let bounds: Vec<usize> = marked
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain(std::iter::once(marked.len()))
                    .collect();
                let chars = bounds.len() - 1;
                // n = chars would be the whole `<word>`: the word, already a feature.
                for n in (lo..=hi).filter(|n| *n < chars) {
                    for start in 0..=chars - n {
                        let gram = &marked.as_bytes()[bounds[start]..bounds[start + n]];
                        out.push(fnv1a(b"c ".iter().chain(gram).copied()) % buckets);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_ignore_case_punctuation_and_emoji() {
        assert_eq!(words("Blue  MUG, 350ml! 🎉"), ["blue", "mug", "350ml"]);
        assert_eq!(
            words("Tasse à café — Bleue"),
            ["tasse", "à", "café", "bleue"]
        );
        assert_eq!(words("كوب قهوة أزرق"), ["كوب", "قهوة", "أزرق"]);
        assert_eq!(words("青いマグカップ"), ["青いマグカップ"]);
        assert!(words("").is_empty() && words("!!! 🎉").is_empty());
    }

    #[test]
    fn features_are_stable_and_bounded() {
        let f = TextFeatures::default();
        let a = f.extract("Blue ceramic mug");
        assert_eq!(a, f.extract("BLUE, ceramic mug!"));
        // 3 words + 2 bigrams + char n-grams of <blue> <ceramic> <mug>.
        assert!(a.len() > 5, "{}", a.len());
        assert!(a.iter().all(|b| *b < f.buckets));
        assert_ne!(a, f.extract("Red ceramic mug"));
        assert!(f.extract("").is_empty());
        let words_only = TextFeatures {
            char_ngrams_min: 0,
            ..f.clone()
        };
        assert_eq!(words_only.extract("Blue ceramic mug").len(), 5);
        // Long titles cost no more than MAX_CHARS characters.
        let long = "mug ".repeat(25_000);
        assert!(f.extract(&long).len() < 10 * MAX_CHARS);
    }
}
