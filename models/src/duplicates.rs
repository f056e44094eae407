//! Duplicate listings: two listings by different sellers that are the same product
//! (the title edited, translated, repriced). A pair is judged on several signals —
//! what the titles mean (embedding cosine), how they are spelled (TF-IDF cosine of
//! character trigrams), whether they share a rare model code (digit runs weighted by
//! rarity), whether they are listed in the same category — combined by a logistic
//! regression fitted on a labelled cut, with the probability threshold that gives
//! the best pair F1 there. A new signal (image similarity) is one more column.
//!
//! No I/O: the pipeline finds candidate pairs (nearest titles, shared codes) and
//! hands their signals here.

use std::collections::{BTreeMap, HashMap, HashSet};

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::Bundle;

pub const KIND: &str = "duplicates";
pub const FILE: &str = "duplicates.json";

/// Digit runs shorter than this are sizes and counts ("64", "2x"), not model codes.
const MIN_CODE_DIGITS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum DuplicateError {
    #[error("{0}")]
    Training(String),
    #[error(transparent)]
    Bundle(#[from] crate::BundleError),
    #[error("the bundle has no {0}")]
    MissingFile(&'static str),
    #[error("{FILE}: {0}")]
    Parse(String),
}

/// The signals of a pair, each in [0, 1] (cosines below 0 clamp to 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// Cosine of the title embeddings.
    pub meaning: f32,
    /// TF-IDF cosine of the titles' character trigrams (letters and digits only).
    pub spelling: f32,
    /// Rarity-weighted overlap of the titles' digit runs.
    pub code: f32,
    /// 1 when both are listed in the same category.
    pub category: f32,
    /// How alike the two photos' perceptual hashes are: 1 − differing bits / 32,
    /// clamped at 0 (unrelated pictures differ in about 32 of 64); 0 when either
    /// listing has no photo.
    #[serde(default)]
    pub photo: f32,
}

/// Differing bits of two 64-bit perceptual hashes at which the photo signal is 0.
const PHOTO_UNRELATED_BITS: f32 = 32.0;

/// A signal's name, as the `reason` of a predicted duplicate lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Meaning,
    Spelling,
    Code,
    Category,
    Photo,
}

impl Signal {
    /// The signals a decision is fitted on now. A saved decision names its own
    /// (older ones have no `photo`) and is scored on those.
    pub const ALL: [Signal; 5] = [
        Signal::Meaning,
        Signal::Spelling,
        Signal::Code,
        Signal::Category,
        Signal::Photo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Meaning => "meaning",
            Signal::Spelling => "spelling",
            Signal::Code => "code",
            Signal::Category => "category",
            Signal::Photo => "photo",
        }
    }
}

impl Signals {
    pub fn value(&self, signal: Signal) -> f32 {
        match signal {
            Signal::Meaning => self.meaning,
            Signal::Spelling => self.spelling,
            Signal::Code => self.code,
            Signal::Category => self.category,
            Signal::Photo => self.photo,
        }
    }
}

/// Catalogue-wide document frequencies the title signals weigh by.
#[derive(Debug, Clone, Default)]
pub struct TitleIndex {
    trigrams: HashMap<u32, u32>,
    codes: HashMap<String, u32>,
    titles: usize,
}

/// A title's weighted trigrams (sorted by id, unit length) and model codes with
/// their weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TitleFeatures {
    trigrams: Vec<(u32, f32)>,
    codes: Vec<(String, f32)>,
}

/// Lower-case letters and digits only: spacing, hyphens and punctuation do not
/// make two titles differ.
fn squash(title: &str) -> Vec<char> {
    title
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn trigram_ids(title: &str) -> HashSet<u32> {
    let chars = squash(title);
    chars
        .windows(3)
        .map(|w| {
            // FNV-1a over the three code points: a stable id, collisions negligible
            // at catalogue sizes.
            w.iter().fold(0x811c_9dc5u32, |h, c| {
                (h ^ *c as u32).wrapping_mul(0x0100_0193)
            })
        })
        .collect()
}

/// The title's runs of at least [`MIN_CODE_DIGITS`] digits, each once.
pub fn codes(title: &str) -> Vec<String> {
    let mut out: Vec<String> = title
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= MIN_CODE_DIGITS)
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

impl TitleIndex {
    pub fn new<'a>(titles: impl IntoIterator<Item = &'a str>) -> TitleIndex {
        let mut index = TitleIndex::default();
        for t in titles {
            index.titles += 1;
            for g in trigram_ids(t) {
                *index.trigrams.entry(g).or_default() += 1;
            }
            for c in codes(t) {
                *index.codes.entry(c).or_default() += 1;
            }
        }
        index
    }

    /// How many titles carry this code.
    pub fn code_frequency(&self, code: &str) -> usize {
        self.codes.get(code).copied().unwrap_or(0) as usize
    }

    fn idf(&self, df: u32) -> f32 {
        ((1.0 + self.titles as f32) / (1.0 + df as f32)).ln() + 1.0
    }

    pub fn features(&self, title: &str) -> TitleFeatures {
        let mut trigrams: Vec<(u32, f32)> = trigram_ids(title)
            .into_iter()
            .map(|g| (g, self.idf(self.trigrams.get(&g).copied().unwrap_or(0))))
            .collect();
        trigrams.sort_by_key(|t| t.0);
        let norm = trigrams.iter().map(|t| t.1 * t.1).sum::<f32>().sqrt();
        if norm > 0.0 {
            trigrams.iter_mut().for_each(|t| t.1 /= norm);
        }
        let codes = codes(title)
            .into_iter()
            .map(|c| {
                let w = self.idf(self.codes.get(&c).copied().unwrap_or(0));
                (c, w)
            })
            .collect();
        TitleFeatures { trigrams, codes }
    }
}

/// Both sides of a pair, as the signals need them.
pub struct Side<'a> {
    pub title: &'a TitleFeatures,
    pub embedding: &'a [f32],
    pub category: Option<&'a str>,
    /// The 64-bit perceptual hash of the listing's photo, when it has one.
    pub photo: Option<u64>,
}

impl Signals {
    pub fn of(a: &Side, b: &Side) -> Signals {
        let meaning: f32 = a
            .embedding
            .iter()
            .zip(b.embedding)
            .map(|(x, y)| x * y)
            .sum();
        let (mut i, mut j, mut spelling) = (0, 0, 0.0f32);
        let (ta, tb) = (&a.title.trigrams, &b.title.trigrams);
        while i < ta.len() && j < tb.len() {
            match ta[i].0.cmp(&tb[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    spelling += ta[i].1 * tb[j].1;
                    i += 1;
                    j += 1;
                }
            }
        }
        let total = |f: &TitleFeatures| f.codes.iter().map(|c| c.1).sum::<f32>();
        let shared: f32 = a
            .title
            .codes
            .iter()
            .filter(|c| b.title.codes.iter().any(|d| d.0 == c.0))
            .map(|c| c.1)
            .sum();
        let most = total(a.title).max(total(b.title));
        Signals {
            meaning: meaning.clamp(0.0, 1.0),
            spelling: spelling.clamp(0.0, 1.0),
            code: if most > 0.0 { shared / most } else { 0.0 },
            category: match (a.category, b.category) {
                (Some(x), Some(y)) if x == y => 1.0,
                _ => 0.0,
            },
            photo: match (a.photo, b.photo) {
                (Some(x), Some(y)) => {
                    (1.0 - (x ^ y).count_ones() as f32 / PHOTO_UNRELATED_BITS).max(0.0)
                }
                _ => 0.0,
            },
        }
    }
}

/// The fitted decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateModel {
    pub signals: Vec<Signal>,
    pub weights: Vec<f64>,
    pub bias: f64,
    /// Pairs at or above this probability are duplicates.
    pub threshold: f64,
}

impl DuplicateModel {
    /// Fits the combination on labelled candidate pairs and picks the threshold with
    /// the best pair F1, where `missed` true pairs were never candidates (they count
    /// against recall at every threshold).
    pub fn fit(
        pairs: &[Signals],
        duplicate: &[bool],
        missed: usize,
    ) -> Result<DuplicateModel, DuplicateError> {
        if pairs.len() != duplicate.len() {
            return Err(DuplicateError::Training(format!(
                "{} pairs, {} labels",
                pairs.len(),
                duplicate.len()
            )));
        }
        let positives = duplicate.iter().filter(|d| **d).count();
        if positives == 0 || positives == pairs.len() {
            return Err(DuplicateError::Training(format!(
                "the labelled candidates hold {positives} duplicate pair(s) of {}: both kinds are needed to calibrate",
                pairs.len()
            )));
        }
        let signals = Signal::ALL;
        let x = Array2::from_shape_fn((pairs.len(), signals.len()), |(i, j)| {
            f64::from(pairs[i].value(signals[j]))
        });
        let y = Array1::from_iter(duplicate.iter().copied());
        let fitted = LogisticRegression::default()
            .alpha(1e-3)
            .max_iterations(200)
            .fit(&Dataset::new(x, y))
            .map_err(|e| DuplicateError::Training(format!("logistic regression: {e}")))?;
        // linfa's positive class is whichever label it met first; orient to `true`.
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        let mut model = DuplicateModel {
            signals: signals.to_vec(),
            weights: fitted.params().iter().map(|w| sign * w).collect(),
            bias: sign * fitted.intercept(),
            threshold: 0.5,
        };
        let scores: Vec<f64> = pairs.iter().map(|s| model.probability(s)).collect();
        model.threshold = best_threshold(&scores, duplicate, missed);
        Ok(model)
    }

    pub fn probability(&self, s: &Signals) -> f64 {
        let z = self.bias
            + self
                .weights
                .iter()
                .zip(&self.signals)
                .map(|(w, sig)| w * f64::from(s.value(*sig)))
                .sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }

    pub fn is_duplicate(&self, s: &Signals) -> bool {
        self.probability(s) >= self.threshold
    }

    /// The signals that argued for the pair: those whose term in the score is at
    /// least a quarter of the largest positive term, strongest first.
    pub fn reasons(&self, s: &Signals) -> Vec<Signal> {
        let mut terms: Vec<(Signal, f64)> = self
            .signals
            .iter()
            .zip(&self.weights)
            .map(|(sig, w)| (*sig, w * f64::from(s.value(*sig))))
            .filter(|t| t.1 > 0.0)
            .collect();
        terms.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top = terms.first().map_or(0.0, |t| t.1);
        terms
            .into_iter()
            .filter(|t| t.1 >= 0.25 * top)
            .map(|t| t.0)
            .collect()
    }

    pub fn to_files(&self) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(
            FILE.to_string(),
            serde_json::to_vec_pretty(self).expect("plain data"),
        )])
    }

    /// From a verified bundle of kind `duplicates`.
    pub fn from_bundle(bundle: &Bundle) -> Result<DuplicateModel, DuplicateError> {
        bundle.expect_kind(KIND)?;
        let bytes = bundle.file(FILE).ok_or(DuplicateError::MissingFile(FILE))?;
        let m: DuplicateModel =
            serde_json::from_slice(bytes).map_err(|e| DuplicateError::Parse(e.to_string()))?;
        let distinct: std::collections::HashSet<Signal> = m.signals.iter().copied().collect();
        if m.signals.is_empty()
            || distinct.len() != m.signals.len()
            || m.weights.len() != m.signals.len()
        {
            return Err(DuplicateError::Parse(format!(
                "expected one weight per distinct signal, found {} for {:?}",
                m.weights.len(),
                m.signals
            )));
        }
        if !(m.bias.is_finite()
            && m.weights.iter().all(|w| w.is_finite())
            && (0.0..=1.0).contains(&m.threshold))
        {
            return Err(DuplicateError::Parse(
                "a weight, the bias or the threshold is out of range".into(),
            ));
        }
        Ok(m)
    }
}

/// The score threshold with the best pair F1 on labelled candidates, where `missed`
/// true pairs were never candidates (they count against recall at every threshold).
/// Pairs at or above it are duplicates; 1.0 (next to nothing passes) if no threshold
/// finds a duplicate.
pub fn best_threshold(scores: &[f64], duplicate: &[bool], missed: usize) -> f64 {
    let mut scored: Vec<(f64, bool)> = scores
        .iter()
        .copied()
        .zip(duplicate.iter().copied())
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total_true = duplicate.iter().filter(|d| **d).count() + missed;
    let (mut tp, mut best) = (0usize, (0.0f64, 1.0f64));
    for (rank, (p, dup)) in scored.iter().enumerate() {
        tp += usize::from(*dup);
        let next = scored.get(rank + 1).map(|n| n.0);
        // A threshold can only split where the next pair scores lower.
        if next == Some(*p) {
            continue;
        }
        let f1 = 2.0 * tp as f64 / ((rank + 1) + total_true) as f64;
        if f1 > best.0 {
            // Midway to the next score: a pair at the boundary stays on its side
            // when the model's numbers are re-read a rounding away.
            best = (f1, next.map_or(*p, |n| (p + n) / 2.0));
        }
    }
    best.1
}

/// How predicted pairs match the labelled groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateMetrics {
    pub pair_precision: f64,
    pub pair_recall: f64,
    pub pair_f1: f64,
    /// Each listing's predicted duplicates against its true ones (F1), averaged over
    /// the listings that have either.
    pub listing_f1: f64,
    pub listings_scored: usize,
    pub true_pairs: usize,
    pub predicted_pairs: usize,
}

/// Scores `predicted` pairs (indexes into `groups`) against the truth: two listings
/// are duplicates when they share a group and not a seller.
pub fn evaluate(groups: &[u32], sellers: &[u32], predicted: &[(usize, usize)]) -> DuplicateMetrics {
    let n = groups.len();
    let mut by_group: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        by_group.entry(*g).or_default().push(i);
    }
    let mut truth: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    for members in by_group.values() {
        for &a in members {
            for &b in members {
                if a != b && sellers[a] != sellers[b] {
                    truth[a].insert(b);
                }
            }
        }
    }
    let mut found: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    for &(a, b) in predicted {
        if a != b {
            found[a].insert(b);
            found[b].insert(a);
        }
    }
    let true_pairs = truth.iter().map(HashSet::len).sum::<usize>() / 2;
    let predicted_pairs = found.iter().map(HashSet::len).sum::<usize>() / 2;
    let hits = (0..n)
        .map(|i| truth[i].intersection(&found[i]).count())
        .sum::<usize>()
        / 2;
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(hits, predicted_pairs), ratio(hits, true_pairs));
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let per_listing: Vec<f64> = (0..n)
        .filter(|&i| !truth[i].is_empty() || !found[i].is_empty())
        .map(|i| {
            let both = truth[i].intersection(&found[i]).count();
            2.0 * both as f64 / (truth[i].len() + found[i].len()) as f64
        })
        .collect();
    DuplicateMetrics {
        pair_precision: precision,
        pair_recall: recall,
        pair_f1: f1,
        listing_f1: if per_listing.is_empty() {
            1.0
        } else {
            per_listing.iter().sum::<f64>() / per_listing.len() as f64
        },
        listings_scored: per_listing.len(),
        true_pairs,
        predicted_pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side<'a>(t: &'a TitleFeatures, e: &'a [f32], c: Option<&'a str>) -> Side<'a> {
        Side {
            title: t,
            embedding: e,
            category: c,
            photo: None,
        }
    }

    #[test]
    fn photo_signal() {
        let index = TitleIndex::new(["a"]);
        let f = index.features("a");
        let e = [1.0f32];
        let with = |photo| Side {
            photo,
            ..side(&f, &e, None)
        };
        let s = |a, b| Signals::of(&with(a), &with(b)).photo;
        assert_eq!(s(Some(0xFFFF), Some(0xFFFF)), 1.0);
        assert_eq!(s(Some(0), Some(0xFF)), 0.75, "8 bits of 64 differ");
        assert_eq!(
            s(Some(0), Some(u64::MAX)),
            0.0,
            "clamped: unrelated pictures"
        );
        assert_eq!(s(Some(0), None), 0.0, "no photo: no evidence");
    }

    #[test]
    fn spelling_and_code_signals() {
        let titles = [
            "Sonex Premium Wireless Headphones KX-4821 - Black",
            "SONEX Premium Wirless Headphones KX4821 Black",
            "Sonex Premium Wireless Headphones QT-7310 - Black",
            "Kirin Smartphone 128GB Pro Blue AB-5555",
        ];
        let index = TitleIndex::new(titles);
        let f: Vec<TitleFeatures> = titles.iter().map(|t| index.features(t)).collect();
        let e = [1.0f32, 0.0];
        let s = |i: usize, j: usize| {
            Signals::of(&side(&f[i], &e, Some("a")), &side(&f[j], &e, Some("a")))
        };
        let same = s(0, 1);
        let other = s(0, 2);
        assert_eq!(same.code, 1.0, "the code survives case and hyphen");
        assert_eq!(other.code, 0.0);
        assert!(same.spelling > other.spelling, "{same:?} vs {other:?}");
        assert!((s(0, 0).spelling - 1.0).abs() < 1e-5);
        assert_eq!(codes("Phone 128GB KX-4821 2x"), ["128", "4821"]);
        // A shared common run ("128") counts less than a shared rare one.
        assert!(index.code_frequency("4821") == 2 && index.code_frequency("128") == 1);
    }

    fn pairs() -> (Vec<Signals>, Vec<bool>) {
        let mut s = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let dup = i % 4 == 0;
            let jitter = (i % 7) as f32 / 20.0;
            s.push(Signals {
                meaning: if dup {
                    0.9 - jitter / 3.0
                } else {
                    0.6 + jitter
                },
                spelling: if dup {
                    0.8 - jitter
                } else {
                    0.3 + jitter / 2.0
                },
                code: if dup && i % 8 != 4 { 1.0 } else { 0.0 },
                category: 1.0,
                // Photos on a third of the listings: edited copies for duplicates.
                photo: match (i % 3, dup) {
                    (0, true) => 0.9,
                    (0, false) => 0.1,
                    _ => 0.0,
                },
            });
            y.push(dup);
        }
        (s, y)
    }

    #[test]
    fn fits_a_separating_decision_and_round_trips() {
        let (s, y) = pairs();
        let m = DuplicateModel::fit(&s, &y, 0).unwrap();
        let correct = s
            .iter()
            .zip(&y)
            .filter(|(s, y)| m.is_duplicate(s) == **y)
            .count();
        assert_eq!(correct, s.len(), "separable pairs: {m:?}");
        assert!(
            m.weights[2] > 0.0 && m.weights[1] > 0.0,
            "code and spelling argue for: {m:?}"
        );
        let r = m.reasons(&s[0]);
        assert!(
            !r.is_empty()
                && r.iter()
                    .all(|x| *x != Signal::Category || m.weights[3] > 0.0)
        );

        let gate = crate::bundle::Gate {
            metric: "listing_f1".into(),
            direction: crate::bundle::Direction::Higher,
            tolerance: 0.02,
        };
        let bundle = Bundle::new(
            crate::bundle::test_manifest("duplicates", KIND, gate.clone()),
            m.to_files(),
        )
        .unwrap();
        let stored: BTreeMap<String, Vec<u8>> = bundle.to_files().into_iter().collect();
        let loaded = DuplicateModel::from_bundle(&Bundle::from_files(stored).unwrap()).unwrap();
        // JSON keeps a float to its last digit or so: the decisions are what must agree.
        assert_eq!(loaded.signals, m.signals);
        assert!(
            loaded
                .weights
                .iter()
                .zip(&m.weights)
                .all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1.0))
        );
        assert!(
            s.iter()
                .all(|x| loaded.is_duplicate(x) == m.is_duplicate(x))
        );
        let mut bad = m.clone();
        bad.weights.pop();
        let bundle = Bundle::new(
            crate::bundle::test_manifest("duplicates", KIND, gate),
            bad.to_files(),
        )
        .unwrap();
        assert!(matches!(
            DuplicateModel::from_bundle(&bundle),
            Err(DuplicateError::Parse(_))
        ));

        // A decision saved before photos were a signal names four and is scored on
        // those four.
        let old = DuplicateModel {
            signals: Signal::ALL[..4].to_vec(),
            weights: m.weights[..4].to_vec(),
            ..m.clone()
        };
        let mut json: serde_json::Value = serde_json::from_slice(&old.to_files()[FILE]).unwrap();
        assert_eq!(json["signals"].as_array().unwrap().len(), 4);
        json["signals"] = serde_json::json!(["meaning", "spelling", "code", "category"]);
        let files = BTreeMap::from([(FILE.to_string(), serde_json::to_vec(&json).unwrap())]);
        let bundle = Bundle::new(
            crate::bundle::test_manifest("duplicates", KIND, gate_of()),
            files,
        )
        .unwrap();
        let loaded = DuplicateModel::from_bundle(&bundle).unwrap();
        let with_photo = Signals { photo: 1.0, ..s[1] };
        assert_eq!(loaded.probability(&with_photo), loaded.probability(&s[1]));
    }

    fn gate_of() -> crate::bundle::Gate {
        crate::bundle::Gate {
            metric: "listing_f1".into(),
            direction: crate::bundle::Direction::Higher,
            tolerance: 0.02,
        }
    }

    #[test]
    fn the_threshold_maximises_f1_counting_missed_pairs() {
        // Scores 0.9 (dup), 0.8 (dup), 0.7 (not), 0.6 (dup), 0.1 (not).
        let scores = [0.9, 0.8, 0.7, 0.6, 0.1];
        let dup = [true, true, false, true, false];
        // Down to 0.8: F1 = 4 / (2 + 3) = 0.8; down to 0.6: 6 / (4 + 3) = 0.857. The
        // threshold sits midway to the next score.
        assert_eq!(best_threshold(&scores, &dup, 0), 0.35);
        // With 10 more true pairs never found, casting wider still pays: down to 0.6,
        // 6 / (4 + 13) = 0.35 beats 4 / (2 + 13) = 0.27.
        assert_eq!(best_threshold(&scores, &dup, 10), 0.35);
        assert_eq!(best_threshold(&[0.9, 0.5], &[true, false], 0), 0.7);
        assert_eq!(best_threshold(&[0.5, 0.4], &[false, false], 0), 1.0);
    }

    #[test]
    fn one_kind_of_label_is_not_enough() {
        let (s, _) = pairs();
        assert!(matches!(
            DuplicateModel::fit(&s, &vec![false; s.len()], 3),
            Err(DuplicateError::Training(_))
        ));
    }

    #[test]
    fn metrics_by_hand() {
        // Groups: {0, 1, 2} (1 and 2 the same seller), {3}, {4, 5}.
        let groups = [7, 7, 7, 8, 9, 9];
        let sellers = [1, 2, 2, 3, 4, 5];
        // True pairs: (0,1), (0,2), (4,5). Predicted: (0,1) right, (3,4) wrong.
        let m = evaluate(&groups, &sellers, &[(0, 1), (3, 4)]);
        assert_eq!((m.true_pairs, m.predicted_pairs), (3, 2));
        assert!((m.pair_precision - 0.5).abs() < 1e-12);
        assert!((m.pair_recall - 1.0 / 3.0).abs() < 1e-12);
        // Listings with truth or predictions: 0 (F1 2·1/(2+1)), 1 (1), 2 (0), 3 (0),
        // 4 (0), 5 (0).
        assert_eq!(m.listings_scored, 6);
        assert!((m.listing_f1 - (2.0 / 3.0 + 1.0) / 6.0).abs() < 1e-12);
    }
}
