//! `sgml predict categorize`: the top three categories, with calibrated probabilities,
//! for every product listed up to the run date, and whether a person should review it,
//! written to `predictions/categorize/<version>/dt=D/`.
//!
//! `listed_category` is what the seller chose (null if none); `disagrees` marks an
//! auto-categorized listing whose seller chose another category — the queue for
//! catalogue clean-up.

use anyhow::Context;
use polars::prelude::*;
use sgml_features::Table;
use sgml_models::categorize::TitleCategorizer;

use crate::bundles;
use crate::partition::{self, Split};
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::steps::train_categorize::MODEL;

pub const TOP: usize = 3;

pub struct PredictCategorize {
    pub version: Option<String>,
    /// All products, one part of them, or the merge of the parts.
    pub split: Split,
}

pub const SPEC: StepSpec = StepSpec {
    name: "predict-categorize",
    command: &["predict", "categorize"],
    heavy: false,
    fanout: Fanout::Parts,
    reads: &["models/categorize/<version>/", "raw/products/dt=*"],
    writes: &["predictions/categorize/<version>/dt=<run_date>/"],
    about: "top-3 categories with probabilities and a review flag for every product title",
    trains: None,
};

impl Step for PredictCategorize {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "version": self.version, "top": TOP, "split": self.split.parameters() })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx
            .run_date
            .context("predict categorize needs --run-date")?;
        let bundle = bundles::scoring_bundle(ctx, MODEL, self.version.as_deref())?;
        let version = bundle.manifest().version.clone();
        let target = format!("predictions/{MODEL}/{version}/dt={run_date}/");
        if let Split::Merge(count) = self.split {
            return partition::merge(ctx, &target, count, "product_id");
        }
        let categorizer = TitleCategorizer::from_bundle(&bundle)?;
        let products = super::read_raw(ctx, Table::Products, run_date)?
            .context("no products ingested")?
            .select([col("product_id"), col("title"), col("category")])
            .sort(["product_id"], SortMultipleOptions::default())
            .collect()?;
        let products = self.split.rows(products, "product_id")?;
        let ids = super::texts(&products, "product_id")?;
        let titles = super::texts(&products, "title")?;
        let listed = super::texts(&products, "category")?;
        ctx.progress(format!("categorizing {} titles", ids.len()));
        let n = ids.len();
        let mut top = super::TopColumns::new(TOP, n);
        let (mut review, mut disagrees) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (title, listed) in titles.iter().zip(&listed) {
            let c = categorizer.categorize(title.as_deref().unwrap_or(""), TOP);
            top.push(&c.top);
            disagrees.push(!c.needs_review && listed.as_deref().is_some_and(|l| *l != c.top[0].0));
            review.push(c.needs_review);
        }
        let auto = review.iter().filter(|r| !**r).count();
        let flagged = disagrees.iter().filter(|d| **d).count();
        let mut columns = vec![
            Column::new("product_id".into(), ids),
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
            "categorized {n} titles with version {version}: {auto} automatically, {} for review; {flagged} auto-categorized listings disagree with the seller's category",
            n - auto
        ));
        Ok(())
    }
}
