//! Classification metrics: accuracy, macro-F1 (every category counts the same, so a
//! small category the model ignores shows), per-category precision and recall, the
//! confusion matrix, and the expected calibration error of the top probability.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryMetrics {
    pub category: String,
    /// Titles of this category in the evaluated rows.
    pub support: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub rows: usize,
    pub accuracy: f64,
    /// Mean F1 over the categories present in truth or predictions.
    pub macro_f1: f64,
    /// |top probability − accuracy| averaged over 10 probability bins, weighted by rows.
    pub expected_calibration_error: f64,
    pub per_category: Vec<CategoryMetrics>,
    /// `confusion[truth][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// Metrics of predicted labels (with their top probability) against the truth.
pub fn classification(
    labels: &[String],
    predicted: &[(usize, f32)],
    truth: &[usize],
) -> ClassificationMetrics {
    assert_eq!(predicted.len(), truth.len(), "one prediction per row");
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&(p, _), &t) in predicted.iter().zip(truth) {
        confusion[t][p] += 1;
    }
    let n = truth.len();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_category: Vec<CategoryMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let support: usize = confusion[c].iter().sum();
            let predicted_c: usize = (0..k).map(|t| confusion[t][c]).sum();
            let (precision, recall) = (ratio(tp, predicted_c), ratio(tp, support));
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            CategoryMetrics {
                category: labels[c].clone(),
                support,
                precision,
                recall,
                f1,
            }
        })
        .collect();
    // Categories that never occur in truth nor predictions would add a 0 F1 for no
    // reason (a category with no titles in a small evaluation cut).
    let present: Vec<&CategoryMetrics> = per_category
        .iter()
        .enumerate()
        .filter(|(c, m)| m.support > 0 || (0..k).any(|t| confusion[t][*c] > 0))
        .map(|(_, m)| m)
        .collect();
    let macro_f1 = present.iter().map(|m| m.f1).sum::<f64>() / present.len().max(1) as f64;
    let mut bins = [(0usize, 0usize, 0.0f64); 10];
    for (&(p, prob), &t) in predicted.iter().zip(truth) {
        let b = ((prob.clamp(0.0, 1.0) * 10.0) as usize).min(9);
        bins[b].0 += 1;
        bins[b].1 += usize::from(p == t);
        bins[b].2 += f64::from(prob);
    }
    let ece = bins
        .iter()
        .filter(|b| b.0 > 0)
        .map(|(count, right, conf)| {
            let c = *count as f64;
            c / n.max(1) as f64 * (*right as f64 / c - conf / c).abs()
        })
        .sum();
    ClassificationMetrics {
        rows: n,
        accuracy: ratio(correct, n),
        macro_f1,
        expected_calibration_error: ece,
        per_category,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_small_known_case() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // truth a a b b c ; predicted a b b b a
        let truth = [0, 0, 1, 1, 2];
        let pred = [(0, 0.9), (1, 0.6), (1, 0.8), (1, 0.7), (0, 0.5)];
        let m = classification(&labels, &pred, &truth);
        assert_eq!(m.rows, 5);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        let a = &m.per_category[0];
        assert!((a.precision - 0.5).abs() < 1e-12 && (a.recall - 0.5).abs() < 1e-12);
        let b = &m.per_category[1];
        assert!((b.precision - 2.0 / 3.0).abs() < 1e-12 && (b.recall - 1.0).abs() < 1e-12);
        assert_eq!(m.per_category[2].f1, 0.0);
        let f1b = 2.0 * (2.0 / 3.0) / (2.0 / 3.0 + 1.0);
        assert!((m.macro_f1 - (0.5 + f1b + 0.0) / 3.0).abs() < 1e-12);
        assert_eq!(m.confusion[2][0], 1);
        assert!(m.expected_calibration_error > 0.0);
    }
}
