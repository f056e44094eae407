//! The pricing feature transform: raw listing attributes → a model matrix.
//!
//! One transform serves training, batch prediction and services, so there is no
//! training/serving skew. The nominal attributes with many levels (product, category,
//! brand, market and category × market) are target-encoded: the smoothed mean log
//! price of the level, learned at training time and shipped in the bundle as JSON
//! lookups. The product's encoding is its price history: its smoothed mean, spread and
//! number of priced sale lines. Training rows are encoded out of fold, so a row's own
//! price never enters its features.
//!
//! Defined behaviour for inputs the model has not seen (never an error, never a panic):
//! - an unknown or missing level (a new product, category, brand or market) encodes
//!   as the global mean with a count of 0, the same as a level no training row had;
//! - a missing condition, seller country, title or month is a missing value (NaN),
//!   which LightGBM routes down the branch it learned for missing values and the
//!   linear model scores as the training mean;
//! - out-of-range values are treated as missing: a month outside 1..=12, a quantity
//!   that is not a positive finite number, an unknown condition;
//! - a missing quantity means one unit (batch suggestions price one unit).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, BundleError, Field};
use crate::estimator::{Matrix, ModelError, Predict};
#[cfg(feature = "gbdt")]
use crate::gbdt::Gbdt;
#[cfg(feature = "linear")]
use crate::linear::Linear;
use crate::metrics::ConformalInterval;

/// Bundle kinds of price models.
pub const KIND_GBDT: &str = "pricing-gbdt";
pub const KIND_LINEAR: &str = "pricing-linear";

/// The raw attributes of one product in one market.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PriceInput {
    pub product_id: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub condition: Option<String>,
    /// The buyer country the price is for.
    pub market: String,
    pub seller_country: Option<String>,
    pub title: Option<String>,
    /// 1..=12; 0 when unknown.
    pub month: u32,
    /// Units the unit price is for (wholesale lines are cheaper per unit); `None`
    /// prices one unit.
    pub quantity: Option<f64>,
    /// The buyer checks out without a customer account. Guest (retail) and account
    /// (often trade) buyers pay different prices: on UCI retail guests pay 66% more
    /// for the same goods. `None` is unknown.
    pub guest: Option<bool>,
}

/// Bounds on the prior weight (in rows) an encoding gives the global mean.
pub const MIN_PRIOR_ROWS: f64 = 0.5;
pub const MAX_PRIOR_ROWS: f64 = 1000.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub sum: f64,
    pub count: u64,
    /// Sum of squared log prices: the level's spread.
    pub sum_sq: f64,
}

/// A target encoding: per level its price sums, and how many rows' worth of weight
/// the global mean gets in a level's smoothed mean.
///
/// The prior weight is estimated from the data (empirical Bayes): the within-level
/// variance over the variance of the level means. Levels that differ a lot and vary
/// little inside (products) get a light prior, so a product's own prices count from
/// the first few lines; levels that barely differ (months, say) get a heavy one. A
/// fixed weight of 20 rows cost 0.05 RMSE on UCI retail's products.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    pub prior_rows: f64,
    pub levels: BTreeMap<String, Level>,
}

impl Encoding {
    fn fit<'a>(pairs: impl Iterator<Item = (Option<&'a str>, f64)>, global_var: f64) -> Encoding {
        let mut levels: BTreeMap<String, Level> = BTreeMap::new();
        for (key, y) in pairs {
            if let Some(k) = key {
                let level = match levels.get_mut(k) {
                    Some(l) => l,
                    None => levels.entry(k.to_string()).or_default(),
                };
                level.sum += y;
                level.count += 1;
                level.sum_sq += y * y;
            }
        }
        let (rows, within_ss) = levels.values().fold((0.0, 0.0), |(n, ss), l| {
            let c = l.count as f64;
            (n + c, ss + (l.sum_sq - l.sum * l.sum / c).max(0.0))
        });
        let k = levels.len() as f64;
        let within = if rows > k {
            within_ss / (rows - k)
        } else {
            global_var
        };
        let means: Vec<f64> = levels.values().map(|l| l.sum / l.count as f64).collect();
        let mean_of_means = means.iter().sum::<f64>() / k.max(1.0);
        let var_of_means = means
            .iter()
            .map(|m| (m - mean_of_means).powi(2))
            .sum::<f64>()
            / (k - 1.0).max(1.0);
        // The spread of level means includes sampling noise (within / rows per level);
        // what is left is the true between-level variance.
        let noise =
            within * levels.values().map(|l| 1.0 / l.count as f64).sum::<f64>() / k.max(1.0);
        let between = (var_of_means - noise).max(1e-9);
        Encoding {
            prior_rows: (within / between).clamp(MIN_PRIOR_ROWS, MAX_PRIOR_ROWS),
            levels,
        }
    }

    /// Smoothed mean log price of a level and its training rows; the global mean and 0
    /// for a level never seen.
    fn encode(&self, key: Option<&str>, global_mean: f64) -> (f64, u64) {
        match key.and_then(|k| self.levels.get(k)) {
            Some(l) => (
                (l.sum + self.prior_rows * global_mean) / (l.count as f64 + self.prior_rows),
                l.count,
            ),
            None => (global_mean, 0),
        }
    }

    /// A level's spread: its standard deviation shrunk towards the global one, so a
    /// product with two lines does not claim a spread of zero.
    fn spread(&self, key: Option<&str>, global_std: f64) -> f64 {
        match key.and_then(|k| self.levels.get(k)) {
            Some(l) if l.count > 0 => {
                let n = l.count as f64;
                let ss = (l.sum_sq - l.sum * l.sum / n).max(0.0);
                let prior = self.prior_rows * global_std * global_std;
                ((ss + prior) / (n + self.prior_rows)).sqrt()
            }
            _ => global_std,
        }
    }
}

/// The encodings learned from training rows (ordered maps: the same rows give the
/// same JSON bytes, so bundle checksums are reproducible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingLookups {
    pub global_mean: f64,
    /// Standard deviation of all training log prices: the prior of a product's spread.
    pub global_std: f64,
    pub product: Encoding,
    /// Product × quantity tier: wholesale tiers are priced per product.
    pub product_quantity: Encoding,
    pub category: Encoding,
    pub brand: Encoding,
    pub market: Encoding,
    pub category_market: Encoding,
}

/// The columns of the model matrix, in order.
pub const COLUMNS: [&str; 17] = [
    "product_price",
    "product_price_std",
    "product_rows_log",
    "product_quantity_price",
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
    "quantity_log",
    "guest",
];

/// Units the price is for: a missing quantity is one unit; one that is not a positive
/// finite number is missing (NaN).
fn units(row: &PriceInput) -> f64 {
    match row.quantity {
        None => 1.0,
        Some(q) if q.is_finite() && q > 0.0 => q,
        Some(_) => f64::NAN,
    }
}

/// Keys of the combined encodings (the unit separator cannot occur in ids).
fn category_market(row: &PriceInput) -> Option<String> {
    row.category
        .as_ref()
        .map(|c| format!("{c}\u{1f}{}", row.market))
}

fn product_quantity(row: &PriceInput) -> Option<String> {
    let q = units(row);
    // Tiers as wholesale price lists break them: 1, 2–5, 6–11, 12–23, 24–99, 100+.
    let tier = [2.0, 6.0, 12.0, 24.0, 100.0]
        .iter()
        .take_while(|b| q >= **b)
        .count();
    let tier = if q.is_nan() {
        "?".to_string()
    } else {
        tier.to_string()
    };
    row.product_id.as_ref().map(|p| format!("{p}\u{1f}{tier}"))
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
        let n = log_prices.len() as f64;
        let global_mean = log_prices.iter().sum::<f64>() / n;
        let var = log_prices
            .iter()
            .map(|y| (y - global_mean).powi(2))
            .sum::<f64>()
            / n;
        let fit = |key: &dyn Fn(&PriceInput) -> Option<String>| {
            let keys: Vec<Option<String>> = rows.iter().map(key).collect();
            Encoding::fit(
                keys.iter()
                    .map(Option::as_deref)
                    .zip(log_prices.iter().copied()),
                var,
            )
        };
        Ok(PricingLookups {
            global_mean,
            global_std: var.sqrt(),
            product: fit(&|r| r.product_id.clone()),
            product_quantity: fit(&product_quantity),
            category: fit(&|r| r.category.clone()),
            brand: fit(&|r| r.brand.clone()),
            market: fit(&|r| Some(r.market.clone())),
            category_market: fit(&category_market),
        })
    }

    /// The model matrix for rows (serving and batch prediction).
    pub fn transform(&self, rows: &[PriceInput]) -> Matrix {
        let mut values = Vec::with_capacity(rows.len() * COLUMNS.len());
        for row in rows {
            values.extend(self.row_features(row));
        }
        Matrix::new(COLUMNS.map(String::from).to_vec(), values).expect("row width matches COLUMNS")
    }

    fn row_features(&self, row: &PriceInput) -> [f64; COLUMNS.len()] {
        let g = self.global_mean;
        let (product, product_rows) = self.product.encode(row.product_id.as_deref(), g);
        let (product_quantity, _) = self
            .product_quantity
            .encode(product_quantity(row).as_deref(), g);
        let (category, category_rows) = self.category.encode(row.category.as_deref(), g);
        let (brand, brand_rows) = self.brand.encode(row.brand.as_deref(), g);
        let (market, _) = self.market.encode(Some(&row.market), g);
        let (category_market, _) = self
            .category_market
            .encode(category_market(row).as_deref(), g);
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
            product,
            self.product
                .spread(row.product_id.as_deref(), self.global_std),
            (product_rows as f64).ln_1p(),
            product_quantity,
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
            if (1..=12).contains(&row.month) {
                f64::from(row.month)
            } else {
                f64::NAN
            },
            units(row).ln(),
            row.guest.map_or(f64::NAN, |g| f64::from(u8::from(g))),
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

/// The raw inputs a price bundle consumes: [`PriceInput`]'s fields, as the manifest
/// records them.
pub fn input_schema() -> Vec<Field> {
    [
        ("product_id", "str", true),
        ("category", "str", true),
        ("brand", "str", true),
        ("condition", "str", true),
        ("market", "str", false),
        ("seller_country", "str", true),
        ("title", "str", true),
        ("month", "i64", true),
        ("quantity", "f64", true),
        ("guest", "bool", true),
    ]
    .into_iter()
    .map(|(name, dtype, nullable)| Field {
        name: name.into(),
        dtype: dtype.into(),
        nullable,
    })
    .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PriceModelError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle kind `{0}` is not a price model ({KIND_GBDT}, {KIND_LINEAR})")]
    Kind(String),
    #[error(
        "bundle kind `{kind}` needs sgml-models' `{feature}` feature, which this build leaves out"
    )]
    NotBuilt {
        kind: &'static str,
        feature: &'static str,
    },
    #[error("bundle lacks {0}")]
    MissingFile(&'static str),
    #[error("bundle file {file} does not parse: {why}")]
    Parse { file: &'static str, why: String },
    #[error(
        "the bundle's model was trained on feature columns {found:?}, this build computes {expected:?}: retrain, or score with the sgml version that trained it"
    )]
    Columns {
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

fn file<'b>(bundle: &'b Bundle, path: &'static str) -> Result<&'b [u8], PriceModelError> {
    bundle.file(path).ok_or(PriceModelError::MissingFile(path))
}

fn json<T: serde::de::DeserializeOwned>(
    bundle: &Bundle,
    path: &'static str,
) -> Result<T, PriceModelError> {
    serde_json::from_slice(file(bundle, path)?).map_err(|e| PriceModelError::Parse {
        file: path,
        why: e.to_string(),
    })
}

/// The bundle's estimator and the feature columns it was trained on, for the model
/// families this build has.
fn estimator_of(bundle: &Bundle) -> Result<(Box<dyn Predict>, Vec<String>), PriceModelError> {
    match bundle.manifest().kind.as_str() {
        #[cfg(feature = "gbdt")]
        KIND_GBDT => {
            let text = std::str::from_utf8(file(bundle, "model.txt")?).map_err(|e| {
                PriceModelError::Parse {
                    file: "model.txt",
                    why: e.to_string(),
                }
            })?;
            let m = Gbdt::from_text(text)?;
            let columns = m.columns().to_vec();
            Ok((Box::new(m), columns))
        }
        #[cfg(not(feature = "gbdt"))]
        KIND_GBDT => Err(PriceModelError::NotBuilt {
            kind: KIND_GBDT,
            feature: "gbdt",
        }),
        #[cfg(feature = "linear")]
        KIND_LINEAR => {
            let m: Linear = json(bundle, "model.json")?;
            let columns = m.columns.clone();
            Ok((Box::new(m), columns))
        }
        #[cfg(not(feature = "linear"))]
        KIND_LINEAR => Err(PriceModelError::NotBuilt {
            kind: KIND_LINEAR,
            feature: "linear",
        }),
        other => Err(PriceModelError::Kind(other.to_string())),
    }
}

/// A loaded price model: everything needed to price raw attributes. The one scoring
/// path for batch prediction and services alike.
pub struct PriceModel {
    pub version: String,
    model: Box<dyn Predict>,
    lookups: PricingLookups,
    interval: ConformalInterval,
}

/// One priced row: log price and bounds in the base currency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priced {
    pub log_price: f64,
    pub low: f64,
    pub high: f64,
}

impl PriceModel {
    /// From a verified bundle; refuses another kind, another input schema or a model
    /// trained on other feature columns than this build's transform computes.
    pub fn from_bundle(bundle: &Bundle) -> Result<PriceModel, PriceModelError> {
        bundle.expect_inputs(&input_schema())?;
        let (model, columns) = estimator_of(bundle)?;
        if columns != COLUMNS {
            return Err(PriceModelError::Columns {
                expected: COLUMNS.map(String::from).to_vec(),
                found: columns,
            });
        }
        Ok(PriceModel {
            version: bundle.manifest().version.clone(),
            model,
            lookups: json(bundle, "lookups.json")?,
            interval: json(bundle, "interval.json")?,
        })
    }

    pub fn price(&self, rows: &[PriceInput]) -> Result<Vec<Priced>, ModelError> {
        let pred = self.model.predict(&self.lookups.transform(rows))?;
        Ok(pred
            .into_iter()
            .map(|p| {
                let (low, high) = self.interval.bounds(p);
                Priced {
                    log_price: p,
                    low,
                    high,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(category: &str, market: &str) -> PriceInput {
        PriceInput {
            product_id: None,
            quantity: None,
            guest: Some(false),
            category: Some(category.into()),
            brand: Some("Acme".into()),
            condition: Some("new".into()),
            market: market.into(),
            seller_country: Some("DE".into()),
            title: Some("Blue ceramic mug".into()),
            month: 3,
        }
    }

    /// A cell by column name, so tests survive new columns.
    fn at(m: &Matrix, row: usize, name: &str) -> f64 {
        let j = COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("known column");
        m.row(row)[j]
    }

    #[test]
    fn smoothed_means_and_unknown_levels() {
        let rows = vec![row("Mugs", "DE"), row("Mugs", "FR"), row("Lamps", "DE")];
        let y = [1.0, 3.0, 5.0];
        let l = PricingLookups::fit(&rows, &y).unwrap();
        assert_eq!(l.global_mean, 3.0);
        let m = l.transform(&[row("Mugs", "DE"), row("Never seen", "JP")]);
        // Mugs: (1 + 3 + k·3) / (2 + k), k the category encoding's prior weight.
        let k = l.category.prior_rows;
        assert!((at(&m, 0, "category_price") - (4.0 + 3.0 * k) / (2.0 + k)).abs() < 1e-12);
        assert_eq!(at(&m, 0, "cross_border"), 0.0, "DE seller selling in DE");
        assert_eq!(at(&m, 0, "title_tokens"), 3.0);
        assert_eq!(
            at(&m, 0, "quantity_log"),
            0.0,
            "no quantity prices one unit"
        );
        // Unknown category and market: the global mean, zero rows, cross-border.
        assert_eq!(at(&m, 1, "category_price"), 3.0);
        assert_eq!(at(&m, 1, "market_price"), 3.0);
        assert_eq!(at(&m, 1, "category_rows_log"), 0.0);
        assert_eq!(at(&m, 1, "cross_border"), 1.0);
        let missing = l.transform(&[PriceInput {
            market: "DE".into(),
            ..Default::default()
        }]);
        for c in ["condition", "cross_border", "month", "guest"] {
            assert!(at(&missing, 0, c).is_nan(), "{c}");
        }
        assert_eq!(at(&missing, 0, "product_price"), 3.0);
        assert_eq!(at(&missing, 0, "product_price_std"), l.global_std);
    }

    #[test]
    fn product_history_and_out_of_range_inputs() {
        let mut rows = vec![row("Mugs", "DE"); 4];
        for (i, r) in rows.iter_mut().enumerate() {
            r.product_id = Some(if i < 3 { "P1" } else { "P2" }.into());
        }
        let y = [2.0, 2.0, 2.0, 6.0];
        let l = PricingLookups::fit(&rows, &y).unwrap();
        let probe = |product: &str, quantity: Option<f64>, month: u32| PriceInput {
            product_id: Some(product.into()),
            quantity,
            month,
            ..row("Mugs", "DE")
        };
        let m = l.transform(&[
            probe("P1", Some(12.0), 3),
            probe("P2", Some(-1.0), 13),
            probe("P9", Some(f64::INFINITY), 0),
        ]);
        // P1: (3·2 + k·3) / (3 + k); its three equal prices shrink the spread below global.
        let k = l.product.prior_rows;
        assert!((at(&m, 0, "product_price") - (6.0 + 3.0 * k) / (3.0 + k)).abs() < 1e-12);
        assert!(at(&m, 0, "product_price_std") < l.global_std);
        assert!((at(&m, 0, "product_rows_log") - 4f64.ln()).abs() < 1e-12);
        assert!((at(&m, 0, "quantity_log") - 12f64.ln()).abs() < 1e-12);
        // Out of range: a negative quantity and month 13 are missing, never a panic.
        assert!(at(&m, 1, "quantity_log").is_nan() && at(&m, 1, "month").is_nan());
        assert!(at(&m, 2, "quantity_log").is_nan());
        assert_eq!(at(&m, 2, "product_rows_log"), 0.0, "unknown product");
    }

    #[test]
    fn prior_weight_follows_the_data() {
        // Levels far apart with little spread inside: the level's own mean dominates.
        let distinct = (0..400).map(|i| (i % 20, f64::from(i % 20) + 0.01 * f64::from(i % 3)));
        let keys: Vec<(String, f64)> = distinct.map(|(k, y)| (format!("L{k}"), y)).collect();
        let e = Encoding::fit(keys.iter().map(|(k, y)| (Some(k.as_str()), *y)), 30.0);
        assert_eq!(e.prior_rows, MIN_PRIOR_ROWS);
        // Levels that do not differ at all: the global mean dominates.
        let same: Vec<(String, f64)> = (0..400)
            .map(|i| (format!("L{}", i % 20), f64::from(i % 7)))
            .collect();
        let e = Encoding::fit(same.iter().map(|(k, y)| (Some(k.as_str()), *y)), 4.0);
        assert!(e.prior_rows > 50.0, "{}", e.prior_rows);
    }

    #[test]
    fn quantity_tiers_price_per_product() {
        let rows: Vec<PriceInput> = [1.0, 1.0, 48.0, 48.0]
            .iter()
            .map(|q| PriceInput {
                product_id: Some("P".into()),
                quantity: Some(*q),
                ..row("Mugs", "DE")
            })
            .collect();
        let l = PricingLookups::fit(&rows, &[2.0, 2.0, 1.0, 1.0]).unwrap();
        let m = l.transform(&rows);
        assert!(at(&m, 0, "product_quantity_price") > at(&m, 2, "product_quantity_price"));
        assert_eq!(l.product_quantity.levels.len(), 2);
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
                (at(&m, i, "category_price") - own).abs() > 1e-9,
                "row {i} leaked its own price"
            );
            assert_eq!(at(&m, i, "category_rows_log"), 0.0, "unseen out of fold");
        }
        assert_eq!(full.category.levels.len(), 10);
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
    #[cfg(feature = "gbdt")]
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
