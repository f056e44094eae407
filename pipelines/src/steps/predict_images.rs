//! `sgml predict images`: the top three categories a product's photo shows, with
//! calibrated probabilities, for every photo `sgml images` embedded on the run date,
//! written to `predictions/images/<version>/dt=D/`.
//!
//! `listed_category` is what the seller chose; `disagrees` marks a photo confidently
//! classified (not sent to review) into another category — a wrong photo, or a wrong
//! category: the trust-and-safety queue.

use std::collections::HashMap;

use anyhow::Context;
use polars::prelude::*;
use sgml_features::Table;
use sgml_models::vision::WEIGHTS_SHA256;
use sgml_models::vision::classifier::ImageClassifier;

use crate::bundles;
use crate::partition::{self, Split};
use crate::run::{Fanout, RunContext, Skip, Step, StepSpec};
use crate::steps::train_images::MODEL;
use crate::steps::{embed, images};

pub const TOP: usize = 3;

pub struct PredictImages {
    pub version: Option<String>,
    /// All photos, one part of them, or the merge of the parts.
    pub split: Split,
}

pub const SPEC: StepSpec = StepSpec {
    name: "predict-images",
    command: &["predict", "images"],
    heavy: false,
    fanout: Fanout::Parts,
    reads: &[
        "models/images/<version>/",
        "features/image_embeddings/dt=<run_date>/",
        "raw/products/dt=*",
    ],
    writes: &["predictions/images/<version>/dt=<run_date>/"],
    about: "top-3 categories from each product photo, with a review flag and whether it disagrees with the listed category",
    trains: None,
};

impl Step for PredictImages {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "version": self.version, "top": TOP, "split": self.split.parameters() })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("predict images needs --run-date")?;
        // No classifier at all (a catalogue without enough photos to train one) is a
        // skip, not a failure; a named version that is missing is an error.
        if self.version.is_none() && sgml_registry::versions::versions(ctx.store, MODEL)?.is_empty()
        {
            return Err(Skip {
                reason: format!(
                    "no {MODEL} model has been trained (too few photos so far): nothing to classify with"
                ),
            }
            .into());
        }
        let bundle = bundles::scoring_bundle(ctx, MODEL, self.version.as_deref())?;
        let version = bundle.manifest().version.clone();
        let target = format!("predictions/{MODEL}/{version}/dt={run_date}/");
        if let Split::Merge(count) = self.split {
            return partition::merge(ctx, &target, count, "product_id");
        }
        let classifier = ImageClassifier::from_bundle(&bundle, WEIGHTS_SHA256)?;
        let emb = super::read_feature_part(ctx, images::EMBEDDINGS, run_date)?.with_context(|| {
            format!("no photo embeddings for {run_date}: run `sgml images --run-date {run_date}` first")
        })?;
        let vectors = embed::vectors(&self.split.rows(emb, "product_id")?)?;
        let products = super::read_raw(ctx, Table::Products, run_date)?
            .context("no products ingested")?
            .select([col("product_id"), col("category")])
            .collect()?;
        let listed_of: HashMap<String, String> = super::texts(&products, "product_id")?
            .into_iter()
            .zip(super::texts(&products, "category")?)
            .filter_map(|(id, c)| Some((id?, c?)))
            .collect();
        let n = vectors.len();
        ctx.progress(format!("classifying {n} photos"));
        let mut top = super::TopColumns::new(TOP, n);
        let (mut review, mut disagrees) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut listed = Vec::with_capacity(n);
        for (row, id) in vectors.product_id.iter().enumerate() {
            let c = classifier.classify(vectors.vector(row), TOP);
            top.push(&c.top);
            let seller = listed_of.get(id).cloned();
            disagrees.push(!c.needs_review && seller.as_deref().is_some_and(|l| l != c.top[0].0));
            review.push(c.needs_review);
            listed.push(seller);
        }
        let flagged = disagrees.iter().filter(|d| **d).count();
        let to_review = review.iter().filter(|r| **r).count();
        let mut columns = vec![
            Column::new("product_id".into(), &vectors.product_id),
            Column::new("listed_category".into(), listed),
        ];
        columns.extend(top.into_columns());
        columns.push(Column::new("needs_review".into(), review));
        columns.push(Column::new("disagrees".into(), disagrees));
        columns.push(Column::new(
            "model_version".into(),
            vec![version.clone(); n],
        ));
        let mut df = DataFrame::new(n, columns)?;
        partition::write(ctx, self.split, &target, &mut df)?;
        ctx.note(format!(
            "classified {n} photos with version {version}: {to_review} for review; {flagged} photos disagree with their listing's category"
        ));
        Ok(())
    }
}
