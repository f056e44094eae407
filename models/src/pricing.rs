//! The pricing feature transform: raw listing attributes → a model matrix.
//!
//! One transform serves training, batch prediction and services, so there is no
//! training/serving skew. The nominal attributes with many levels (category, brand,
//! market and category × market) are target-encoded: the smoothed mean log price of
//! the level, learned at training time and shipped in the bundle as JSON lookups.
//! Training rows are encoded out of fold, so a row's own price never enters its
//! features. An unknown level (a new category, a missing brand) gets the global mean
//! and a count of 0 — defined behaviour, never an error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::estimator::{Matrix, ModelError};

/// The raw attributes of one product in one market.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PriceInput {
    pub category: Option<String>,
    pub brand: Option<String>,
    pub condition: Option<String>,
    /// The buyer country the price is for.
    pub market: String,
    pub seller_country: Option<String>,
    pub title: Option<String>,
    /// 1..=12; 0 when unknown.
    pub month: u32,
}

/// Prior weight of the global mean in a level's smoothed mean (in rows).
pub const SMOOTHING: f64 = 20.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub sum: f64,
    pub count: u64,
}

/// The encodings learned from training rows (ordered maps: the same rows give the
/// same JSON bytes, so bundle checksums are reproducible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingLookups {
    pub global_mean: f64,
    pub category: BTreeMap<String, Level>,
    pub brand: BTreeMap<String, Level>,
    pub market: BTreeMap<String, Level>,
    pub category_market: BTreeMap<String, Level>,
}

/// The columns of the model matrix, in order.
pub const COLUMNS: [&str; 11] = [
    "category_price",
    "brand_price",
    "market_price",
    "category_market_price",
    "category_rows_log",
    "brand_rows_log",
    "condition",
    "cross_border",
    "title_chars",
    "title_tokens",
    "month",
];

fn category_market(row: &PriceInput) -> Option<String> {
    row.category
        .as_ref()
        .map(|c| format!("{c}\u{1f}{}", row.market))
}

impl PricingLookups {
    pub fn fit(rows: &[PriceInput], log_prices: &[f64]) -> Result<PricingLookups, ModelError> {
        if rows.is_empty() {
            return Err(ModelError::Empty);
        }
        if rows.len() != log_prices.len() {
            return Err(ModelError::Shape(format!(
                "{} rows, {} prices",
                rows.len(),
                log_prices.len()
            )));
        }
        let mut l = PricingLookups {
            global_mean: log_prices.iter().sum::<f64>() / log_prices.len() as f64,
            category: BTreeMap::new(),
            brand: BTreeMap::new(),
            market: BTreeMap::new(),
            category_market: BTreeMap::new(),
        };
        let add = |map: &mut BTreeMap<String, Level>, key: Option<&String>, y: f64| {
            if let Some(k) = key {
                let level = map.entry(k.clone()).or_default();
                level.sum += y;
                level.count += 1;
            }
        };
        for (row, &y) in rows.iter().zip(log_prices) {
            add(&mut l.category, row.category.as_ref(), y);
            add(&mut l.brand, row.brand.as_ref(), y);
            add(&mut l.market, Some(&row.market), y);
            add(&mut l.category_market, category_market(row).as_ref(), y);
        }
        Ok(l)
    }

    fn encode(&self, map: &BTreeMap<String, Level>, key: Option<&String>) -> (f64, u64) {
        match key.and_then(|k| map.get(k)) {
            Some(level) => (
                (level.sum + SMOOTHING * self.global_mean) / (level.count as f64 + SMOOTHING),
                level.count,
            ),
            None => (self.global_mean, 0),
        }
    }

    /// The model matrix for rows (serving and batch prediction).
    pub fn transform(&self, rows: &[PriceInput]) -> Matrix {
        let mut values = Vec::with_capacity(rows.len() * COLUMNS.len());
        for row in rows {
            values.extend(self.row_features(row));
        }
        Matrix::new(COLUMNS.map(String::from).to_vec(), values).expect("row width matches COLUMNS")
    }

    fn row_features(&self, row: &PriceInput) -> [f64; 11] {
        let (category, category_rows) = self.encode(&self.category, row.category.as_ref());
        let (brand, brand_rows) = self.encode(&self.brand, row.brand.as_ref());
        let (market, _) = self.encode(&self.market, Some(&row.market));
        let (category_market, _) =
            self.encode(&self.category_market, category_market(row).as_ref());
        let condition = match row.condition.as_deref() {
            Some("new") => 0.0,
            Some("refurbished") => 1.0,
            Some("used") => 2.0,
            _ => f64::NAN,
        };
        let cross_border = match &row.seller_country {
            Some(s) => f64::from(u8::from(*s != row.market)),
            None => f64::NAN,
        };
        let title = row.title.as_deref().unwrap_or("");
        [
            category,
            brand,
            market,
            category_market,
            (category_rows as f64).ln_1p(),
            (brand_rows as f64).ln_1p(),
            condition,
            cross_border,
            title.chars().count() as f64,
            title.split_whitespace().count() as f64,
            if row.month == 0 {
                f64::NAN
            } else {
                f64::from(row.month)
            },
        ]
    }
}

/// Training features encoded out of fold: rows are split into `folds` folds (by a
/// seeded permutation), and each fold is encoded with lookups fitted on the others.
/// Returns the matrix and the lookups fitted on all rows (what the bundle ships).
pub fn fit_transform(
    rows: &[PriceInput],
    log_prices: &[f64],
    folds: usize,
    seed: u64,
) -> Result<(Matrix, PricingLookups), ModelError> {
    if folds < 2 {
        return Err(ModelError::InvalidParam {
            name: "folds",
            why: "must be at least 2".into(),
        });
    }
    let full = PricingLookups::fit(rows, log_prices)?;
    let fold_of = fold_assignment(rows.len(), folds, seed);
    let mut values = vec![0.0; rows.len() * COLUMNS.len()];
    for f in 0..folds {
        let (train_rows, train_y): (Vec<PriceInput>, Vec<f64>) = rows
            .iter()
            .zip(log_prices)
            .zip(&fold_of)
            .filter(|(_, k)| **k != f)
            .map(|((r, y), _)| (r.clone(), *y))
            .unzip();
        let lookups = if train_rows.is_empty() {
            full.clone()
        } else {
            PricingLookups::fit(&train_rows, &train_y)?
        };
        for (i, row) in rows.iter().enumerate().filter(|(i, _)| fold_of[*i] == f) {
            values[i * COLUMNS.len()..(i + 1) * COLUMNS.len()]
                .copy_from_slice(&lookups.row_features(row));
        }
    }
    let matrix = Matrix::new(COLUMNS.map(String::from).to_vec(), values)?;
    Ok((matrix, full))
}

/// Fold of each row: a permutation from a seeded LCG (dependency-free and the same on
/// every platform), dealt round-robin.
fn fold_assignment(n: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in (1..n).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (state >> 33) as usize % (i + 1);
        order.swap(i, j);
    }
    let mut fold = vec![0; n];
    for (k, &i) in order.iter().enumerate() {
        fold[i] = k % folds;
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(category: &str, market: &str) -> PriceInput {
        PriceInput {
            category: Some(category.into()),
            brand: Some("Acme".into()),
            condition: Some("new".into()),
            market: market.into(),
            seller_country: Some("DE".into()),
            title: Some("Blue ceramic mug".into()),
            month: 3,
        }
    }

    #[test]
    fn smoothed_means_and_unknown_levels() {
        let rows = vec![row("Mugs", "DE"), row("Mugs", "FR"), row("Lamps", "DE")];
        let y = [1.0, 3.0, 5.0];
        let l = PricingLookups::fit(&rows, &y).unwrap();
        assert_eq!(l.global_mean, 3.0);
        let m = l.transform(&[row("Mugs", "DE"), row("Never seen", "JP")]);
        // Mugs: (1 + 3 + 20·3) / (2 + 20)
        assert!((m.row(0)[0] - 64.0 / 22.0).abs() < 1e-12);
        assert_eq!(m.row(0)[7], 0.0, "DE seller selling in DE");
        assert_eq!(m.row(0)[9], 3.0, "title tokens");
        // Unknown category and market: the global mean, zero rows, cross-border.
        assert_eq!(m.row(1)[0], 3.0);
        assert_eq!(m.row(1)[2], 3.0);
        assert_eq!(m.row(1)[4], 0.0);
        assert_eq!(m.row(1)[7], 1.0);
        let missing = l.transform(&[PriceInput {
            market: "DE".into(),
            ..Default::default()
        }]);
        assert!(
            missing.row(0)[6].is_nan() && missing.row(0)[7].is_nan() && missing.row(0)[10].is_nan()
        );
    }

    #[test]
    fn out_of_fold_encoding_never_sees_the_row_itself() {
        // Each category has one row: out of fold, its encoding cannot use its own price,
        // so it must equal the global mean of the other folds' rows.
        let rows: Vec<PriceInput> = (0..10).map(|i| row(&format!("C{i}"), "DE")).collect();
        let y: Vec<f64> = (0..10).map(|i| 100.0 * f64::from(i)).collect();
        let (m, full) = fit_transform(&rows, &y, 5, 7).unwrap();
        for (i, own) in y.iter().enumerate() {
            assert!(
                (m.row(i)[0] - own).abs() > 1e-9,
                "row {i} leaked its own price"
            );
            assert_eq!(m.row(i)[4], 0.0, "unseen out of fold");
        }
        assert_eq!(full.category.len(), 10);
    }

    #[test]
    fn lookups_round_trip_as_json() {
        let rows = vec![row("Mugs", "DE"), row("Lamps", "FR")];
        let l = PricingLookups::fit(&rows, &[1.0, 2.0]).unwrap();
        let again: PricingLookups =
            serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(again.transform(&rows), l.transform(&rows));
    }

    /// A single category (or brand, or market) is a constant encoding: training still
    /// works, the other columns carry the signal.
    #[test]
    fn a_single_category_still_trains() {
        use crate::estimator::{Fit, Params, Predict};
        let rows: Vec<PriceInput> = (0..200)
            .map(|i| PriceInput {
                condition: Some(["new", "used"][i % 2].into()),
                title: Some("word ".repeat(1 + i % 5)),
                ..row("Only", "DE")
            })
            .collect();
        let y: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { 3.0 } else { 2.0 })
            .collect();
        let (m, lookups) = fit_transform(&rows, &y, 5, 1).unwrap();
        let params = crate::gbdt::GbdtParams {
            trees: 30,
            learning_rate: 0.3,
            threads: 1,
            min_data_in_leaf: 5,
            ..Default::default()
        };
        let model = params.check().unwrap().fit(&m, &y).unwrap();
        let p = model.predict(&lookups.transform(&rows[..2])).unwrap();
        assert!(
            (p[0] - 3.0).abs() < 0.1 && (p[1] - 2.0).abs() < 0.1,
            "{p:?}"
        );
    }

    #[test]
    fn folds_are_balanced_and_deterministic() {
        let f = fold_assignment(103, 5, 42);
        assert_eq!(f, fold_assignment(103, 5, 42));
        assert_ne!(f, fold_assignment(103, 5, 43));
        for k in 0..5 {
            let n = f.iter().filter(|x| **x == k).count();
            assert!((20..=21).contains(&n), "fold {k}: {n}");
        }
    }
}
