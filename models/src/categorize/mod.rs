//! The product-title categorizer: a fastText-style classifier ([`model`]) over hashed
//! word and character n-grams ([`text`]), with calibrated probabilities and a review
//! threshold ([`calibrate`]), evaluated by [`metrics`].
//!
//! In a bundle (kind [`KIND`]): `weights.safetensors` holds the embedding rows that
//! training touched (`rows`: u32 bucket ids, `input`: f32 `rows × dim`) and the output
//! layer (`output`: f32 `categories × dim`); `categorizer.json` holds the categories,
//! the text-feature settings, the temperature and the review policy.

pub mod calibrate;
#[cfg(feature = "linear")]
pub mod dense;
pub mod metrics;
pub mod model;
#[cfg(feature = "report")]
pub mod report;
pub mod text;

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use self::calibrate::ReviewPolicy;
use self::model::Categorizer;
use self::text::TextFeatures;
use crate::bundle::{Bundle, BundleError};

pub const KIND: &str = "categorizer-fasttext";
pub const WEIGHTS: &str = "weights.safetensors";
pub const CONFIG: &str = "categorizer.json";

/// A categorizer as shipped: the model and when to send a listing to review.
#[derive(Debug, Clone, PartialEq)]
pub struct TitleCategorizer {
    pub model: Categorizer,
    pub review: ReviewPolicy,
}

#[derive(Debug, Serialize, Deserialize)]
struct Config {
    labels: Vec<String>,
    features: TextFeatures,
    dim: usize,
    temperature: f32,
    review: ReviewPolicy,
}

/// One title's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Categorized {
    /// The most likely categories with their probabilities, best first.
    pub top: Vec<(String, f32)>,
    /// The top probability is under the review threshold: a person should decide.
    pub needs_review: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CategorizerError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle kind `{0}` is not a categorizer ({KIND})")]
    Kind(String),
    #[error("bundle lacks {0}")]
    MissingFile(&'static str),
    #[error("bundle file {file}: {why}")]
    Parse { file: &'static str, why: String },
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl TitleCategorizer {
    pub fn categorize(&self, title: &str, k: usize) -> Categorized {
        let top = self.model.top_k(title, k.max(1));
        let needs_review = top[0].1 < self.review.threshold;
        Categorized {
            top: top
                .into_iter()
                .map(|(c, p)| (self.model.labels[c].clone(), p))
                .collect(),
            needs_review,
        }
    }

    /// The bundle files: weights (safetensors) and configuration (JSON).
    pub fn to_files(&self) -> Vec<(String, Vec<u8>)> {
        let m = &self.model;
        let rows: Vec<u32> = m
            .input
            .chunks_exact(m.dim)
            .enumerate()
            .filter(|(_, r)| r.iter().any(|v| *v != 0.0))
            .map(|(i, _)| i as u32)
            .collect();
        let input: Vec<f32> = rows
            .iter()
            .flat_map(|&r| {
                m.input[r as usize * m.dim..(r as usize + 1) * m.dim]
                    .iter()
                    .copied()
            })
            .collect();
        let row_bytes: Vec<u8> = rows.iter().flat_map(|r| r.to_le_bytes()).collect();
        let (input_bytes, output_bytes) = (f32_bytes(&input), f32_bytes(&m.output));
        let tensors = [
            (
                "rows",
                TensorView::new(Dtype::U32, vec![rows.len()], &row_bytes),
            ),
            (
                "input",
                TensorView::new(Dtype::F32, vec![rows.len(), m.dim], &input_bytes),
            ),
            (
                "output",
                TensorView::new(Dtype::F32, vec![m.labels.len(), m.dim], &output_bytes),
            ),
        ]
        .map(|(name, view)| (name, view.expect("shapes match the byte lengths")));
        let weights = safetensors::serialize(tensors, None::<HashMap<String, String>>)
            .expect("in-memory serialization");
        let config = Config {
            labels: m.labels.clone(),
            features: m.features.clone(),
            dim: m.dim,
            temperature: m.temperature,
            review: self.review.clone(),
        };
        vec![
            (WEIGHTS.to_string(), weights),
            (
                CONFIG.to_string(),
                serde_json::to_vec_pretty(&config).expect("plain data"),
            ),
        ]
    }

    /// From a verified bundle.
    pub fn from_bundle(bundle: &Bundle) -> Result<TitleCategorizer, CategorizerError> {
        if bundle.manifest().kind != KIND {
            return Err(CategorizerError::Kind(bundle.manifest().kind.clone()));
        }
        let file = |p: &'static str| bundle.file(p).ok_or(CategorizerError::MissingFile(p));
        let bad = |file: &'static str| move |why: String| CategorizerError::Parse { file, why };
        let config: Config =
            serde_json::from_slice(file(CONFIG)?).map_err(|e| bad(CONFIG)(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(file(WEIGHTS)?)
            .map_err(|e| bad(WEIGHTS)(e.to_string()))?;
        let tensor = |name: &str, dtype: Dtype, shape: &[usize]| {
            let t = st
                .tensor(name)
                .map_err(|e| bad(WEIGHTS)(format!("{name}: {e}")))?;
            if t.dtype() != dtype || t.shape() != shape {
                return Err(bad(WEIGHTS)(format!(
                    "{name} is {:?} {:?}, expected {dtype:?} {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data().to_vec())
        };
        let dim = config.dim;
        let n_rows = st
            .tensor("rows")
            .map_err(|e| bad(WEIGHTS)(format!("rows: {e}")))?
            .shape()
            .first()
            .copied()
            .unwrap_or(0);
        let rows: Vec<u32> = tensor("rows", Dtype::U32, &[n_rows])?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let floats = |bytes: Vec<u8>| -> Vec<f32> {
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect()
        };
        let sparse = floats(tensor("input", Dtype::F32, &[n_rows, dim])?);
        let output = floats(tensor("output", Dtype::F32, &[config.labels.len(), dim])?);
        let buckets = config.features.buckets as usize;
        let mut input = vec![0.0f32; buckets * dim];
        for (i, &r) in rows.iter().enumerate() {
            let r = r as usize;
            if r >= buckets {
                return Err(bad(WEIGHTS)(format!(
                    "row {r} is outside the {buckets} buckets"
                )));
            }
            input[r * dim..(r + 1) * dim].copy_from_slice(&sparse[i * dim..(i + 1) * dim]);
        }
        Ok(TitleCategorizer {
            model: Categorizer {
                features: config.features,
                labels: config.labels,
                dim,
                input,
                output,
                temperature: config.temperature,
            },
            review: config.review,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::calibrate::review_policy;
    use super::model::tests::fitted;
    use super::*;
    use crate::bundle::Gate;

    fn trained() -> TitleCategorizer {
        TitleCategorizer {
            model: fitted(300, 5),
            review: review_policy(&[(0.9, true), (0.5, false)], 0.9),
        }
    }

    fn bundle_files(c: &TitleCategorizer) -> BTreeMap<String, Vec<u8>> {
        let manifest = crate::bundle::test_manifest(
            "categorize",
            KIND,
            Gate {
                metric: "macro_f1".into(),
                direction: crate::bundle::Direction::Higher,
                tolerance: 0.005,
            },
        );
        let bundle = Bundle::new(manifest, c.to_files().into_iter().collect()).unwrap();
        bundle.to_files().into_iter().collect()
    }

    #[test]
    fn bundle_round_trip_predicts_identically_and_tampering_is_refused() {
        let c = trained();
        let mut files = bundle_files(&c);
        let loaded =
            TitleCategorizer::from_bundle(&Bundle::from_files(files.clone()).unwrap()).unwrap();
        assert_eq!(loaded, c);
        for title in ["blue mug", "classic novel gift", "", "boot 🎉"] {
            assert_eq!(loaded.categorize(title, 3), c.categorize(title, 3));
        }
        assert!(
            c.categorize("", 1).needs_review,
            "a title with no words goes to review"
        );
        let weights = files.get_mut(WEIGHTS).unwrap();
        let i = weights.len() - 3;
        weights[i] ^= 0x40;
        assert!(matches!(
            Bundle::from_files(files),
            Err(BundleError::ChecksumMismatch { .. })
        ));
    }
}
