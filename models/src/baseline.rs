//! Baseline statistics of the training data, stored in the bundle manifest, that a
//! drift check compares live inputs against: per model column its missing share,
//! mean, spread and quantiles; per nominal input the shares of its commonest levels.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::estimator::Matrix;

/// The quantiles each column profile records.
pub const QUANTILES: [f64; 9] = [0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub column: String,
    pub rows: usize,
    /// Share of rows where the value is missing (NaN).
    pub missing: f64,
    pub mean: f64,
    pub std: f64,
    /// Values at [`QUANTILES`] of the non-missing rows (empty when all are missing).
    pub quantiles: Vec<f64>,
}

/// One profile per matrix column.
pub fn profile_columns(x: &Matrix) -> Vec<ColumnProfile> {
    (0..x.cols())
        .map(|j| {
            let mut v: Vec<f64> = (0..x.rows())
                .map(|i| x.row(i)[j])
                .filter(|v| !v.is_nan())
                .collect();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n.max(1.0);
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n.max(1.0)).sqrt();
            let quantiles = if v.is_empty() {
                Vec::new()
            } else {
                QUANTILES
                    .iter()
                    .map(|q| v[((v.len() - 1) as f64 * q).round() as usize])
                    .collect()
            };
            ColumnProfile {
                column: x.names[j].clone(),
                rows: x.rows(),
                missing: 1.0 - n / x.rows().max(1) as f64,
                mean,
                std,
                quantiles,
            }
        })
        .collect()
}

/// Shares of the `top` commonest levels (missing counts as `null`), and the share of
/// all other levels under `(other)`.
pub fn level_shares<'a>(
    levels: impl Iterator<Item = Option<&'a str>>,
    top: usize,
) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total = 0usize;
    for l in levels {
        *counts.entry(l.unwrap_or("null")).or_default() += 1;
        total += 1;
    }
    let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut shares = BTreeMap::new();
    let mut rest = 0usize;
    for (i, (level, n)) in by_count.into_iter().enumerate() {
        if i < top {
            shares.insert(level.to_string(), n as f64 / total as f64);
        } else {
            rest += n;
        }
    }
    if rest > 0 {
        shares.insert("(other)".into(), rest as f64 / total as f64);
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_profiles_by_hand() {
        let x = Matrix::new(
            vec!["a".into(), "b".into()],
            vec![1.0, f64::NAN, 2.0, f64::NAN, 3.0, 5.0, 4.0, f64::NAN],
        )
        .unwrap();
        let p = profile_columns(&x);
        assert_eq!(p[0].missing, 0.0);
        assert_eq!(p[0].mean, 2.5);
        assert_eq!(p[0].quantiles.first(), Some(&1.0));
        assert_eq!(p[0].quantiles.last(), Some(&4.0));
        assert_eq!(p[1].missing, 0.75);
        assert_eq!((p[1].mean, p[1].std), (5.0, 0.0));
    }

    #[test]
    fn level_shares_keep_the_top_and_pool_the_rest() {
        let levels = ["DE", "DE", "FR", "JP", "GB", "DE"];
        let s = level_shares(levels.iter().map(|l| Some(*l)).chain([None]), 2);
        assert_eq!(s["DE"], 3.0 / 7.0);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!((s.values().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
