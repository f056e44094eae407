//! `sgml predict similar`: for every indexed product, its top-k most similar products
//! (ids, cosine similarity, their sellers and markets) from an `ann-index` bundle,
//! written to `predictions/similar/<version>/dt=D/`, one row per pair, ranked.
//!
//! Options restrict the neighbours to other sellers (a marketplace recommends other
//! sellers' offers) and to the same or other markets (cross-border recommendations).

use anyhow::Context;
use polars::prelude::*;
use rayon::prelude::*;
use sgml_models::ann::AnnIndex;
pub use sgml_models::ann::Markets;

use crate::bundles;
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::steps::embed;
use crate::steps::train_similar::MODEL;

/// Neighbours per product by default.
pub const DEFAULT_K: usize = 10;

pub struct PredictSimilar {
    pub version: Option<String>,
    pub k: usize,
    /// Only other sellers' products.
    pub other_sellers: bool,
    pub markets: Markets,
}

impl Default for PredictSimilar {
    fn default() -> PredictSimilar {
        PredictSimilar {
            version: None,
            k: DEFAULT_K,
            other_sellers: false,
            markets: Markets::Any,
        }
    }
}

pub const SPEC: StepSpec = StepSpec {
    name: "predict-similar",
    command: &["predict", "similar"],
    heavy: false,
    fanout: Fanout::One,
    reads: &[
        "models/similar/<version>/",
        "features/embeddings/dt=<run_date>/",
    ],
    writes: &["predictions/similar/<version>/dt=<run_date>/"],
    about: "top-k similar products for every indexed product (optionally other sellers, same or other markets)",
    trains: None,
};

impl Step for PredictSimilar {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version, "k": self.k,
            "other_sellers": self.other_sellers, "markets": self.markets,
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("predict similar needs --run-date")?;
        anyhow::ensure!(
            (1..=1000).contains(&self.k),
            "--k must be between 1 and 1000, got {}",
            self.k
        );
        let bundle = bundles::scoring_bundle(ctx, MODEL, self.version.as_deref())?;
        let version = bundle.manifest().version.clone();
        let index = AnnIndex::from_bundle(&bundle)?;
        // The queries are the products' vectors of the run date; a product indexed
        // by an older version and since re-embedded is queried with its new vector.
        let embeddings = embed::read(ctx, run_date)?.with_context(|| {
            format!(
                "no title embeddings for {run_date}: run `sgml embed --run-date {run_date}` first"
            )
        })?;
        anyhow::ensure!(
            embeddings.is_empty() || embeddings.dim == index.dim(),
            "the embeddings of {run_date} have {} dimensions but index {version} has {}",
            embeddings.dim,
            index.dim()
        );
        let rows = index.rows();
        let queries: Vec<(usize, usize)> = (0..embeddings.len())
            .filter_map(|e| Some((e, index.row(&embeddings.product_id[e])?)))
            .collect();
        let unindexed = embeddings.len() - queries.len();
        ctx.progress(format!(
            "finding {} similar products for {} products",
            self.k,
            queries.len()
        ));
        let found: Vec<Vec<sgml_models::ann::Neighbour>> = queries
            .par_iter()
            .map(|&(e, row)| {
                let filter = index.neighbours_filter(row, self.other_sellers, self.markets);
                index.search(embeddings.vector(e), self.k, &filter)
            })
            .collect::<Result<_, _>>()?;
        let pairs: usize = found.iter().map(Vec::len).sum();
        let mut product_id = Vec::with_capacity(pairs);
        let mut rank = Vec::with_capacity(pairs);
        let mut similar = Vec::with_capacity(pairs);
        let mut similarity = Vec::with_capacity(pairs);
        let mut seller = Vec::with_capacity(pairs);
        let mut market = Vec::with_capacity(pairs);
        for ((_, row), neighbours) in queries.iter().zip(&found) {
            for (r, nb) in neighbours.iter().enumerate() {
                product_id.push(rows.product_id[*row].clone());
                rank.push(r as u32 + 1);
                similar.push(rows.product_id[nb.row].clone());
                similarity.push(nb.similarity);
                seller.push(rows.seller_id[nb.row].clone());
                market.push(rows.market[nb.row].clone());
            }
        }
        let short = found.iter().filter(|f| f.len() < self.k).count();
        let mut df = DataFrame::new(
            pairs,
            vec![
                Column::new("product_id".into(), product_id),
                Column::new("rank".into(), rank),
                Column::new("similar_product_id".into(), similar),
                Column::new("similarity".into(), similarity),
                Column::new("similar_seller_id".into(), seller),
                Column::new("similar_market".into(), market),
                Column::new("model_version".into(), vec![version.clone(); pairs]),
            ],
        )?;
        let part = format!("predictions/{MODEL}/{version}/dt={run_date}/");
        ctx.write_partition(&part, &mut df)?;
        ctx.note(format!(
            "{pairs} similar pairs for {} products with version {version}; {short} product(s) have fewer than {} admissible neighbours; {unindexed} embedded product(s) are not in the index (listed after it was built: retrain to include them)",
            queries.len(),
            self.k
        ));
        Ok(())
    }
}
