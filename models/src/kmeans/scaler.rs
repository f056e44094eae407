//! Raw features → the space k-means measures distances in: missing values take the
//! column's training median, then each block of columns is centred and scaled so that
//! its total variance is its weight.
//!
//! Blocks, because the features are not alike: a 384-d title embedding standardised
//! column by column would turn its many near-silent dimensions into noise that
//! drowns a price column, so an embedding is one `Joint` block (one scale for all
//! its columns, keeping its geometry), and a few numeric columns a `PerColumn` block
//! (each standardised). The weights then say how much each block counts.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{KMeansError, Points};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// One scale for the whole block (an embedding).
    Joint,
    /// Each column standardised (counts, rates, prices).
    PerColumn,
}

/// A run of consecutive feature columns scaled together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub name: String,
    pub columns: usize,
    pub scaling: Scaling,
    /// The block's total variance after scaling.
    pub weight: f64,
}

/// Fitted imputation and scaling: `x' = (fill(x) − mean) · scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    pub fill: Vec<f32>,
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
}

impl Scaler {
    pub fn fit(x: Points, blocks: &[Block]) -> Result<Scaler, KMeansError> {
        let covered: usize = blocks.iter().map(|b| b.columns).sum();
        if covered != x.dim() {
            return Err(KMeansError::InvalidParam {
                name: "blocks",
                why: format!("cover {covered} columns, the rows have {}", x.dim()),
            });
        }
        if let Some(b) = blocks
            .iter()
            .find(|b| !(b.weight.is_finite() && b.weight > 0.0) || b.columns == 0)
        {
            return Err(KMeansError::InvalidParam {
                name: "blocks",
                why: format!("block `{}` needs columns and a weight > 0", b.name),
            });
        }
        if x.rows() == 0 {
            return Err(KMeansError::TooFewRows { rows: 0, k: 1 });
        }
        let n = x.rows();
        // (fill, mean, variance) of each column, the mean and variance after filling.
        let stats: Vec<(f32, f64, f64)> = (0..x.dim())
            .into_par_iter()
            .map(|j| {
                let mut known: Vec<f32> = (0..n)
                    .map(|i| x.row(i)[j])
                    .filter(|v| !v.is_nan())
                    .collect();
                let fill = median(&mut known);
                let (mut sum, mut sq) = (0.0f64, 0.0f64);
                for i in 0..n {
                    let v = f64::from(filled(x.row(i)[j], fill));
                    sum += v;
                    sq += v * v;
                }
                let mean = sum / n as f64;
                (fill, mean, (sq / n as f64 - mean * mean).max(0.0))
            })
            .collect();
        let mut scale = Vec::with_capacity(x.dim());
        let mut first = 0;
        for b in blocks {
            let block = &stats[first..first + b.columns];
            match b.scaling {
                Scaling::Joint => {
                    let total: f64 = block.iter().map(|s| s.2).sum();
                    let s = if total > 0.0 {
                        (b.weight / total).sqrt()
                    } else {
                        0.0
                    };
                    scale.extend(std::iter::repeat_n(s as f32, b.columns));
                }
                Scaling::PerColumn => {
                    let per = b.weight / b.columns as f64;
                    // A constant column carries nothing: scale 0 rather than 1/0.
                    scale.extend(block.iter().map(|s| {
                        if s.2 > 0.0 {
                            (per / s.2).sqrt() as f32
                        } else {
                            0.0
                        }
                    }));
                }
            }
            first += b.columns;
        }
        Ok(Scaler {
            fill: stats.iter().map(|s| s.0).collect(),
            mean: stats.iter().map(|s| s.1 as f32).collect(),
            scale,
        })
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    pub fn transform(&self, x: Points) -> Result<Vec<f32>, KMeansError> {
        if x.dim() != self.dim() {
            return Err(KMeansError::Features {
                expected: self.dim(),
                found: x.dim(),
            });
        }
        Ok(x.values()
            .par_chunks(x.dim())
            .flat_map_iter(|r| {
                r.iter()
                    .enumerate()
                    .map(|(j, &v)| (filled(v, self.fill[j]) - self.mean[j]) * self.scale[j])
            })
            .collect())
    }
}

fn filled(v: f32, fill: f32) -> f32 {
    if v.is_nan() { fill } else { v }
}

/// The median (the mean of the middle two for an even count); 0 when empty.
fn median(values: &mut [f32]) -> f32 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let (_, &mut hi, _) = values.select_nth_unstable_by(n / 2, f32::total_cmp);
    if n % 2 == 1 {
        return hi;
    }
    let lo = values[..n / 2]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str, columns: usize, scaling: Scaling, weight: f64) -> Block {
        Block {
            name: name.into(),
            columns,
            scaling,
            weight,
        }
    }

    #[test]
    fn blocks_get_their_weight_of_variance_and_nan_takes_the_median() {
        // Columns 0–1 a joint block, 2 a per-column one with a missing value.
        let x = [
            1.0,
            0.0,
            10.0, //
            3.0,
            0.0,
            f32::NAN, //
            5.0,
            2.0,
            30.0, //
            7.0,
            2.0,
            40.0,
        ];
        let blocks = [
            block("embedding", 2, Scaling::Joint, 1.0),
            block("price", 1, Scaling::PerColumn, 0.5),
        ];
        let s = Scaler::fit(Points::new(&x, 3).unwrap(), &blocks).unwrap();
        assert_eq!(s.fill, [4.0, 1.0, 30.0]);
        let t = s.transform(Points::new(&x, 3).unwrap()).unwrap();
        let var = |j: usize| {
            let col: Vec<f64> = t.chunks(3).map(|r| f64::from(r[j])).collect();
            let m = col.iter().sum::<f64>() / 4.0;
            col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 4.0
        };
        assert!((var(0) + var(1) - 1.0).abs() < 1e-5);
        assert!((var(2) - 0.5).abs() < 1e-5);
        // Joint: the block keeps its shape (column 0 varies 5× as much as column 1).
        assert!((var(0) / var(1) - 5.0).abs() < 1e-4);
        // The missing value became the median, so the row has no NaN.
        assert!(t.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn constant_columns_and_bad_blocks() {
        let x = [2.0f32, 1.0, 2.0, 3.0];
        let p = Points::new(&x, 2).unwrap();
        let s = Scaler::fit(
            p,
            &[
                block("a", 1, Scaling::PerColumn, 1.0),
                block("b", 1, Scaling::PerColumn, 1.0),
            ],
        )
        .unwrap();
        assert_eq!(s.scale[0], 0.0);
        assert!(matches!(
            Scaler::fit(p, &[block("a", 1, Scaling::Joint, 1.0)]),
            Err(KMeansError::InvalidParam { name: "blocks", .. })
        ));
        assert!(matches!(
            Scaler::fit(p, &[block("a", 2, Scaling::Joint, 0.0)]),
            Err(KMeansError::InvalidParam { name: "blocks", .. })
        ));
        let wrong = [1.0f32, 2.0, 3.0];
        assert!(matches!(
            s.transform(Points::new(&wrong, 3).unwrap()),
            Err(KMeansError::Features {
                expected: 2,
                found: 3
            })
        ));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
