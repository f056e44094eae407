//! `sgml embed`: one all-MiniLM-L6-v2 vector (384 floats, unit length) per product
//! listed up to the run date, written to `features/embeddings/dt=D/` as
//! `product_id, language, embedding` — the input of similarity search and clustering.
//!
//! Repeated titles (a third of a marketplace's) are embedded once. The model files'
//! checksums are recorded as the run's inputs, so a manifest says exactly which
//! weights produced a partition.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use polars::prelude::*;
use sgml_features::Table;
use sgml_models::embed::{self, Embedder};

use crate::partition::{self, Split};
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::sources::InputRecord;

pub const TABLE: &str = "embeddings";

pub struct Embed {
    pub model_dir: PathBuf,
    pub batch: usize,
    /// 0: one per core.
    pub threads: usize,
    /// All products, one part of them, or the merge of the parts.
    pub split: Split,
}

pub const SPEC: StepSpec = StepSpec {
    name: "embed",
    command: &["embed"],
    heavy: true,
    fanout: Fanout::Parts,
    reads: &["raw/products/dt=*", "<model dir>/model.safetensors"],
    writes: &["features/embeddings/dt=<run_date>/"],
    about: "embed every product title with all-MiniLM-L6-v2 (384-d, L2-normalised)",
    trains: None,
};

impl Step for Embed {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "model": "all-MiniLM-L6-v2", "package": embed::PACKAGE,
            "model_dir": self.model_dir, "batch": self.batch, "threads": self.threads,
            "max_tokens": embed::MAX_TOKENS, "pooling": "mean", "normalized": true,
            "split": self.split.parameters(),
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("embed needs --run-date")?;
        let target = format!("features/{TABLE}/dt={run_date}/");
        if let Split::Merge(count) = self.split {
            return partition::merge(ctx, &target, count, "product_id");
        }
        // Hash the very bytes the embedder loads: the recorded inputs are what ran.
        let [config, tokenizer, weights] = embed::FILES.map(|name| {
            let path = self.model_dir.join(name);
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()));
            bytes.map(|b| (path, b))
        });
        let files = [config?, tokenizer?, weights?];
        for (path, bytes) in &files {
            ctx.input(InputRecord {
                uri: path.display().to_string(),
                sha256: crate::store::sha256_hex(bytes),
                rows: 0,
            });
        }
        let [(_, config), (_, tokenizer), (_, weights)] = files;
        let embedder = Embedder::from_bytes(&self.model_dir, &config, tokenizer, weights)?;
        let products = super::read_raw(ctx, Table::Products, run_date)?
            .context("no products ingested: run `sgml ingest` first")?
            .select([col("product_id"), col("title"), col("language")])
            .sort(["product_id"], SortMultipleOptions::default())
            .collect()?;
        let products = self.split.rows(products, "product_id")?;
        let ids = super::texts(&products, "product_id")?;
        let titles = super::texts(&products, "title")?;
        let mut distinct: Vec<&str> = Vec::new();
        let mut slot: HashMap<&str, usize> = HashMap::new();
        let index: Vec<usize> = titles
            .iter()
            .map(|t| {
                let t = t.as_deref().unwrap_or("");
                *slot.entry(t).or_insert_with(|| {
                    distinct.push(t);
                    distinct.len() - 1
                })
            })
            .collect();
        ctx.progress(format!(
            "embedding {} distinct titles of {} products",
            distinct.len(),
            ids.len()
        ));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .context("starting the embedding threads")?;
        let vectors = pool.install(|| embedder.embed(&distinct, self.batch))?;
        let column: ListChunked = index
            .iter()
            .map(|&i| Some(Series::new(PlSmallStr::EMPTY, vectors[i].as_slice())))
            .collect();
        let n = ids.len();
        let mut df = DataFrame::new(
            n,
            vec![
                Column::new("product_id".into(), ids),
                products.column("language")?.clone(),
                column.with_name("embedding".into()).into_series().into(),
            ],
        )?;
        partition::write(ctx, self.split, &target, &mut df)?;
        ctx.note(format!(
            "embedded {n} products ({} distinct titles), {} dimensions",
            distinct.len(),
            embed::DIM
        ));
        Ok(())
    }
}

/// A date's title embeddings, row-major.
pub struct Embeddings {
    pub product_id: Vec<String>,
    /// `dim` floats a product, unit length.
    pub vectors: Vec<f32>,
    pub dim: usize,
    /// Rows without a product id or a vector of the partition's width, skipped.
    pub skipped: usize,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.product_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.product_id.is_empty()
    }

    pub fn vector(&self, row: usize) -> &[f32] {
        &self.vectors[row * self.dim..(row + 1) * self.dim]
    }
}

/// The run date's embeddings, verified and recorded as the run's input; None when
/// `sgml embed` has not written them.
pub fn read(
    ctx: &mut RunContext,
    run_date: chrono::NaiveDate,
) -> anyhow::Result<Option<Embeddings>> {
    super::read_feature_part(ctx, TABLE, run_date)?
        .map(|df| vectors(&df))
        .transpose()
}

/// The `product_id` and `embedding` (list of f32) columns of an embeddings partition
/// (titles' or photos'), row-major.
pub fn vectors(df: &DataFrame) -> anyhow::Result<Embeddings> {
    let ids = super::texts(df, "product_id")?;
    let lists = df.column("embedding")?.list()?;
    let mut out = Embeddings {
        product_id: Vec::with_capacity(ids.len()),
        vectors: Vec::new(),
        dim: 0,
        skipped: 0,
    };
    for (i, id) in ids.into_iter().enumerate() {
        let vector = lists
            .get_as_series(i)
            .map(|v| v.f32().map(|v| v.into_no_null_iter().collect::<Vec<f32>>()))
            .transpose()?;
        match (id, vector) {
            (Some(id), Some(v)) if !v.is_empty() && (out.dim == 0 || v.len() == out.dim) => {
                out.dim = v.len();
                out.product_id.push(id);
                out.vectors.extend(v);
            }
            _ => out.skipped += 1,
        }
    }
    Ok(out)
}
