//! The estimator traits, in the style of linfa: parameters are a plain struct checked
//! once ([`Params::check`]) into a validated form that can fit; a fitted model
//! predicts. Data is a dense row-major matrix of `f64` with named columns.

/// A dense, row-major feature matrix. Missing values are `NaN` (LightGBM's convention).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub names: Vec<String>,
    pub values: Vec<f64>,
}

impl Matrix {
    pub fn new(names: Vec<String>, values: Vec<f64>) -> Result<Matrix, ModelError> {
        if names.is_empty() {
            return Err(ModelError::Shape(
                "a matrix needs at least one column".into(),
            ));
        }
        if !values.len().is_multiple_of(names.len()) {
            return Err(ModelError::Shape(format!(
                "{} values do not fill rows of {} columns",
                values.len(),
                names.len()
            )));
        }
        Ok(Matrix { names, values })
    }

    pub fn cols(&self) -> usize {
        self.names.len()
    }

    pub fn rows(&self) -> usize {
        self.values.len() / self.cols()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.cols()..(i + 1) * self.cols()]
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("invalid parameter `{name}`: {why}")]
    InvalidParam { name: &'static str, why: String },
    #[error("no training rows")]
    Empty,
    #[error("shape: {0}")]
    Shape(String),
    #[error("target value at row {row} is {value} (targets must be finite)")]
    NonFiniteTarget { row: usize, value: f64 },
    #[error("feature `{column}` is infinite at row {row} (use NaN for missing values)")]
    InfiniteFeature { column: String, row: usize },
    #[error("the target is constant ({0}): there is nothing to learn")]
    ConstantTarget(f64),
    #[error("model expects columns {expected:?}, got {found:?}")]
    Columns {
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error("LightGBM: {0}")]
    LightGbm(String),
}

/// Hyper-parameters before validation.
pub trait Params {
    type Checked: Fit;
    fn check(&self) -> Result<Self::Checked, ModelError>;
}

/// Validated parameters that can fit a model.
pub trait Fit {
    type Model: Predict;
    fn fit(&self, x: &Matrix, y: &[f64]) -> Result<Self::Model, ModelError>;
}

/// `Send + Sync`: a loaded model is shared by the threads of a service (`sgml serve`).
pub trait Predict: Send + Sync {
    fn predict(&self, x: &Matrix) -> Result<Vec<f64>, ModelError>;
}

/// The checks every estimator makes on training data, so that bad data is a clear
/// error rather than a panic or a silently useless model.
pub fn check_training_data(x: &Matrix, y: &[f64]) -> Result<(), ModelError> {
    if x.rows() == 0 || y.is_empty() {
        return Err(ModelError::Empty);
    }
    if x.rows() != y.len() {
        return Err(ModelError::Shape(format!(
            "{} rows of features, {} targets",
            x.rows(),
            y.len()
        )));
    }
    if let Some((row, value)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ModelError::NonFiniteTarget { row, value: *value });
    }
    if let Some(i) = x.values.iter().position(|v| v.is_infinite()) {
        return Err(ModelError::InfiniteFeature {
            column: x.names[i % x.cols()].clone(),
            row: i / x.cols(),
        });
    }
    if y.iter().all(|v| *v == y[0]) {
        return Err(ModelError::ConstantTarget(y[0]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(values: Vec<f64>) -> Matrix {
        Matrix::new(vec!["a".into(), "b".into()], values).unwrap()
    }

    #[test]
    fn bad_training_data_is_a_clear_error() {
        assert_eq!(check_training_data(&m(vec![]), &[]), Err(ModelError::Empty));
        assert!(matches!(
            check_training_data(&m(vec![1.0, 2.0]), &[1.0, 2.0]),
            Err(ModelError::Shape(_))
        ));
        assert!(matches!(
            check_training_data(&m(vec![1.0, 2.0, 3.0, 4.0]), &[1.0, f64::NAN]),
            Err(ModelError::NonFiniteTarget { row: 1, value }) if value.is_nan()
        ));
        assert!(matches!(
            check_training_data(&m(vec![1.0, f64::INFINITY, 3.0, 4.0]), &[1.0, 2.0]),
            Err(ModelError::InfiniteFeature { row: 0, .. })
        ));
        assert_eq!(
            check_training_data(&m(vec![1.0, 2.0, 3.0, 4.0]), &[5.0, 5.0]),
            Err(ModelError::ConstantTarget(5.0))
        );
        assert!(
            check_training_data(&m(vec![1.0, f64::NAN, 3.0, 4.0]), &[1.0, 2.0]).is_ok(),
            "NaN features are missing values"
        );
        assert!(Matrix::new(vec!["a".into(), "b".into()], vec![1.0]).is_err());
    }
}
