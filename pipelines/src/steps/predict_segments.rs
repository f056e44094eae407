//! `sgml predict segments --of products|sellers`: the segment of every product or
//! seller of the run date, with its distance to the segment's centroid (large: a
//! poor fit, worth a look), written to `predictions/<product|seller>-segments/<version>/dt=D/`.

use anyhow::Context;
use polars::prelude::*;
use sgml_models::kmeans::{Points, Segmenter};

use crate::bundles;
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::steps::segments::{self, Subject};

pub struct PredictSegments {
    pub subject: Subject,
    pub version: Option<String>,
}

pub const PRODUCTS_SPEC: StepSpec = StepSpec {
    name: "predict-product-segments",
    command: &["predict", "segments", "--of", "products"],
    heavy: false,
    fanout: Fanout::One,
    reads: &[
        "models/product-segments/<version>/",
        "features/embeddings/dt=<run_date>/",
        "features/products/dt=<run_date>/",
        "raw/products/dt=*",
    ],
    writes: &["predictions/product-segments/<version>/dt=<run_date>/"],
    about: "the segment of every product, with its distance to the centroid",
    trains: None,
};

pub const SELLERS_SPEC: StepSpec = StepSpec {
    name: "predict-seller-segments",
    command: &["predict", "segments", "--of", "sellers"],
    heavy: false,
    fanout: Fanout::One,
    reads: &[
        "models/seller-segments/<version>/",
        "features/sellers/dt=<run_date>/",
        "features/products/dt=<run_date>/",
    ],
    writes: &["predictions/seller-segments/<version>/dt=<run_date>/"],
    about: "the segment of every seller, with its distance to the centroid",
    trains: None,
};

impl Step for PredictSegments {
    fn spec(&self) -> StepSpec {
        match self.subject {
            Subject::Products => PRODUCTS_SPEC,
            Subject::Sellers => SELLERS_SPEC,
        }
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "subject": self.subject, "version": self.version })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("predict segments needs --run-date")?;
        let model = self.subject.model();
        let bundle = bundles::scoring_bundle(ctx, model, self.version.as_deref())?;
        let version = bundle.manifest().version.clone();
        let segmenter = Segmenter::from_bundle(&bundle)?;
        // The scaling, block weights included, is the bundle's.
        let data = segments::read(ctx, self.subject, run_date)?;
        for (count, why) in &data.skipped {
            ctx.note(format!("{count} {why}: no segment"));
        }
        anyhow::ensure!(
            data.features == segmenter.features,
            "version {version} segments {} features ({}…), the data of {run_date} has {} ({}…): retrain with `sgml train segments --of {}`",
            segmenter.features.len(),
            segmenter.features.first().map_or("", String::as_str),
            data.features.len(),
            data.features.first().map_or("", String::as_str),
            self.subject.noun()
        );
        let n = data.rows();
        ctx.progress(format!("segmenting {n} {}", self.subject.noun()));
        let a = segmenter.segment(Points::new(&data.raw, data.features.len())?)?;
        let distance: Vec<f32> = a.sq_distances.iter().map(|d| d.sqrt()).collect();
        let mut df = DataFrame::new(
            n,
            vec![
                Column::new(self.subject.key().into(), data.keys.clone()),
                Column::new("segment".into(), a.labels.clone()),
                Column::new("distance".into(), distance),
                Column::new("model_version".into(), vec![version.clone(); n]),
            ],
        )?;
        let part = format!("predictions/{model}/{version}/dt={run_date}/");
        ctx.write_partition(&part, &mut df)?;
        let mut sizes = vec![0usize; segmenter.k()];
        a.labels.iter().for_each(|&l| sizes[l as usize] += 1);
        ctx.note(format!(
            "{n} {} in {} segments with version {version}: sizes {sizes:?}",
            self.subject.noun(),
            segmenter.k()
        ));
        Ok(())
    }
}
