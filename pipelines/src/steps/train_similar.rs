//! `sgml train similar`: an approximate nearest-neighbour index (usearch HNSW,
//! cosine) over the run date's title embeddings, written as a bundle of kind
//! `ann-index` under `models/similar/<version>/` with the row → product table (and
//! each product's seller and market, the filters of a query).
//!
//! Its quality is recall@10 against exact search, measured on a seeded sample of
//! catalogue products as queries (the use `predict similar` makes of it), each
//! query's own row left out. The gate holds a new index to the champion's recorded
//! recall: an index covers its own catalogue, so there is no shared holdout to
//! re-score the champion on, and recall is what a parameter or library change moves.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::Context;
use polars::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use sgml_features::Table;
use sgml_models::ann::{self, AnnIndex, AnnParams, Rows};
use sgml_models::bundle::{Direction, Gate};

use crate::bundles::{self, BundleSpec, field};
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::steps::embed;

pub const MODEL: &str = "similar";
/// Neighbours recall is measured at.
pub const RECALL_K: usize = 10;
/// Queries recall is measured on (fewer when the catalogue is smaller).
pub const RECALL_QUERIES: usize = 1000;

pub struct TrainSimilar {
    pub params: AnnParams,
    pub seed: u64,
}

impl Default for TrainSimilar {
    fn default() -> TrainSimilar {
        TrainSimilar {
            params: AnnParams::default(),
            seed: 42,
        }
    }
}

pub const SPEC: StepSpec = StepSpec {
    name: "train-similar",
    command: &["train", "similar"],
    heavy: true,
    fanout: Fanout::One,
    reads: &["features/embeddings/dt=<run_date>/", "raw/products/dt=*"],
    writes: &["models/similar/<version>/"],
    about: "build the similar-products index (usearch HNSW over title embeddings), measure recall@10, write a bundle",
    trains: Some(MODEL),
};

impl Step for TrainSimilar {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "library": "usearch", "library_version": ann::library_version(),
            "metric": "cos", "index": self.params, "seed": self.seed,
            "recall_k": RECALL_K, "recall_queries": RECALL_QUERIES,
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("train similar needs --run-date")?;
        self.params.check()?;
        let embeddings = embed::read(ctx, run_date)?.with_context(|| {
            format!(
                "no title embeddings for {run_date}: run `sgml embed --run-date {run_date}` first"
            )
        })?;
        let products = super::read_raw(ctx, Table::Products, run_date)?
            .context("no products ingested")?
            .select([col("product_id"), col("seller_id"), col("seller_country")])
            .collect()?;
        let (rows, vectors, unknown) = index_rows(&embeddings, &products)?;
        if embeddings.skipped > 0 || unknown > 0 {
            ctx.note(format!(
                "{} embedding row(s) without a product id or vector and {unknown} product(s) no longer listed were left out of the index",
                embeddings.skipped
            ));
        }
        if rows.len() < 2 {
            anyhow::bail!(
                "{} product(s) with an embedding for {run_date}: an index needs at least 2",
                rows.len()
            );
        }
        let n = rows.len();
        ctx.progress(format!(
            "indexing {n} products ({} dimensions, {:?} storage)",
            embeddings.dim, self.params.quantization
        ));
        let started = Instant::now();
        let index = AnnIndex::build(&vectors, embeddings.dim, rows, &self.params)?;
        let build_seconds = started.elapsed().as_secs_f64();

        let mut queries: Vec<usize> = (0..n).collect();
        queries.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(self.seed));
        queries.truncate(RECALL_QUERIES);
        ctx.progress(format!(
            "measuring recall@{RECALL_K} against exact search on {} queries",
            queries.len()
        ));
        let recall = ann::recall_at_k(&index, &vectors, &queries, RECALL_K)?;
        let mut metrics = BTreeMap::from([
            ("recall_at_10".to_string(), recall),
            ("build_seconds".to_string(), build_seconds),
            ("vectors".to_string(), n as f64),
            ("dimensions".to_string(), embeddings.dim as f64),
        ]);
        let champion = bundles::champion_score(ctx, MODEL, |b| {
            b.manifest()
                .metrics
                .get("recall_at_10")
                .copied()
                .context("the champion has no recall_at_10")
        });
        if let Some((version, r)) = &champion {
            metrics.insert("champion_recall_at_10".into(), *r);
            ctx.note(format!("champion {version}: recall@10 {r:.4}"));
        }
        ctx.note(format!(
            "indexed {n} products in {build_seconds:.1} s; recall@{RECALL_K} {recall:.4} on {} queries",
            queries.len()
        ));

        let files = index.to_files()?;
        let training_data = bundles::training_data(
            ctx,
            BTreeMap::from([
                ("indexed".to_string(), n),
                ("recall_queries".to_string(), queries.len()),
            ]),
            champion.map(|(v, _)| v),
        );
        let markets = sgml_models::baseline::level_shares(
            index.rows().market.iter().map(|m| m.as_deref()),
            100,
        );
        let spec = BundleSpec {
            name: MODEL,
            kind: ann::KIND,
            parameters: self.parameters(),
            seed: self.seed,
            input_schema: vec![
                field("product_id", "str", true),
                field("title", "str", true),
            ],
            output_schema: vec![
                field("similar_product_id", "str", false),
                field("similarity", "f32", false),
            ],
            // Relative: a champion at recall 0.99 lets a challenger fall 0.495 points.
            gate: Gate {
                metric: "recall_at_10".into(),
                direction: Direction::Higher,
                tolerance: 0.005,
            },
        };
        let baseline = serde_json::json!({ "rows": n, "levels": { "market": markets } });
        let bundle = bundles::build(spec, files, metrics, training_data, baseline)?;
        bundles::write(ctx, &bundle)
    }
}

/// The indexed rows: every embedded product still listed, with its seller and market
/// (its latest listing's), and their vectors; plus how many embedded products are no
/// longer listed.
fn index_rows(
    e: &embed::Embeddings,
    products: &DataFrame,
) -> anyhow::Result<(Rows, Vec<f32>, usize)> {
    let ids = super::texts(products, "product_id")?;
    let sellers = super::texts(products, "seller_id")?;
    let markets = super::texts(products, "seller_country")?;
    let listed: HashMap<&str, (Option<&str>, Option<&str>)> = ids
        .iter()
        .zip(sellers.iter().zip(&markets))
        .filter_map(|(id, (s, m))| Some((id.as_deref()?, (s.as_deref(), m.as_deref()))))
        .collect();
    let mut rows = Rows::default();
    let mut vectors = Vec::with_capacity(e.vectors.len());
    let mut unknown = 0;
    for (i, id) in e.product_id.iter().enumerate() {
        match listed.get(id.as_str()) {
            Some((seller, market)) => {
                rows.product_id.push(id.clone());
                rows.seller_id.push(seller.unwrap_or_default().to_string());
                rows.market.push(market.map(str::to_string));
                vectors.extend_from_slice(e.vector(i));
            }
            None => unknown += 1,
        }
    }
    Ok((rows, vectors, unknown))
}
