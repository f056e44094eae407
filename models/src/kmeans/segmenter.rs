//! A segments model as bundle files: the scaler and the centroids in
//! `kmeans.safetensors`, the feature names and blocks in `segments.json`. Loading
//! checks every shape against the names, so a model scores only rows it was made for.

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::{Assignment, Block, KIND, KMeans, KMeansError, Points, Scaler};
use crate::Bundle;

pub const WEIGHTS: &str = "kmeans.safetensors";
pub const CONFIG: &str = "segments.json";

#[derive(Debug, Serialize, Deserialize)]
struct Config {
    features: Vec<String>,
    blocks: Vec<Block>,
    k: usize,
}

/// Raw feature rows → segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmenter {
    /// The raw columns, in order (an embedding's are `embedding_0`…).
    pub features: Vec<String>,
    pub blocks: Vec<Block>,
    pub scaler: Scaler,
    pub kmeans: KMeans,
}

impl Segmenter {
    pub fn k(&self) -> usize {
        self.kmeans.k()
    }

    /// The segment of each raw row (missing values as `NaN`).
    pub fn segment(&self, raw: Points) -> Result<Assignment, KMeansError> {
        let scaled = self.scaler.transform(raw)?;
        self.kmeans.assign(Points::new(&scaled, raw.dim())?)
    }

    pub fn to_files(&self) -> BTreeMap<String, Vec<u8>> {
        let (k, d) = (self.k(), self.features.len());
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let data = [
            ("centroids", vec![k, d], bytes(&self.kmeans.centroids)),
            ("fill", vec![d], bytes(&self.scaler.fill)),
            ("mean", vec![d], bytes(&self.scaler.mean)),
            ("scale", vec![d], bytes(&self.scaler.scale)),
        ];
        let views = data.iter().map(|(name, shape, b)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), b)
                .expect("shapes match the byte lengths");
            (*name, view)
        });
        let weights = safetensors::serialize(views, None::<HashMap<String, String>>)
            .expect("in-memory serialization");
        let config = Config {
            features: self.features.clone(),
            blocks: self.blocks.clone(),
            k,
        };
        BTreeMap::from([
            (WEIGHTS.to_string(), weights),
            (
                CONFIG.to_string(),
                serde_json::to_vec_pretty(&config).expect("plain data"),
            ),
        ])
    }

    /// From a verified bundle of kind `kmeans`.
    pub fn from_bundle(bundle: &Bundle) -> Result<Segmenter, KMeansError> {
        bundle.expect_kind(KIND)?;
        let file = |p: &'static str| bundle.file(p).ok_or(KMeansError::MissingFile(p));
        let bad = |file: &'static str| move |why: String| KMeansError::Parse { file, why };
        let config: Config =
            serde_json::from_slice(file(CONFIG)?).map_err(|e| bad(CONFIG)(e.to_string()))?;
        let d = config.features.len();
        let covered: usize = config.blocks.iter().map(|b| b.columns).sum();
        if d == 0 || covered != d || config.k == 0 {
            return Err(bad(CONFIG)(format!(
                "{d} features, blocks covering {covered}, k {}",
                config.k
            )));
        }
        let st = safetensors::SafeTensors::deserialize(file(WEIGHTS)?)
            .map_err(|e| bad(WEIGHTS)(e.to_string()))?;
        let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, KMeansError> {
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
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(WEIGHTS)(format!(
                    "{name} holds a value that is not finite"
                )));
            }
            Ok(v)
        };
        Ok(Segmenter {
            kmeans: KMeans {
                dim: d,
                centroids: tensor("centroids", &[config.k, d])?,
            },
            scaler: Scaler {
                fill: tensor("fill", &[d])?,
                mean: tensor("mean", &[d])?,
                scale: tensor("scale", &[d])?,
            },
            features: config.features,
            blocks: config.blocks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::blobs;
    use super::super::{KMeansParams, Scaling};
    use super::*;
    use crate::bundle::{BundleError, Direction, Gate, test_manifest};

    fn segmenter() -> (Segmenter, Vec<f32>) {
        let x = blobs(&[[0.0, 0.0], [10.0, 3.0], [2.0, 9.0]], 50, 2.0, 1);
        let p = Points::new(&x, 2).unwrap();
        let blocks = vec![Block {
            name: "xy".into(),
            columns: 2,
            scaling: Scaling::PerColumn,
            weight: 1.0,
        }];
        let scaler = Scaler::fit(p, &blocks).unwrap();
        let scaled = scaler.transform(p).unwrap();
        let fit = KMeans::fit(
            Points::new(&scaled, 2).unwrap(),
            &KMeansParams {
                k: 3,
                ..KMeansParams::default()
            },
        )
        .unwrap();
        let s = Segmenter {
            features: vec!["x".into(), "y".into()],
            blocks,
            scaler,
            kmeans: fit.model,
        };
        (s, x)
    }

    fn bundle(files: BTreeMap<String, Vec<u8>>) -> Bundle {
        let gate = Gate {
            metric: "silhouette".into(),
            direction: Direction::Higher,
            tolerance: 0.1,
        };
        Bundle::new(test_manifest("product-segments", KIND, gate), files).unwrap()
    }

    #[test]
    fn round_trips_and_segments_raw_rows() {
        let (s, x) = segmenter();
        let b = bundle(s.to_files());
        let stored: BTreeMap<String, Vec<u8>> = b.to_files().into_iter().collect();
        let loaded = Segmenter::from_bundle(&Bundle::from_files(stored).unwrap()).unwrap();
        assert_eq!(loaded, s);
        let p = Points::new(&x, 2).unwrap();
        let a = loaded.segment(p).unwrap();
        // Each blob is one segment.
        for b in 0..3 {
            assert!(
                a.labels[b * 50..(b + 1) * 50]
                    .iter()
                    .all(|&l| l == a.labels[b * 50])
            );
        }
        // A missing value takes the training median instead of breaking the row.
        let a = loaded
            .segment(Points::new(&[f32::NAN, 9.0], 2).unwrap())
            .unwrap();
        assert!(a.labels[0] < 3 && a.sq_distances[0].is_finite());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let (s, _) = segmenter();
        let mut files = s.to_files();
        let mut config: serde_json::Value = serde_json::from_slice(&files[CONFIG]).unwrap();
        config["features"] = serde_json::json!(["x", "y", "z"]);
        files.insert(CONFIG.into(), serde_json::to_vec(&config).unwrap());
        assert!(matches!(
            Segmenter::from_bundle(&bundle(files)),
            Err(KMeansError::Parse { file: CONFIG, .. })
        ));
        let mut files = s.to_files();
        files.remove(WEIGHTS);
        assert!(matches!(
            Segmenter::from_bundle(&bundle(files)),
            Err(KMeansError::MissingFile(WEIGHTS))
        ));
        // A flipped byte never reaches the parser: the bundle's checksums refuse it.
        let mut stored: BTreeMap<String, Vec<u8>> =
            bundle(s.to_files()).to_files().into_iter().collect();
        stored.get_mut(WEIGHTS).unwrap()[90] ^= 1;
        assert!(matches!(
            Bundle::from_files(stored),
            Err(BundleError::ChecksumMismatch { .. })
        ));
    }
}
