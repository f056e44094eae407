//! Gradient-boosted trees for regression with LightGBM (the `lightgbm3` crate, which
//! compiles LightGBM's own C++). The fitted model is stored in LightGBM's text
//! format, which every LightGBM binding loads.

use lightgbm3::{Booster, Dataset};

use crate::estimator::{Fit, Matrix, ModelError, Params, Predict, check_training_data};

#[derive(Debug, Clone, PartialEq)]
pub struct GbdtParams {
    pub trees: usize,
    pub learning_rate: f64,
    pub num_leaves: usize,
    pub min_data_in_leaf: usize,
    pub seed: u64,
    /// 0: LightGBM's default (all cores).
    pub threads: usize,
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            trees: 1000,
            learning_rate: 0.05,
            num_leaves: 31,
            min_data_in_leaf: 20,
            seed: 42,
            threads: 0,
        }
    }
}

/// [`GbdtParams`] that passed [`Params::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidGbdtParams(GbdtParams);

impl Params for GbdtParams {
    type Checked = ValidGbdtParams;

    fn check(&self) -> Result<ValidGbdtParams, ModelError> {
        let invalid = |name, why: &str| {
            Err(ModelError::InvalidParam {
                name,
                why: why.to_string(),
            })
        };
        if self.trees == 0 {
            return invalid("trees", "must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return invalid("learning_rate", "must be in (0, 1]");
        }
        if self.num_leaves < 2 {
            return invalid("num_leaves", "must be at least 2");
        }
        if self.min_data_in_leaf == 0 {
            return invalid("min_data_in_leaf", "must be at least 1");
        }
        Ok(ValidGbdtParams(self.clone()))
    }
}

/// A fitted model: the booster and the columns it was trained on, in order.
pub struct Gbdt {
    booster: Booster,
    columns: Vec<String>,
}

// SAFETY: the booster handle is only read after construction (predict, save,
// importance), and LightGBM's C API guards those calls with the booster's own
// shared mutex (`SHARED_LOCK(mutex_)` in c_api.cpp), so concurrent predictions from
// several threads are safe; training and freeing need `&mut`/ownership, which Rust
// already makes exclusive. lightgbm3 leaves the raw handle `!Send + !Sync` only
// because raw pointers are.
unsafe impl Send for Gbdt {}
unsafe impl Sync for Gbdt {}

/// Caps the threads every later LightGBM call in this process may use. A service
/// scores many small requests at once, one per request thread: letting each one
/// fan out to an OpenMP team as well would oversubscribe the cores.
pub fn set_max_threads(threads: usize) -> Result<(), ModelError> {
    let threads = i32::try_from(threads.max(1)).unwrap_or(i32::MAX);
    // SAFETY: plain integer argument; LightGBM stores it in a global.
    let rc = unsafe { lightgbm3_sys::LGBM_SetMaxThreads(threads) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ModelError::LightGbm(format!(
            "LGBM_SetMaxThreads({threads}) failed with {rc}"
        )))
    }
}

fn lgbm(e: lightgbm3::Error) -> ModelError {
    ModelError::LightGbm(e.to_string())
}

impl Fit for ValidGbdtParams {
    type Model = Gbdt;

    fn fit(&self, x: &Matrix, y: &[f64]) -> Result<Gbdt, ModelError> {
        check_training_data(x, y)?;
        let p = &self.0;
        let labels: Vec<f32> = y.iter().map(|v| *v as f32).collect();
        let mut dataset =
            Dataset::from_slice(&x.values, &labels, x.cols() as i32, true).map_err(lgbm)?;
        dataset.set_feature_names(&x.names).map_err(lgbm)?;
        let params = serde_json::json!({
            "objective": "regression",
            "num_iterations": p.trees,
            "learning_rate": p.learning_rate,
            "num_leaves": p.num_leaves,
            "min_data_in_leaf": p.min_data_in_leaf,
            "seed": p.seed,
            "deterministic": true,
            "num_threads": p.threads,
            "verbosity": -1,
        });
        let booster = Booster::train(dataset, &params).map_err(lgbm)?;
        Ok(Gbdt {
            booster,
            columns: x.names.clone(),
        })
    }
}

impl Gbdt {
    /// LightGBM's text model format.
    pub fn to_text(&self) -> Result<String, ModelError> {
        self.booster.save_string().map_err(lgbm)
    }

    pub fn from_text(text: &str) -> Result<Gbdt, ModelError> {
        let booster = Booster::from_string(text).map_err(lgbm)?;
        // The column names come from the model text's `feature_names=` line, not from
        // `Booster::feature_name`: lightgbm3 1.0.11 frees the name buffers it allocated
        // at 65 bytes through `CString::from_raw`, which re-measures them with strlen,
        // so a sized-deallocation allocator (jemalloc, which `sgml` uses) is handed the
        // wrong size and its heap is corrupted (seen as garbage in later JSON and rare
        // segfaults).
        let columns: Vec<String> = text
            .lines()
            .find_map(|l| l.strip_prefix("feature_names="))
            .ok_or_else(|| ModelError::LightGbm("the model text has no feature_names line".into()))?
            .split(' ')
            .map(str::to_string)
            .collect();
        if columns.len() as i32 != booster.num_features() {
            return Err(ModelError::LightGbm(format!(
                "the model text names {} features, its trees use {}",
                columns.len(),
                booster.num_features()
            )));
        }
        Ok(Gbdt { booster, columns })
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Total gain of the splits on each column, in column order.
    pub fn importance(&self) -> Result<Vec<f64>, ModelError> {
        self.booster
            .feature_importance(lightgbm3::ImportanceType::Gain)
            .map_err(lgbm)
    }
}

impl Predict for Gbdt {
    fn predict(&self, x: &Matrix) -> Result<Vec<f64>, ModelError> {
        if x.names != self.columns {
            return Err(ModelError::Columns {
                expected: self.columns.clone(),
                found: x.names.clone(),
            });
        }
        if x.rows() == 0 {
            return Ok(Vec::new());
        }
        self.booster
            .predict(&x.values, x.cols() as i32, true)
            .map_err(lgbm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = 3·a + 10·[b > 0.5] + small noise, on a fixed pseudo-random grid.
    fn data(n: usize, seed: u64) -> (Matrix, Vec<f64>) {
        let mut state = seed;
        let mut next = || {
            // xorshift: test data only, no crate needed.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f64 / 10_000.0
        };
        let mut values = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let (a, b) = (next(), next());
            values.extend([a, b]);
            y.push(3.0 * a + if b > 0.5 { 10.0 } else { 0.0 } + 0.01 * next());
        }
        (
            Matrix::new(vec!["a".into(), "b".into()], values).unwrap(),
            y,
        )
    }

    fn rmse(p: &[f64], y: &[f64]) -> f64 {
        (p.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64).sqrt()
    }

    fn small() -> GbdtParams {
        GbdtParams {
            trees: 100,
            learning_rate: 0.1,
            threads: 1,
            ..Default::default()
        }
    }

    #[test]
    fn learns_a_known_function_and_beats_the_mean() {
        let (x, y) = data(2000, 7);
        let (xt, yt) = data(500, 99);
        let model = small().check().unwrap().fit(&x, &y).unwrap();
        let p = model.predict(&xt).unwrap();
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let baseline = rmse(&vec![mean; yt.len()], &yt);
        assert!(
            rmse(&p, &yt) < 0.1 * baseline,
            "gbdt {} vs mean {baseline}",
            rmse(&p, &yt)
        );
    }

    #[test]
    fn text_round_trip_predicts_identically() {
        let (x, y) = data(500, 3);
        let model = small().check().unwrap().fit(&x, &y).unwrap();
        let again = Gbdt::from_text(&model.to_text().unwrap()).unwrap();
        assert_eq!(again.columns(), model.columns());
        assert_eq!(again.predict(&x).unwrap(), model.predict(&x).unwrap());
    }

    #[test]
    fn invalid_params_and_data_are_refused() {
        assert!(matches!(
            GbdtParams {
                trees: 0,
                ..small()
            }
            .check(),
            Err(ModelError::InvalidParam { name: "trees", .. })
        ));
        assert!(matches!(
            GbdtParams {
                learning_rate: 0.0,
                ..small()
            }
            .check(),
            Err(ModelError::InvalidParam { .. })
        ));
        let (x, _) = data(10, 1);
        assert_eq!(
            small().check().unwrap().fit(&x, &[2.0; 10]).err(),
            Some(ModelError::ConstantTarget(2.0))
        );
        let (x, y) = data(50, 1);
        let model = small().check().unwrap().fit(&x, &y).unwrap();
        let swapped = Matrix::new(vec!["b".into(), "a".into()], x.values.clone()).unwrap();
        assert!(matches!(
            model.predict(&swapped),
            Err(ModelError::Columns { .. })
        ));
    }
}
