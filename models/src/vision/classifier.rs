//! The image classifier: a product's category from its photo, as multinomial logistic
//! regression over the frozen EfficientNet-Lite0 features ([`super::ImageEmbedder`]),
//! standardised first (pooled ReLU6 outputs span very different ranges per feature,
//! and L-BFGS converges in far fewer steps on unit-variance inputs), with a
//! temperature and a review threshold calibrated as the title categorizer's are.
//!
//! In a bundle (kind [`KIND`]): `weights.safetensors` holds `mean` and `scale` (the
//! standardisation, `dim` each), `weights` (`labels × dim`) and `bias`;
//! `image-classifier.json` the labels, temperature, review policy and the sha256 of the
//! backbone weights the features came from — a bundle is refused by a backbone other
//! than the one it was trained on, since its weights would read meaningless features.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, BundleError};
use crate::categorize::Categorized;
use crate::categorize::calibrate::ReviewPolicy;
use crate::categorize::dense::{EmbeddingClassifier, ValidEmbeddingClassifierParams};
use crate::categorize::model::softmax;
use crate::estimator::ModelError;

pub const KIND: &str = "image-classifier";
pub const WEIGHTS: &str = "weights.safetensors";
pub const CONFIG: &str = "image-classifier.json";

/// Features whose spread is below this are treated as constant (scale 1).
const MIN_STD: f32 = 1e-6;

/// A fitted image classifier, ready to ship.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageClassifier {
    pub labels: Vec<String>,
    pub dim: usize,
    /// Per-feature mean and 1 / standard deviation of the fit photos.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// `labels × dim`, row-major, over standardised features.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub temperature: f32,
    pub review: ReviewPolicy,
    /// sha256 of the backbone weights whose features this reads.
    pub backbone_sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Config {
    labels: Vec<String>,
    dim: usize,
    temperature: f32,
    review: ReviewPolicy,
    backbone: String,
    backbone_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageClassifierError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle kind `{0}` is not an image classifier ({KIND})")]
    Kind(String),
    #[error("bundle lacks {0}")]
    MissingFile(&'static str),
    #[error("bundle file {file}: {why}")]
    Parse { file: &'static str, why: String },
    #[error(
        "the bundle was trained on features of backbone weights {bundle}, not of the ones loaded \
         ({loaded}): its weights would read meaningless features"
    )]
    Backbone { bundle: String, loaded: String },
}

/// Per-feature mean and inverse spread of `vectors`.
fn standardisation(vectors: &[Vec<f32>], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = vectors.len().max(1) as f64;
    let mut mean = vec![0.0f64; dim];
    for v in vectors {
        mean.iter_mut()
            .zip(v)
            .for_each(|(m, x)| *m += f64::from(*x));
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; dim];
    for v in vectors {
        for ((s, x), m) in var.iter_mut().zip(v).zip(&mean) {
            *s += (f64::from(*x) - m).powi(2);
        }
    }
    let scale = var
        .iter()
        .map(|s| {
            let sd = (s / n).sqrt() as f32;
            if sd > MIN_STD { 1.0 / sd } else { 1.0 }
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), scale)
}

impl ImageClassifier {
    /// Fits on the fit cut's features and label indices into `labels`; temperature 1
    /// and no review threshold until calibrated by the caller.
    pub fn fit(
        params: &ValidEmbeddingClassifierParams,
        vectors: &[Vec<f32>],
        targets: &[usize],
        labels: &[String],
        backbone_sha256: &str,
    ) -> Result<ImageClassifier, ModelError> {
        let Some(dim) = vectors.first().map(Vec::len) else {
            return Err(ModelError::Empty);
        };
        if vectors.iter().any(|v| v.len() != dim) {
            return Err(ModelError::Shape("features of mixed widths".into()));
        }
        let (mean, scale) = standardisation(vectors, dim);
        let standard: Vec<Vec<f32>> = vectors
            .iter()
            .map(|v| standardise(v, &mean, &scale))
            .collect();
        let EmbeddingClassifier {
            labels,
            weights,
            bias,
            ..
        } = params.fit(&standard, targets, labels)?;
        Ok(ImageClassifier {
            labels,
            dim,
            mean,
            scale,
            weights,
            bias,
            temperature: 1.0,
            review: ReviewPolicy {
                threshold: 0.0,
                target_precision: 0.0,
                auto_share: 1.0,
                auto_precision: f64::NAN,
            },
            backbone_sha256: backbone_sha256.to_owned(),
        })
    }

    /// Raw scores per label (before the temperature).
    pub fn logits(&self, features: &[f32]) -> Vec<f32> {
        let x = standardise(features, &self.mean, &self.scale);
        self.weights
            .chunks_exact(self.dim)
            .zip(&self.bias)
            .map(|(w, b)| b + w.iter().zip(&x).map(|(a, v)| a * v).sum::<f32>())
            .collect()
    }

    pub fn probabilities(&self, features: &[f32]) -> Vec<f32> {
        let mut p = self.logits(features);
        softmax(&mut p, self.temperature);
        p
    }

    /// The `k` most likely labels (best first), and whether the best is under the
    /// review threshold.
    pub fn classify(&self, features: &[f32], k: usize) -> Categorized {
        let mut ranked: Vec<(usize, f32)> = self
            .probabilities(features)
            .into_iter()
            .enumerate()
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k.max(1));
        Categorized {
            needs_review: ranked[0].1 < self.review.threshold,
            top: ranked
                .into_iter()
                .map(|(c, p)| (self.labels[c].clone(), p))
                .collect(),
        }
    }

    /// The bundle files: weights (safetensors) and configuration (JSON).
    pub fn to_files(&self) -> Vec<(String, Vec<u8>)> {
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (mean, scale, weights, bias) = (
            bytes(&self.mean),
            bytes(&self.scale),
            bytes(&self.weights),
            bytes(&self.bias),
        );
        let k = self.labels.len();
        let tensors = [
            ("mean", vec![self.dim], &mean),
            ("scale", vec![self.dim], &scale),
            ("weights", vec![k, self.dim], &weights),
            ("bias", vec![k], &bias),
        ]
        .map(|(name, shape, data)| {
            (
                name,
                TensorView::new(Dtype::F32, shape, data).expect("shapes match the byte lengths"),
            )
        });
        let file = safetensors::serialize(tensors, None::<HashMap<String, String>>)
            .expect("in-memory serialization");
        let config = Config {
            labels: self.labels.clone(),
            dim: self.dim,
            temperature: self.temperature,
            review: self.review.clone(),
            backbone: super::PACKAGE.to_owned(),
            backbone_sha256: self.backbone_sha256.clone(),
        };
        vec![
            (WEIGHTS.to_string(), file),
            (
                CONFIG.to_string(),
                serde_json::to_vec_pretty(&config).expect("plain data"),
            ),
        ]
    }

    /// From a verified bundle, for features of the backbone whose weights hash to
    /// `backbone_sha256`.
    pub fn from_bundle(
        bundle: &Bundle,
        backbone_sha256: &str,
    ) -> Result<ImageClassifier, ImageClassifierError> {
        if bundle.manifest().kind != KIND {
            return Err(ImageClassifierError::Kind(bundle.manifest().kind.clone()));
        }
        let file = |p: &'static str| bundle.file(p).ok_or(ImageClassifierError::MissingFile(p));
        let bad = |file: &'static str| move |why: String| ImageClassifierError::Parse { file, why };
        let config: Config =
            serde_json::from_slice(file(CONFIG)?).map_err(|e| bad(CONFIG)(e.to_string()))?;
        if config.backbone_sha256 != backbone_sha256 {
            return Err(ImageClassifierError::Backbone {
                bundle: config.backbone_sha256,
                loaded: backbone_sha256.to_owned(),
            });
        }
        let st = safetensors::SafeTensors::deserialize(file(WEIGHTS)?)
            .map_err(|e| bad(WEIGHTS)(e.to_string()))?;
        let (k, dim) = (config.labels.len(), config.dim);
        let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ImageClassifierError> {
            let t = st
                .tensor(name)
                .map_err(|e| bad(WEIGHTS)(format!("{name}: {e}")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(bad(WEIGHTS)(format!(
                    "{name} is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect())
        };
        if k < 2 {
            return Err(bad(CONFIG)(format!("{k} label(s): a classifier needs two")));
        }
        Ok(ImageClassifier {
            mean: tensor("mean", &[dim])?,
            scale: tensor("scale", &[dim])?,
            weights: tensor("weights", &[k, dim])?,
            bias: tensor("bias", &[k])?,
            labels: config.labels,
            dim,
            temperature: config.temperature,
            review: config.review,
            backbone_sha256: config.backbone_sha256,
        })
    }
}

fn standardise(v: &[f32], mean: &[f32], scale: &[f32]) -> Vec<f32> {
    v.iter()
        .zip(mean)
        .zip(scale)
        .map(|((x, m), s)| (x - m) * s)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bundle::{Direction, Gate};
    use crate::categorize::calibrate::review_policy;
    use crate::categorize::dense::EmbeddingClassifierParams;

    /// Three well-separated clusters of 16-d "features" on very different scales.
    fn clusters(per: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = 7u64;
        let mut noise = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for c in 0..3 {
            for _ in 0..per {
                xs.push(
                    (0..16)
                        .map(|j| {
                            let centre = if j % 3 == c { 2.0 } else { 0.5 };
                            (centre + 0.3 * noise()) * (1 + j * 40) as f32
                        })
                        .collect(),
                );
                ys.push(c);
            }
        }
        (xs, ys)
    }

    fn fitted() -> ImageClassifier {
        let (xs, ys) = clusters(40);
        let labels: Vec<String> = ["dress", "hat", "shoes"].map(String::from).into();
        let params = EmbeddingClassifierParams::default().check().unwrap();
        let mut c = ImageClassifier::fit(&params, &xs, &ys, &labels, "abc").unwrap();
        c.temperature = 1.3;
        c.review = review_policy(&[(0.9, true), (0.4, false)], 0.9);
        c
    }

    #[test]
    fn separable_photos_are_classified_and_standardised() {
        let c = fitted();
        let (xs, ys) = clusters(10);
        let right = xs
            .iter()
            .zip(&ys)
            .filter(|(x, y)| c.classify(x, 1).top[0].0 == c.labels[**y])
            .count();
        assert_eq!(right, xs.len());
        let p = c.probabilities(&xs[0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // Standardised: features far apart in scale end with comparable spreads.
        assert!(c.scale[0] > 10.0 * c.scale[15]);
    }

    #[test]
    fn bundle_round_trip_and_refusals() {
        let c = fitted();
        let manifest = crate::bundle::test_manifest(
            "images",
            KIND,
            Gate {
                metric: "macro_f1".into(),
                direction: Direction::Higher,
                tolerance: 0.01,
            },
        );
        let bundle = Bundle::new(manifest, c.to_files().into_iter().collect()).unwrap();
        let files: BTreeMap<String, Vec<u8>> = bundle.to_files().into_iter().collect();
        let loaded =
            ImageClassifier::from_bundle(&Bundle::from_files(files.clone()).unwrap(), "abc")
                .unwrap();
        assert_eq!(loaded, c);
        let (xs, _) = clusters(3);
        for x in &xs {
            assert_eq!(loaded.classify(x, 2), c.classify(x, 2));
        }
        assert!(matches!(
            ImageClassifier::from_bundle(&Bundle::from_files(files.clone()).unwrap(), "other"),
            Err(ImageClassifierError::Backbone { .. })
        ));
        let mut tampered = files;
        let w = tampered.get_mut(WEIGHTS).unwrap();
        let i = w.len() - 2;
        w[i] ^= 0x10;
        assert!(matches!(
            Bundle::from_files(tampered),
            Err(BundleError::ChecksumMismatch { .. })
        ));
    }
}
