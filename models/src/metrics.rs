//! Regression metrics on log price and on price, and split-conformal intervals.
//!
//! Models predict log price; a seller reads prices. Errors on the log scale (RMSE,
//! MAE) are relative errors; MAPE and the median absolute percentage error are on
//! the price scale. Written here rather than taken from linfa because the pricing
//! report needs exactly these, on plain slices, in a crate without ndarray.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub rows: usize,
    pub rmse_log: f64,
    pub mae_log: f64,
    /// Mean absolute percentage error of `exp(prediction)` against the price.
    pub mape: f64,
    pub median_ape: f64,
    pub r2_log: f64,
}

/// Metrics of log-price predictions against log-price truth. Empty input gives NaN
/// metrics (and `rows: 0`), never a panic.
pub fn regression(pred_log: &[f64], true_log: &[f64]) -> RegressionMetrics {
    assert_eq!(pred_log.len(), true_log.len(), "one prediction per row");
    let n = pred_log.len();
    if n == 0 {
        return RegressionMetrics {
            rows: 0,
            rmse_log: f64::NAN,
            mae_log: f64::NAN,
            mape: f64::NAN,
            median_ape: f64::NAN,
            r2_log: f64::NAN,
        };
    }
    let nf = n as f64;
    let err: Vec<f64> = pred_log.iter().zip(true_log).map(|(p, t)| p - t).collect();
    let mean = true_log.iter().sum::<f64>() / nf;
    let ss_tot: f64 = true_log.iter().map(|t| (t - mean).powi(2)).sum();
    let ss_res: f64 = err.iter().map(|e| e * e).sum();
    let mut ape: Vec<f64> = pred_log
        .iter()
        .zip(true_log)
        .map(|(p, t)| ((p.exp() - t.exp()) / t.exp()).abs())
        .collect();
    RegressionMetrics {
        rows: n,
        rmse_log: (ss_res / nf).sqrt(),
        mae_log: err.iter().map(|e| e.abs()).sum::<f64>() / nf,
        mape: ape.iter().sum::<f64>() / nf,
        median_ape: median(&mut ape),
        r2_log: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            f64::NAN
        },
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A symmetric split-conformal interval on the log scale: `prediction ± half_width`
/// covers the truth with probability ≥ `coverage` for rows exchangeable with the
/// calibration rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConformalInterval {
    pub coverage: f64,
    /// Infinite when calibration had too few rows; JSON has no infinity, so it is
    /// written as `null` and read back as infinity (else such a bundle never loads).
    #[serde(deserialize_with = "infinite_if_null")]
    pub half_width: f64,
}

fn infinite_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

impl ConformalInterval {
    /// From absolute residuals on held-out calibration rows: the
    /// ⌈(n+1)·coverage⌉-th smallest residual (infinite when n is too small).
    pub fn calibrate(abs_residuals: &[f64], coverage: f64) -> ConformalInterval {
        assert!((0.0..1.0).contains(&coverage), "coverage in [0, 1)");
        let mut r: Vec<f64> = abs_residuals.iter().map(|x| x.abs()).collect();
        r.sort_by(f64::total_cmp);
        let k = ((r.len() + 1) as f64 * coverage).ceil() as usize;
        let half_width = if k == 0 {
            0.0
        } else {
            r.get(k - 1).copied().unwrap_or(f64::INFINITY)
        };
        ConformalInterval {
            coverage,
            half_width,
        }
    }

    pub fn bounds(&self, prediction: f64) -> (f64, f64) {
        (prediction - self.half_width, prediction + self.half_width)
    }

    /// The share of rows whose truth falls inside their interval.
    pub fn empirical_coverage(&self, pred: &[f64], truth: &[f64]) -> f64 {
        let inside = pred
            .iter()
            .zip(truth)
            .filter(|(p, t)| (*p - *t).abs() <= self.half_width)
            .count();
        inside as f64 / pred.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_interval_too_wide_to_bound_round_trips_as_json() {
        let wide = super::ConformalInterval::calibrate(&[0.1, 0.2, 0.3], 0.9);
        assert!(wide.half_width.is_infinite());
        let back: super::ConformalInterval =
            serde_json::from_str(&serde_json::to_string(&wide).unwrap()).unwrap();
        assert_eq!(back, wide);
    }

    use super::*;

    #[test]
    fn metrics_on_a_hand_computed_case() {
        let truth = [0.0f64, 1.0, 2.0];
        let pred = [0.0f64, 1.5, 2.0];
        let m = regression(&pred, &truth);
        assert!((m.rmse_log - (0.25f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m.mae_log - 0.5 / 3.0).abs() < 1e-12);
        assert!((m.r2_log - (1.0 - 0.25 / 2.0)).abs() < 1e-12);
        let ape1 = ((1.5f64).exp() - 1f64.exp()).abs() / 1f64.exp();
        assert!((m.mape - ape1 / 3.0).abs() < 1e-12);
        assert_eq!(m.median_ape, 0.0);
        assert_eq!(regression(&[], &[]).rows, 0);
    }

    #[test]
    fn conformal_interval_covers_as_promised() {
        // Residuals 1..=99: the 90% interval is the 90th smallest (⌈100·0.9⌉ = 90).
        let residuals: Vec<f64> = (1..=99).map(f64::from).collect();
        let ci = ConformalInterval::calibrate(&residuals, 0.9);
        assert_eq!(ci.half_width, 90.0);
        assert_eq!(ci.bounds(100.0), (10.0, 190.0));
        let pred: Vec<f64> = vec![0.0; 99];
        assert!((ci.empirical_coverage(&pred, &residuals) - 90.0 / 99.0).abs() < 1e-12);
        // Too few calibration rows for the asked coverage: an honest infinite interval.
        assert!(
            ConformalInterval::calibrate(&[1.0, 2.0], 0.9)
                .half_width
                .is_infinite()
        );
    }
}
