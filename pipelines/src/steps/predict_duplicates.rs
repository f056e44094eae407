//! `sgml predict duplicates`: every pair of listings by different sellers that the
//! `duplicates` model judges the same product, written to
//! `predictions/duplicates/<version>/dt=D/` as (listing, duplicate of, probability,
//! reason): the newer listing is the duplicate of the older one, and the reason
//! lists the signals that argued for the pair (`code+spelling`, say).

use anyhow::Context;
use polars::prelude::*;
use sgml_models::duplicates::DuplicateModel;

use crate::bundles;
use crate::run::{Fanout, RunContext, Skip, Step, StepSpec};
use crate::steps::duplicate_pairs;
use crate::steps::train_duplicates::{MODEL, note_left_out};

pub struct PredictDuplicates {
    pub version: Option<String>,
}

pub const SPEC: StepSpec = StepSpec {
    name: "predict-duplicates",
    command: &["predict", "duplicates"],
    heavy: false,
    fanout: Fanout::One,
    reads: &[
        "models/duplicates/<version>/",
        "features/embeddings/dt=<run_date>/",
        "features/images/dt=<run_date>/",
        "raw/products/dt=*",
    ],
    writes: &["predictions/duplicates/<version>/dt=<run_date>/"],
    about: "pairs of listings by different sellers that are the same product, with a probability and the reason",
    trains: None,
};

impl Step for PredictDuplicates {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "version": self.version })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx
            .run_date
            .context("predict duplicates needs --run-date")?;
        // No decision trained yet (no labelled duplicates so far) is a skip; a named
        // version that is missing is an error.
        if self.version.is_none() && sgml_registry::versions::versions(ctx.store, MODEL)?.is_empty()
        {
            return Err(Skip {
                reason: format!(
                    "no {MODEL} model has been trained (no labelled duplicate groups so far): nothing to decide with"
                ),
            }
            .into());
        }
        let bundle = bundles::scoring_bundle(ctx, MODEL, self.version.as_deref())?;
        let version = bundle.manifest().version.clone();
        let model = DuplicateModel::from_bundle(&bundle)?;
        let c = duplicate_pairs::read(ctx, run_date)?;
        note_left_out(ctx, &c);
        ctx.progress(format!(
            "finding candidate pairs among {} listings",
            c.len()
        ));
        let (index, features) = duplicate_pairs::title_features(&c);
        let candidates = duplicate_pairs::candidates(&c, &index)?;
        let signals = duplicate_pairs::signals(&c, &features, &candidates);
        let (mut listing, mut of, mut probability, mut reason) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut seller, mut of_seller) = (Vec::new(), Vec::new());
        for (&(a, b), s) in candidates.iter().zip(&signals) {
            if !model.is_duplicate(s) {
                continue;
            }
            // The newer listing duplicates the older (ids break ties).
            let newer_first = (c.created[b], &c.ids[b]) < (c.created[a], &c.ids[a]);
            let (new, old) = if newer_first { (a, b) } else { (b, a) };
            listing.push(c.ids[new].clone());
            of.push(c.ids[old].clone());
            seller.push(c.sellers[new].clone());
            of_seller.push(c.sellers[old].clone());
            probability.push(model.probability(s));
            reason.push(
                model
                    .reasons(s)
                    .iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join("+"),
            );
        }
        let n = listing.len();
        let mut df = DataFrame::new(
            n,
            vec![
                Column::new("product_id".into(), listing),
                Column::new("duplicate_of".into(), of),
                Column::new("probability".into(), probability),
                Column::new("reason".into(), reason),
                Column::new("seller_id".into(), seller),
                Column::new("duplicate_seller_id".into(), of_seller),
                Column::new("model_version".into(), vec![version.clone(); n]),
            ],
        )?
        .sort(
            ["product_id", "duplicate_of"],
            SortMultipleOptions::default(),
        )?;
        let part = format!("predictions/{MODEL}/{version}/dt={run_date}/");
        ctx.write_partition(&part, &mut df)?;
        ctx.note(format!(
            "{n} duplicate pair(s) among {} listings ({} candidate pairs judged) with version {version}",
            c.len(),
            candidates.len()
        ));
        Ok(())
    }
}
