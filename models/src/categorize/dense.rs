//! The other categorizer: multinomial logistic regression over sentence embeddings
//! ([`crate::embed`]), fitted by linfa-logistic (L-BFGS). It competes with the n-gram
//! model on the same cuts; training reports which wins.

use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};

use super::model::softmax;
use crate::estimator::ModelError;

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingClassifierParams {
    /// L2 penalty.
    pub alpha: f64,
    pub max_iterations: u64,
}

impl Default for EmbeddingClassifierParams {
    fn default() -> Self {
        EmbeddingClassifierParams {
            alpha: 1e-4,
            max_iterations: 200,
        }
    }
}

/// [`EmbeddingClassifierParams`] that passed [`EmbeddingClassifierParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEmbeddingClassifierParams(EmbeddingClassifierParams);

impl EmbeddingClassifierParams {
    pub fn check(&self) -> Result<ValidEmbeddingClassifierParams, ModelError> {
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(ModelError::InvalidParam {
                name: "alpha",
                why: "must be a finite number >= 0".into(),
            });
        }
        if self.max_iterations == 0 {
            return Err(ModelError::InvalidParam {
                name: "max_iterations",
                why: "must be at least 1".into(),
            });
        }
        Ok(ValidEmbeddingClassifierParams(self.clone()))
    }
}

/// A fitted embedding classifier over `labels` (those seen in training).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingClassifier {
    pub labels: Vec<String>,
    pub dim: usize,
    /// `labels × dim`, row-major.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub temperature: f32,
}

impl ValidEmbeddingClassifierParams {
    /// Fits on vectors (all of one width) and their label indices into `labels`.
    pub fn fit(
        &self,
        vectors: &[Vec<f32>],
        targets: &[usize],
        labels: &[String],
    ) -> Result<EmbeddingClassifier, ModelError> {
        let Some(dim) = vectors.first().map(Vec::len) else {
            return Err(ModelError::Empty);
        };
        if vectors.len() != targets.len() || vectors.iter().any(|v| v.len() != dim) {
            return Err(ModelError::Shape(format!(
                "{} vectors of mixed widths for {} targets",
                vectors.len(),
                targets.len()
            )));
        }
        let x = Array2::from_shape_fn((vectors.len(), dim), |(i, j)| vectors[i][j] as f64);
        let y = Array1::from_iter(targets.iter().copied());
        let fitted = MultiLogisticRegression::default()
            .alpha(self.0.alpha)
            .max_iterations(self.0.max_iterations)
            .fit(&Dataset::new(x, y))
            .map_err(|e| ModelError::Shape(format!("logistic regression: {e}")))?;
        // linfa orders classes by value and knows only those it saw.
        let classes = fitted.classes();
        let (params, intercept) = (fitted.params(), fitted.intercept());
        let mut weights = Vec::with_capacity(classes.len() * dim);
        for c in 0..classes.len() {
            weights.extend(params.column(c).iter().map(|w| *w as f32));
        }
        Ok(EmbeddingClassifier {
            labels: classes.iter().map(|&c| labels[c].clone()).collect(),
            dim,
            weights,
            bias: intercept.iter().map(|b| *b as f32).collect(),
            temperature: 1.0,
        })
    }
}

impl EmbeddingClassifier {
    pub fn logits(&self, vector: &[f32]) -> Vec<f32> {
        self.weights
            .chunks_exact(self.dim)
            .zip(&self.bias)
            .map(|(w, b)| b + w.iter().zip(vector).map(|(a, x)| a * x).sum::<f32>())
            .collect()
    }

    pub fn probabilities(&self, vector: &[f32]) -> Vec<f32> {
        let mut p = self.logits(vector);
        softmax(&mut p, self.temperature);
        p
    }

    /// The most likely label and its probability.
    pub fn top(&self, vector: &[f32]) -> (usize, f32) {
        self.probabilities(vector)
            .into_iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .expect("at least one label")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Three classes around three unit directions, with noise.
    #[test]
    fn learns_separable_directions() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for i in 0..300 {
            let c = i % 3;
            let mut v: Vec<f32> = (0..8).map(|_| rng.gen_range(-0.2..0.2)).collect();
            v[c] += 1.0;
            xs.push(v);
            ys.push(c);
        }
        let model = EmbeddingClassifierParams::default()
            .check()
            .unwrap()
            .fit(&xs, &ys, &labels)
            .unwrap();
        assert_eq!(model.labels, labels);
        let right = xs
            .iter()
            .zip(&ys)
            .filter(|(x, y)| model.top(x).0 == **y)
            .count();
        assert!(right >= 295, "{right}/300");
        let p = model.probabilities(&xs[0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn bad_input_is_refused() {
        let v = EmbeddingClassifierParams::default().check().unwrap();
        assert!(matches!(v.fit(&[], &[], &[]), Err(ModelError::Empty)));
        let labels = vec!["a".to_string()];
        assert!(
            v.fit(&[vec![1.0], vec![1.0, 2.0]], &[0, 0], &labels)
                .is_err()
        );
        let bad = EmbeddingClassifierParams {
            alpha: -1.0,
            ..Default::default()
        };
        assert!(bad.check().is_err());
    }
}
