//! `sgml images`: every listed product's photo read, decoded and checked, written to
//! `features/images/dt=D/` as `product_id, image_uri, sha256, width, height, format,
//! blur, brightness, contrast, phash, verdict`, and embedded by EfficientNet-Lite0
//! into `features/image_embeddings/dt=D/` as `product_id, sha256, embedding` (1,280
//! floats) — one read and one decode per photo for both. A photo that cannot be read, is not an
//! image, or is too large or too small goes to `quarantine/images/<run_id>/` under its
//! rule (`images.uri`, `images.read`, `images.size`, `images.decode`) with the product
//! and URI; the run goes on.
//!
//! Photos are decoded a batch at a time on every core; a batch holds at most one
//! photo's bytes and pixels per thread, so memory is bounded by the limits whatever
//! the catalogue.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use polars::prelude::*;
use rayon::prelude::*;
use sgml_features::Table;
use sgml_features::validate::Counts;
use sgml_models::photo::{self, Limits, PHash, PhotoRule, QualityPolicy, Verdict};
use sgml_models::vision::{self, ImageEmbedder};

use crate::io;
use crate::partition::{self, Split};
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::sources::InputRecord;
use crate::store::S3Options;
use crate::store::photos::PhotoSource;

pub const TABLE: &str = "images";
/// Where the photos' embeddings go (`features/image_embeddings/`).
pub const EMBEDDINGS: &str = "image_embeddings";

/// Photos a batch holds while the threads decode it.
const BATCH: usize = 256;
/// The longest URI or reason echoed into the quarantine (input is echoed briefly).
const URI_ECHO: usize = 300;

pub struct Images {
    /// Where relative paths and `file://` URIs lie; `run all` passes its input
    /// directory.
    pub images_dir: Option<PathBuf>,
    pub s3: S3Options,
    pub limits: Limits,
    pub policy: QualityPolicy,
    /// The directory of the image embedder's converted weights.
    pub image_model_dir: PathBuf,
    /// 0: one per core.
    pub threads: usize,
    /// All products' photos, one part of them, or the merge of the parts.
    pub split: Split,
}

pub const SPEC: StepSpec = StepSpec {
    name: "images",
    command: &["images"],
    heavy: true,
    fanout: Fanout::Parts,
    reads: &[
        "raw/products/dt=*",
        "<images>",
        "<image model dir>/model.safetensors",
    ],
    writes: &[
        "features/images/dt=<run_date>/",
        "features/image_embeddings/dt=<run_date>/",
        "quarantine/images/<run_id>/",
    ],
    about: "read and check every listed product's photo (size, blur, brightness, contrast, perceptual hash) and embed it with EfficientNet-Lite0 (1,280-d); unreadable ones quarantined",
    trains: None,
};

/// One photo's measures.
struct Checked {
    sha256: String,
    width: u32,
    height: u32,
    format: &'static str,
    quality: photo::Quality,
    phash: PHash,
    verdict: Verdict,
    embedding: Vec<f32>,
}

/// A refused photo.
struct Refused {
    rule: PhotoRule,
    reason: String,
}

impl Images {
    fn check(
        &self,
        source: &PhotoSource,
        embedder: &ImageEmbedder,
        uri: &str,
    ) -> Result<Checked, Refused> {
        let bytes = source.fetch(uri).map_err(|e| Refused {
            rule: e.rule(),
            reason: e.to_string(),
        })?;
        let decoded = photo::decode(&bytes, &self.limits).map_err(|e| Refused {
            rule: e.rule(),
            reason: e.to_string(),
        })?;
        let grey = photo::grey(&decoded.rgb);
        let quality = photo::measure(&grey);
        Ok(Checked {
            sha256: crate::store::sha256_hex(&bytes),
            width: decoded.width(),
            height: decoded.height(),
            format: decoded.format.as_str(),
            phash: photo::phash(&grey),
            verdict: self.policy.verdict(&quality),
            quality,
            embedding: embedder.embed(&decoded.rgb),
        })
    }
}

impl Step for Images {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "images_dir": self.images_dir, "limits": self.limits, "policy": self.policy,
            "threads": self.threads, "image_model": "EfficientNet-Lite0 (ImageNet)",
            "image_model_package": vision::PACKAGE, "image_model_dir": self.image_model_dir,
            "embedding_dim": vision::FEATURES, "split": self.split.parameters(),
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("images needs --run-date")?;
        let measures = io::partition("features", TABLE, run_date);
        let vectors = io::partition("features", EMBEDDINGS, run_date);
        if let Split::Merge(count) = self.split {
            partition::merge(ctx, &measures, count, "product_id")?;
            return partition::merge(ctx, &vectors, count, "product_id");
        }
        // Hash the very bytes the embedder loads: the recorded input is what ran.
        let weights_path = self.image_model_dir.join(vision::WEIGHTS_FILE);
        let weights = std::fs::read(&weights_path)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        ctx.input(InputRecord {
            uri: weights_path.display().to_string(),
            sha256: crate::store::sha256_hex(&weights),
            rows: 0,
        });
        let embedder = ImageEmbedder::from_bytes(&weights)
            .with_context(|| format!("loading {}", weights_path.display()))?;
        drop(weights);
        let source = PhotoSource::new(
            self.images_dir.clone(),
            self.s3.clone(),
            self.limits.max_bytes as u64,
        )
        .context("opening the images directory (--images-dir)")?;
        let products = super::read_raw(ctx, Table::Products, run_date)?
            .context("no products ingested: run `sgml ingest` first")?
            .select([col("product_id"), col("image_uri")])
            .sort(["product_id"], SortMultipleOptions::default())
            .collect()?;
        let products = self.split.rows(products, "product_id")?;
        let ids = super::texts(&products, "product_id")?;
        let uris = super::texts(&products, "image_uri")?;
        let listed: Vec<(String, String)> = ids
            .into_iter()
            .zip(uris)
            .filter_map(|(id, uri)| Some((id?, uri?)))
            .filter(|(_, uri)| !uri.trim().is_empty())
            .collect();
        let without = products.height() - listed.len();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .context("starting the image threads")?;

        let mut good = Columns::default();
        let mut bad = Rejects::default();
        for (done, batch) in listed.chunks(BATCH).enumerate() {
            ctx.progress(format!(
                "photos {} of {}",
                (done * BATCH + batch.len()),
                listed.len()
            ));
            let results: Vec<Result<Checked, Refused>> = pool.install(|| {
                batch
                    .par_iter()
                    .map(|(_, uri)| self.check(&source, &embedder, uri))
                    .collect()
            });
            for ((id, uri), result) in batch.iter().zip(results) {
                match result {
                    Ok(c) => good.push(id, uri, c),
                    Err(r) => bad.push(id, uri, r),
                }
            }
        }
        let counts = Counts {
            rows_in: listed.len(),
            accepted: good.product_id.len(),
            quarantined: bad.product_id.len(),
        };
        ctx.count(TABLE, counts);
        if without > 0 {
            ctx.note(format!(
                "{without} product(s) without an image_uri: no photo to check"
            ));
        }
        anyhow::ensure!(
            listed.is_empty() || counts.accepted > 0,
            "none of the {} photos could be read ({} first: {}): check --images-dir and the image_uri column",
            listed.len(),
            bad.rule[0].as_str(),
            bad.reason[0]
        );
        for (rule, n) in tally(bad.rule.iter().map(|r| r.as_str())) {
            ctx.note(format!("{n} photo(s) quarantined by {rule}"));
        }
        let verdicts = tally(good.verdict.iter().map(|v| v.as_str()));
        ctx.note(format!(
            "{} photo(s) checked: {}",
            counts.accepted,
            verdicts
                .iter()
                .map(|(v, n)| format!("{n} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let (mut df, mut embeddings) = good.frames()?;
        partition::write(ctx, self.split, &measures, &mut df)?;
        partition::write(ctx, self.split, &vectors, &mut embeddings)?;
        if !bad.product_id.is_empty() {
            let mut rejects = bad.frame()?;
            let key = format!("quarantine/{TABLE}/{}/rejects-00000.parquet", ctx.run_id);
            let bytes = io::to_parquet(&mut rejects)?;
            ctx.stage(&key, &bytes, rejects.height())?;
        }
        Ok(())
    }
}

/// How many of each name, in name order.
fn tally(names: impl Iterator<Item = &'static str>) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[derive(Default)]
struct Columns {
    product_id: Vec<String>,
    image_uri: Vec<String>,
    sha256: Vec<String>,
    width: Vec<u32>,
    height: Vec<u32>,
    format: Vec<&'static str>,
    blur: Vec<f64>,
    brightness: Vec<f64>,
    contrast: Vec<f64>,
    phash: Vec<String>,
    verdict: Vec<Verdict>,
    embedding: Vec<Vec<f32>>,
}

impl Columns {
    fn push(&mut self, id: &str, uri: &str, c: Checked) {
        self.product_id.push(id.to_string());
        self.image_uri.push(uri.to_string());
        self.sha256.push(c.sha256);
        self.width.push(c.width);
        self.height.push(c.height);
        self.format.push(c.format);
        self.blur.push(c.quality.blur);
        self.brightness.push(c.quality.brightness);
        self.contrast.push(c.quality.contrast);
        self.phash.push(c.phash.to_hex());
        self.verdict.push(c.verdict);
        self.embedding.push(c.embedding);
    }

    /// The measures' frame and the embeddings' (product_id, sha256, embedding).
    fn frames(self) -> PolarsResult<(DataFrame, DataFrame)> {
        let n = self.product_id.len();
        let vectors: ListChunked = self
            .embedding
            .iter()
            .map(|v| Some(Series::new(PlSmallStr::EMPTY, v.as_slice())))
            .collect();
        let embeddings = DataFrame::new(
            n,
            vec![
                Column::new("product_id".into(), &self.product_id),
                Column::new("sha256".into(), &self.sha256),
                vectors.with_name("embedding".into()).into_series().into(),
            ],
        )?;
        let measures = DataFrame::new(
            n,
            vec![
                Column::new("product_id".into(), self.product_id),
                Column::new("image_uri".into(), self.image_uri),
                Column::new("sha256".into(), self.sha256),
                Column::new("width".into(), self.width),
                Column::new("height".into(), self.height),
                Column::new("format".into(), self.format),
                Column::new("blur".into(), self.blur),
                Column::new("brightness".into(), self.brightness),
                Column::new("contrast".into(), self.contrast),
                Column::new("phash".into(), self.phash),
                Column::new(
                    "verdict".into(),
                    self.verdict.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                ),
            ],
        )?;
        Ok((measures, embeddings))
    }
}

#[derive(Default)]
struct Rejects {
    product_id: Vec<String>,
    image_uri: Vec<String>,
    rule: Vec<PhotoRule>,
    reason: Vec<String>,
}

impl Rejects {
    fn push(&mut self, id: &str, uri: &str, r: Refused) {
        self.product_id.push(id.to_string());
        self.image_uri.push(uri.chars().take(URI_ECHO).collect());
        self.rule.push(r.rule);
        self.reason.push(r.reason.chars().take(URI_ECHO).collect());
    }

    fn frame(self) -> PolarsResult<DataFrame> {
        let n = self.product_id.len();
        DataFrame::new(
            n,
            vec![
                Column::new("product_id".into(), self.product_id),
                Column::new("image_uri".into(), self.image_uri),
                Column::new(
                    "_rule".into(),
                    self.rule.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                ),
                Column::new("reason".into(), self.reason),
            ],
        )
    }
}
