//! The linear baseline: linfa's ElasticNet on standardised features. Missing values
//! (NaN) are imputed with the training mean, i.e. 0 after standardisation. The fitted
//! model is plain JSON: columns, means, scales, coefficients, intercept.

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::estimator::{Fit, Matrix, ModelError, Params, Predict, check_training_data};

#[derive(Debug, Clone, PartialEq)]
pub struct LinearParams {
    /// Overall regularisation strength.
    pub penalty: f64,
    /// Share of L1 in the penalty (0: ridge, 1: lasso).
    pub l1_ratio: f64,
}

impl Default for LinearParams {
    fn default() -> Self {
        LinearParams {
            penalty: 0.001,
            l1_ratio: 0.5,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidLinearParams(LinearParams);

impl Params for LinearParams {
    type Checked = ValidLinearParams;

    fn check(&self) -> Result<ValidLinearParams, ModelError> {
        if !(self.penalty >= 0.0 && self.penalty.is_finite()) {
            return Err(ModelError::InvalidParam {
                name: "penalty",
                why: "must be finite and ≥ 0".into(),
            });
        }
        if !(0.0..=1.0).contains(&self.l1_ratio) {
            return Err(ModelError::InvalidParam {
                name: "l1_ratio",
                why: "must be in [0, 1]".into(),
            });
        }
        Ok(ValidLinearParams(self.clone()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub columns: Vec<String>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub coef: Vec<f64>,
    pub intercept: f64,
}

impl Linear {
    /// Absolute standardised coefficients: the change in log price per standard
    /// deviation of each column, in column order.
    pub fn importance(&self) -> Vec<f64> {
        self.coef.iter().map(|c| c.abs()).collect()
    }

    fn standardise(&self, x: &Matrix) -> Array2<f64> {
        let mut out = Array2::zeros((x.rows(), x.cols()));
        for i in 0..x.rows() {
            for (j, v) in x.row(i).iter().enumerate() {
                out[[i, j]] = if v.is_nan() {
                    0.0
                } else {
                    (v - self.mean[j]) / self.scale[j]
                };
            }
        }
        out
    }
}

impl Fit for ValidLinearParams {
    type Model = Linear;

    fn fit(&self, x: &Matrix, y: &[f64]) -> Result<Linear, ModelError> {
        use linfa::traits::Fit as _;
        check_training_data(x, y)?;
        let (mut mean, mut scale) = (Vec::new(), Vec::new());
        for j in 0..x.cols() {
            let col: Vec<f64> = (0..x.rows())
                .map(|i| x.row(i)[j])
                .filter(|v| !v.is_nan())
                .collect();
            let m = if col.is_empty() {
                0.0
            } else {
                col.iter().sum::<f64>() / col.len() as f64
            };
            let var = if col.is_empty() {
                0.0
            } else {
                col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / col.len() as f64
            };
            mean.push(m);
            // A constant column gets scale 1: it standardises to 0 and drops out.
            scale.push(if var > 0.0 { var.sqrt() } else { 1.0 });
        }
        let mut model = Linear {
            columns: x.names.clone(),
            mean,
            scale,
            coef: Vec::new(),
            intercept: 0.0,
        };
        let records = model.standardise(x);
        let dataset = linfa::Dataset::new(records, Array1::from(y.to_vec()));
        let fitted = linfa_elasticnet::ElasticNet::params()
            .penalty(self.0.penalty)
            .l1_ratio(self.0.l1_ratio)
            .fit(&dataset)
            .map_err(|e| ModelError::InvalidParam {
                name: "elasticnet",
                why: e.to_string(),
            })?;
        model.coef = fitted.hyperplane().to_vec();
        model.intercept = fitted.intercept();
        Ok(model)
    }
}

impl Predict for Linear {
    fn predict(&self, x: &Matrix) -> Result<Vec<f64>, ModelError> {
        if x.names != self.columns {
            return Err(ModelError::Columns {
                expected: self.columns.clone(),
                found: x.names.clone(),
            });
        }
        let z = self.standardise(x);
        Ok(z.rows()
            .into_iter()
            .map(|r| r.iter().zip(&self.coef).map(|(a, b)| a * b).sum::<f64>() + self.intercept)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_linear_function_and_round_trips_as_json() {
        let n = 300;
        let mut values = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let (a, b) = ((i % 17) as f64, ((i * 7) % 13) as f64);
            values.extend([a, b, if i % 10 == 0 { f64::NAN } else { 1.0 }]);
            y.push(2.0 * a - 3.0 * b + 5.0);
        }
        let x = Matrix::new(vec!["a".into(), "b".into(), "c".into()], values).unwrap();
        let model = LinearParams {
            penalty: 0.0001,
            l1_ratio: 0.5,
        }
        .check()
        .unwrap()
        .fit(&x, &y)
        .unwrap();
        let p = model.predict(&x).unwrap();
        let rmse = (p.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!(rmse < 0.05, "rmse {rmse}");
        let again: Linear = serde_json::from_str(&serde_json::to_string(&model).unwrap()).unwrap();
        assert_eq!(again.predict(&x).unwrap(), p);
        assert!(
            LinearParams {
                l1_ratio: 2.0,
                ..Default::default()
            }
            .check()
            .is_err()
        );
    }
}
