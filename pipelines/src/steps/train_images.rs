//! `sgml train images`: the image classifier (category from photo) from the run
//! date's photo embeddings (`features/image_embeddings/`, written by `sgml images`)
//! and each product's listed category, evaluated, calibrated and written as a bundle
//! version under `models/images/<version>/`.
//!
//! Split by photo file, not by row: relistings carry the same file, and a file in both
//! training and holdout would grade the classifier on memory. Each distinct sha256
//! falls into one cut by its hash: 20% holdout, 10% calibration (temperature and review
//! threshold), the rest fits the model. Edited copies (resized, recompressed) are
//! different files and may straddle cuts; the near-duplicate report finds those.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::NaiveDate;
use polars::prelude::*;
use sgml_features::Table;
use sgml_models::bundle::{Direction, Gate};
use sgml_models::categorize::calibrate::{fit_temperature, review_policy};
use sgml_models::categorize::dense::EmbeddingClassifierParams;
use sgml_models::categorize::metrics::{ClassificationMetrics, classification};
use sgml_models::vision::classifier::{ImageClassifier, KIND};
use sgml_models::vision::{self, WEIGHTS_SHA256};

use crate::bundles::{self, BundleSpec, field};
use crate::run::{Fanout, RunContext, Skip, Step, StepSpec};
use crate::steps::{embed, images};

pub const MODEL: &str = "images";
pub const HOLDOUT: f64 = 0.2;
pub const CALIBRATION: f64 = 0.1;
/// Fewer fit photos than this train nothing worth shipping: the run is skipped.
pub const MIN_FIT: usize = 20;
/// Precision asked of automatically categorized photos by default.
pub const DEFAULT_REVIEW_PRECISION: f64 = 0.9;

pub struct TrainImages {
    pub params: EmbeddingClassifierParams,
    pub review_precision: f64,
}

impl Default for TrainImages {
    fn default() -> TrainImages {
        TrainImages {
            params: EmbeddingClassifierParams::default(),
            review_precision: DEFAULT_REVIEW_PRECISION,
        }
    }
}

pub const SPEC: StepSpec = StepSpec {
    name: "train-images",
    command: &["train", "images"],
    heavy: true,
    fanout: Fanout::One,
    reads: &[
        "raw/products/dt=*",
        "features/image_embeddings/dt=<run_date>/",
    ],
    writes: &["models/images/<version>/"],
    about: "train the image classifier (logistic regression on EfficientNet-Lite0 features), evaluate on held-out photos, write a bundle",
    trains: Some(MODEL),
};

/// Labelled photos: one row per product with an embedded photo and a category.
pub struct Photos {
    pub product_id: Vec<String>,
    pub sha256: Vec<String>,
    pub category: Vec<String>,
    pub features: Vec<Vec<f32>>,
}

/// Which cut a photo file belongs to: 0 fit, 1 calibration, 2 holdout.
pub fn cut_of(sha256: &str) -> u8 {
    // The file's own digest is already uniform; rehash it so the cut does not line
    // up with anything else keyed by the same digest.
    let h = crate::store::sha256_hex(format!("images-cut:{sha256}").as_bytes());
    let x = u64::from_str_radix(&h[..12], 16).expect("hex") as f64 / (1u64 << 48) as f64;
    if x < HOLDOUT {
        2
    } else if x < HOLDOUT + CALIBRATION {
        1
    } else {
        0
    }
}

impl Step for TrainImages {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "alpha": self.params.alpha, "max_iterations": self.params.max_iterations,
            "review_precision": self.review_precision, "holdout": HOLDOUT,
            "calibration": CALIBRATION, "backbone": vision::PACKAGE,
            "backbone_sha256": WEIGHTS_SHA256, "standardised": true,
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("train images needs --run-date")?;
        let params = self.params.check()?;
        ctx.progress("reading photo embeddings and categories");
        let data = read_photos(ctx, run_date)?;
        let cuts: Vec<u8> = data.sha256.iter().map(|s| cut_of(s)).collect();
        let idx = |c: u8| -> Vec<usize> { (0..cuts.len()).filter(|&i| cuts[i] == c).collect() };
        let (fit_idx, cal_idx, eval_idx) = (idx(0), idx(1), idx(2));
        let mut labels: Vec<String> = fit_idx.iter().map(|&i| data.category[i].clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 || fit_idx.len() < MIN_FIT || cal_idx.is_empty() || eval_idx.is_empty()
        {
            return Err(Skip {
                reason: format!(
                    "too few photos to train and evaluate an image classifier: {} categories, {} fit (at least {MIN_FIT}), {} calibration, {} holdout photos",
                    labels.len(),
                    fit_idx.len(),
                    cal_idx.len(),
                    eval_idx.len()
                ),
            }
            .into());
        }
        let label_of = |c: &str| labels.binary_search_by(|l| l.as_str().cmp(c)).ok();
        let xs: Vec<Vec<f32>> = fit_idx.iter().map(|&i| data.features[i].clone()).collect();
        let ys: Vec<usize> = fit_idx
            .iter()
            .map(|&i| label_of(&data.category[i]).expect("fit labels come from fit rows"))
            .collect();
        ctx.progress(format!(
            "training on {} photos, {} categories",
            xs.len(),
            labels.len()
        ));
        let mut model = ImageClassifier::fit(&params, &xs, &ys, &labels, WEIGHTS_SHA256)?;
        // The fit knows only labels it saw, which are all of `labels` (made from the
        // fit rows); map by name all the same, so the order is the model's.
        let local = |c: &str| model.labels.iter().position(|l| l == c);
        let cal: Vec<(usize, usize)> = cal_idx
            .iter()
            .filter_map(|&i| local(&data.category[i]).map(|t| (i, t)))
            .collect();
        let cal_logits: Vec<Vec<f32>> = cal
            .iter()
            .map(|&(i, _)| model.logits(&data.features[i]))
            .collect();
        let cal_truth: Vec<usize> = cal.iter().map(|&(_, t)| t).collect();
        model.temperature = fit_temperature(&cal_logits, &cal_truth);
        let cal_scored: Vec<(f32, bool)> = cal
            .iter()
            .map(|&(i, t)| {
                let c = model.classify(&data.features[i], 1);
                (c.top[0].1, c.top[0].0 == model.labels[t])
            })
            .collect();
        model.review = review_policy(&cal_scored, self.review_precision);

        let (holdout, review_share, auto_accuracy) = evaluate(&model, &data, &eval_idx);
        let unseen = eval_idx
            .iter()
            .filter(|&&i| local(&data.category[i]).is_none())
            .count();
        let mut metrics = BTreeMap::from([
            ("accuracy".to_string(), holdout.accuracy),
            ("macro_f1".to_string(), holdout.macro_f1),
            (
                "expected_calibration_error".to_string(),
                holdout.expected_calibration_error,
            ),
            ("review_share".to_string(), review_share),
            ("auto_accuracy".to_string(), auto_accuracy),
            (
                "review_threshold".to_string(),
                f64::from(model.review.threshold),
            ),
            ("temperature".to_string(), f64::from(model.temperature)),
            ("holdout_photos".to_string(), eval_idx.len() as f64),
            ("holdout_unseen_category".to_string(), unseen as f64),
        ]);
        // A manifest's metrics are numbers: with every holdout photo sent to review
        // there is no auto-categorized accuracy to record (the note says NaN).
        metrics.retain(|_, v| v.is_finite());
        ctx.note(format!(
            "holdout ({} photos): accuracy {:.3}, macro-F1 {:.3}; {:.0}% sent to review (threshold {:.2}), auto-categorized accuracy {:.3}",
            eval_idx.len(),
            holdout.accuracy,
            holdout.macro_f1,
            100.0 * review_share,
            model.review.threshold,
            auto_accuracy
        ));
        let notes = vec![format!(
            "Split by photo file: {} fit, {} calibration, {} holdout photos. Photos whose top probability is under {:.2} go to review (chosen for {:.0}% precision on the calibration photos). Features: EfficientNet-Lite0 (ImageNet, {}), pooled, standardised on the fit photos.",
            fit_idx.len(),
            cal_idx.len(),
            eval_idx.len(),
            model.review.threshold,
            100.0 * self.review_precision,
            vision::PACKAGE
        )];
        let champion = bundles::champion_score(ctx, MODEL, |bundle| {
            let champion = ImageClassifier::from_bundle(bundle, WEIGHTS_SHA256)?;
            Ok(evaluate_in(&champion, &data, &eval_idx, &model.labels).macro_f1)
        });
        if let Some((version, f1)) = &champion {
            metrics.insert("champion_macro_f1".into(), *f1);
            ctx.note(format!(
                "champion {version} on this holdout: macro-F1 {f1:.4}"
            ));
        }
        let mut files: BTreeMap<String, Vec<u8>> = model.to_files().into_iter().collect();
        files.insert(
            "holdout_metrics.json".into(),
            serde_json::to_vec_pretty(&holdout)?,
        );
        let mut report_labels = model.labels.clone();
        report_labels.push("(unseen)".into());
        files.extend(sgml_models::categorize::report::render(
            &format!("{MODEL} model ({KIND}), trained for {run_date}"),
            &metrics,
            &holdout,
            &report_labels,
            &notes,
        )?);
        let training_data = bundles::training_data(
            ctx,
            BTreeMap::from([
                ("fit".to_string(), fit_idx.len()),
                ("calibration".to_string(), cal_idx.len()),
                ("holdout".to_string(), eval_idx.len()),
            ]),
            champion.map(|(v, _)| v),
        );
        let baseline = serde_json::json!({
            "rows": fit_idx.len(),
            "levels": {
                "category": sgml_models::baseline::level_shares(
                    fit_idx.iter().map(|&i| Some(data.category[i].as_str())), 100),
            },
        });
        let spec = BundleSpec {
            name: MODEL,
            kind: KIND,
            parameters: self.parameters(),
            seed: 0,
            input_schema: vec![field("image", "bytes", false)],
            output_schema: vec![
                field("category", "str", false),
                field("probability", "f64", false),
                field("needs_review", "bool", false),
            ],
            gate: Gate {
                metric: "macro_f1".into(),
                direction: Direction::Higher,
                tolerance: 0.01,
            },
        };
        let bundle = bundles::build(spec, files, metrics, training_data, baseline)?;
        bundles::write(ctx, &bundle)
    }
}

/// Holdout metrics in the model's label space plus "(unseen)" for categories the fit
/// cut never had (errors, as they would be in production), the share sent to review,
/// and the accuracy of the rest.
fn evaluate(
    model: &ImageClassifier,
    data: &Photos,
    eval: &[usize],
) -> (ClassificationMetrics, f64, f64) {
    let m = evaluate_in(model, data, eval, &model.labels);
    let (mut auto, mut right) = (0usize, 0usize);
    for &i in eval {
        let c = model.classify(&data.features[i], 1);
        if !c.needs_review {
            auto += 1;
            right += usize::from(c.top[0].0 == data.category[i]);
        }
    }
    let n = eval.len().max(1) as f64;
    let auto_accuracy = if auto == 0 {
        f64::NAN
    } else {
        right as f64 / auto as f64
    };
    (m, 1.0 - auto as f64 / n, auto_accuracy)
}

/// `model`'s holdout metrics in the label space `labels` (+ "(unseen)"): so that a
/// champion with other labels is scored on the same classes as the new version.
fn evaluate_in(
    model: &ImageClassifier,
    data: &Photos,
    eval: &[usize],
    labels: &[String],
) -> ClassificationMetrics {
    let mut all = labels.to_vec();
    all.push("(unseen)".into());
    let other = all.len() - 1;
    let index = |name: &str| labels.iter().position(|l| l == name).unwrap_or(other);
    let (predicted, truth): (Vec<(usize, f32)>, Vec<usize>) = eval
        .iter()
        .map(|&i| {
            let c = model.classify(&data.features[i], 1);
            ((index(&c.top[0].0), c.top[0].1), index(&data.category[i]))
        })
        .unzip();
    classification(&all, &predicted, &truth)
}

/// The run date's embedded photos with their product's category, in product order.
fn read_photos(ctx: &mut RunContext, run_date: NaiveDate) -> anyhow::Result<Photos> {
    let emb = super::read_feature_part(ctx, images::EMBEDDINGS, run_date)?.with_context(|| {
        format!("no photo embeddings for {run_date}: run `sgml images --run-date {run_date}` first")
    })?;
    let vectors = embed::vectors(&emb)?;
    let files: HashMap<String, String> = super::texts(&emb, "product_id")?
        .into_iter()
        .zip(super::texts(&emb, "sha256")?)
        .filter_map(|(id, sha)| Some((id?, sha?)))
        .collect();
    let products = super::read_raw(ctx, Table::Products, run_date)?
        .context("no products ingested")?
        .filter(col("category").is_not_null())
        .select([col("product_id"), col("category")])
        .collect()?;
    let category: HashMap<String, String> = super::texts(&products, "product_id")?
        .into_iter()
        .zip(super::texts(&products, "category")?)
        .filter_map(|(id, c)| Some((id?, c?)))
        .collect();
    let mut photos = Photos {
        product_id: Vec::new(),
        sha256: Vec::new(),
        category: Vec::new(),
        features: Vec::new(),
    };
    for (row, id) in vectors.product_id.iter().enumerate() {
        let (Some(c), Some(sha)) = (category.get(id), files.get(id)) else {
            continue;
        };
        photos.product_id.push(id.clone());
        photos.sha256.push(sha.clone());
        photos.category.push(c.clone());
        photos.features.push(vectors.vector(row).to_vec());
    }
    Ok(photos)
}
