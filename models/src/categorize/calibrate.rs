//! Making probabilities mean what they say, and deciding when to ask a person.
//!
//! SGD-trained softmax models are over-confident. Temperature scaling (one number,
//! fitted on held-out titles by minimising their log loss) fixes most of it without
//! changing which category wins. The review threshold is then the lowest top-1
//! probability at which the held-out titles above it were right at least
//! `target_precision` of the time: listings below it go to review instead of being
//! auto-categorized.

use serde::{Deserialize, Serialize};

use super::model::softmax;

/// Mean negative log likelihood of the true labels at a temperature.
pub fn log_loss(logits: &[Vec<f32>], truth: &[usize], temperature: f32) -> f64 {
    let mut total = 0.0f64;
    for (z, &y) in logits.iter().zip(truth) {
        let mut p = z.clone();
        softmax(&mut p, temperature);
        total -= f64::from(p[y].max(1e-12)).ln();
    }
    total / logits.len().max(1) as f64
}

/// The temperature in [0.05, 20] that minimises the log loss (golden-section search on
/// its logarithm: the loss is smooth and has one minimum there). 1 for no rows.
pub fn fit_temperature(logits: &[Vec<f32>], truth: &[usize]) -> f32 {
    if logits.is_empty() {
        return 1.0;
    }
    let loss = |log_t: f64| log_loss(logits, truth, log_t.exp() as f32);
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (loss(c), loss(d));
    for _ in 0..40 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = loss(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = loss(d);
        }
    }
    (((a + b) / 2.0).exp()) as f32
}

/// When to auto-categorize.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPolicy {
    /// Listings whose top probability is below this go to review.
    pub threshold: f32,
    /// The precision the threshold was chosen for.
    pub target_precision: f64,
    /// Share of the held-out titles at or above the threshold, and how often their
    /// top category was right.
    pub auto_share: f64,
    /// NaN when nothing is auto-categorized (JSON writes it as null).
    #[serde(deserialize_with = "nan_if_null")]
    pub auto_precision: f64,
}

/// JSON has no NaN: serde_json writes it as null, and this reads null back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The lowest threshold whose auto-categorized share has at least `target` precision
/// on `(top probability, was right)` pairs. With none reaching it, everything goes to
/// review (threshold above 1).
pub fn review_policy(scored: &[(f32, bool)], target: f64) -> ReviewPolicy {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut right, mut best) = (0usize, None);
    for (i, (p, ok)) in sorted.iter().enumerate() {
        right += usize::from(*ok);
        let n = i + 1;
        // A cut between equal probabilities is not a cut: wait for the last of them.
        let last_of_tie = sorted.get(n).is_none_or(|next| next.0 < *p);
        if last_of_tie && right as f64 / n as f64 >= target {
            best = Some((*p, n, right));
        }
    }
    let total = sorted.len().max(1) as f64;
    match best {
        Some((threshold, n, right)) => ReviewPolicy {
            threshold,
            target_precision: target,
            auto_share: n as f64 / total,
            auto_precision: right as f64 / n as f64,
        },
        None => ReviewPolicy {
            threshold: 1.0 + f32::EPSILON,
            target_precision: target,
            auto_share: 0.0,
            auto_precision: f64::NAN,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_softens_overconfident_logits() {
        // Logits that say 99.99% but are right only 3 times in 4.
        let logits: Vec<Vec<f32>> = (0..400).map(|_| vec![10.0, 0.0]).collect();
        let truth: Vec<usize> = (0..400).map(|i| usize::from(i % 4 == 0)).collect();
        let t = fit_temperature(&logits, &truth);
        let mut p = logits[0].clone();
        softmax(&mut p, t);
        assert!((p[0] - 0.75).abs() < 0.01, "t {t}, p {p:?}");
        assert!(log_loss(&logits, &truth, t) < log_loss(&logits, &truth, 1.0));
    }

    #[test]
    fn threshold_keeps_the_precision_it_promises() {
        // Confident rows right, unsure rows wrong half the time.
        let mut scored: Vec<(f32, bool)> =
            (0..90).map(|i| (0.9 + i as f32 * 0.001, true)).collect();
        scored.extend((0..20).map(|i| (0.3 + i as f32 * 0.01, i % 2 == 0)));
        let p = review_policy(&scored, 0.95);
        assert!(p.auto_precision >= 0.95, "{p:?}");
        assert!(p.threshold > 0.3 && p.threshold <= 0.9, "{p:?}");
        assert!(p.auto_share > 0.8);
        let none = review_policy(&[(0.9, false), (0.8, false)], 0.9);
        assert_eq!(none.auto_share, 0.0);
        assert!(none.threshold > 1.0);
        // Nothing auto-categorized: the NaN precision survives a JSON round trip.
        let back: ReviewPolicy =
            serde_json::from_str(&serde_json::to_string(&none).unwrap()).unwrap();
        assert!(back.auto_precision.is_nan() && back.threshold == none.threshold);
    }
}
