//! `sgml train categorize`: the title categorizer from every product listed up to the
//! run date (title → category), evaluated, calibrated and written as an immutable
//! bundle version under `models/categorize/<version>/`.
//!
//! Split by title, not by row: a third of marketplace titles repeat (the same item
//! from several sellers), and a title in both training and holdout would grade the
//! model on memory. Each distinct normalised title (its words, lower-cased) falls into
//! one cut by its hash: 20% holdout, 10% calibration (temperature and review
//! threshold), the rest fits the model. The shipped model is the one fitted on the
//! fit cut, so the holdout metrics describe exactly what is shipped.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use chrono::NaiveDate;
use polars::prelude::*;
use sgml_features::Table;
use sgml_models::bundle::{Direction, Gate};
use sgml_models::categorize::calibrate::{fit_temperature, review_policy};
use sgml_models::categorize::dense::EmbeddingClassifierParams;
use sgml_models::categorize::metrics::{ClassificationMetrics, classification};
use sgml_models::categorize::model::CategorizerParams;
use sgml_models::categorize::text::words;
use sgml_models::categorize::{self, KIND, TitleCategorizer};

use crate::bundles::{self, BundleSpec, field};
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::steps::embed;

pub const MODEL: &str = "categorize";
/// Shares of distinct titles held out for evaluation and for calibration.
pub const HOLDOUT: f64 = 0.2;
pub const CALIBRATION: f64 = 0.1;
/// Precision asked of automatically categorized listings by default.
pub const DEFAULT_REVIEW_PRECISION: f64 = 0.9;

pub struct TrainCategorize {
    pub params: CategorizerParams,
    /// The challenger: logistic regression over the title embeddings of the run date
    /// (`features/embeddings/`), scored on the same cuts when they exist.
    pub challenger: EmbeddingClassifierParams,
    /// Precision the auto-categorized listings must reach on the calibration titles.
    pub review_precision: f64,
}

impl Default for TrainCategorize {
    fn default() -> TrainCategorize {
        TrainCategorize {
            params: CategorizerParams::default(),
            review_precision: DEFAULT_REVIEW_PRECISION,
            challenger: EmbeddingClassifierParams::default(),
        }
    }
}

pub const SPEC: StepSpec = StepSpec {
    name: "train-categorize",
    command: &["train", "categorize"],
    heavy: true,
    fanout: Fanout::One,
    reads: &[
        "raw/products/dt=*",
        "features/embeddings/dt=<run_date>/ (optional)",
    ],
    writes: &["models/categorize/<version>/"],
    about: "train the title categorizer (hashed n-grams, softmax), evaluate on held-out titles, write a bundle",
    trains: Some(MODEL),
};

/// Labelled titles.
pub struct Titles {
    pub product_id: Vec<String>,
    pub title: Vec<String>,
    pub category: Vec<String>,
    pub language: Vec<Option<String>>,
}

/// Which cut a title belongs to: 0 fit, 1 calibration, 2 holdout, by the hash of its
/// words (so repeats of a title share a cut).
pub fn cut_of(title: &str) -> u8 {
    let key = words(title).join(" ");
    let h = crate::store::sha256_hex(key.as_bytes());
    let x = u64::from_str_radix(&h[..12], 16).expect("hex") as f64 / (1u64 << 48) as f64;
    if x < HOLDOUT {
        2
    } else if x < HOLDOUT + CALIBRATION {
        1
    } else {
        0
    }
}

impl Step for TrainCategorize {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        let p = &self.params;
        serde_json::json!({
            "dim": p.dim, "epochs": p.epochs, "learning_rate": p.learning_rate,
            "threads": p.threads, "seed": p.seed, "features": p.features,
            "review_precision": self.review_precision,
            "holdout": HOLDOUT, "calibration": CALIBRATION,
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("train categorize needs --run-date")?;
        let params = self.params.check()?;
        ctx.progress("reading product titles");
        let data = read_titles(ctx, run_date)?;
        let cuts: Vec<u8> = data.title.iter().map(|t| cut_of(t)).collect();
        let idx = |c: u8| -> Vec<usize> { (0..cuts.len()).filter(|&i| cuts[i] == c).collect() };
        let (fit_idx, cal_idx, eval_idx) = (idx(0), idx(1), idx(2));
        let mut labels: Vec<String> = fit_idx.iter().map(|&i| data.category[i].clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 || cal_idx.is_empty() || eval_idx.is_empty() {
            bail!(
                "too few titles to train and evaluate a categorizer: {} categories, {} fit, {} calibration, {} holdout titles",
                labels.len(),
                fit_idx.len(),
                cal_idx.len(),
                eval_idx.len()
            );
        }
        let label_of = |c: &str| labels.binary_search_by(|l| l.as_str().cmp(c)).ok();
        let refs =
            |ix: &[usize]| -> Vec<&str> { ix.iter().map(|&i| data.title[i].as_str()).collect() };
        let targets: Vec<usize> = fit_idx
            .iter()
            .map(|&i| label_of(&data.category[i]).expect("fit labels come from fit rows"))
            .collect();
        ctx.progress(format!(
            "training on {} titles, {} categories",
            fit_idx.len(),
            labels.len()
        ));
        let mut model = params.fit(&refs(&fit_idx), &targets, labels.clone())?;

        // Rows of a category the fit cut never saw cannot be predicted: they count as
        // errors in the holdout (the model would get them wrong in production too),
        // and are left out of calibration, which needs a true class.
        let known = |ix: &[usize]| -> Vec<(usize, Option<usize>)> {
            ix.iter()
                .map(|&i| (i, label_of(&data.category[i])))
                .collect()
        };
        let cal: Vec<(usize, usize)> = known(&cal_idx)
            .into_iter()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .collect();
        let cal_logits: Vec<Vec<f32>> = cal
            .iter()
            .map(|&(i, _)| model.logits(&data.title[i]))
            .collect();
        let cal_truth: Vec<usize> = cal.iter().map(|&(_, t)| t).collect();
        model.temperature = fit_temperature(&cal_logits, &cal_truth);
        let cal_scored: Vec<(f32, bool)> = cal
            .iter()
            .map(|&(i, t)| {
                let top = model.top_k(&data.title[i], 1)[0];
                (top.1, top.0 == t)
            })
            .collect();
        let review = review_policy(&cal_scored, self.review_precision);
        let categorizer = TitleCategorizer { model, review };

        let eval = known(&eval_idx);
        let unseen = eval.iter().filter(|(_, t)| t.is_none()).count();
        let (holdout, review_share, auto_accuracy) = evaluate(&categorizer, &data, &eval);
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
                f64::from(categorizer.review.threshold),
            ),
            (
                "temperature".to_string(),
                f64::from(categorizer.model.temperature),
            ),
            ("holdout_titles".to_string(), eval.len() as f64),
            ("holdout_unseen_category".to_string(), unseen as f64),
        ]);
        for (lang, acc, n) in accuracy_by_language(&categorizer, &data, &eval) {
            if n >= 20 {
                metrics.insert(format!("accuracy_lang_{lang}"), acc);
            }
        }
        ctx.note(format!(
            "holdout ({} titles): accuracy {:.3}, macro-F1 {:.3}; {:.0}% sent to review (threshold {:.2}), auto-categorized accuracy {:.3}",
            eval.len(),
            holdout.accuracy,
            holdout.macro_f1,
            100.0 * review_share,
            categorizer.review.threshold,
            auto_accuracy
        ));
        let mut notes = vec![format!(
            "Split by distinct title: {} fit, {} calibration, {} holdout titles. Listings whose top probability is under {:.2} go to review (chosen for {:.0}% precision on the calibration titles).",
            fit_idx.len(),
            cal_idx.len(),
            eval.len(),
            categorizer.review.threshold,
            100.0 * self.review_precision
        )];
        match read_embeddings(ctx, run_date)? {
            Some(vectors) => {
                ctx.progress("fitting the embedding classifier (the challenger)");
                let c = challenger(&self.challenger, &vectors, &data, &fit_idx, &targets, &cal, &eval, &labels)?;
                metrics.insert("embedding_accuracy".into(), c.accuracy);
                metrics.insert("embedding_macro_f1".into(), c.macro_f1);
                let winner = match c.macro_f1.total_cmp(&holdout.macro_f1) {
                    std::cmp::Ordering::Greater => "the embedding classifier wins",
                    std::cmp::Ordering::Less => "the n-gram model wins",
                    std::cmp::Ordering::Equal => "a tie",
                };
                let line = format!(
                    "challenger (logistic regression on all-MiniLM-L6-v2 embeddings) on the same holdout: accuracy {:.3}, macro-F1 {:.3}; {winner} on macro-F1 ({:.3} vs {:.3})",
                    c.accuracy, c.macro_f1, c.macro_f1, holdout.macro_f1
                );
                ctx.note(line.clone());
                notes.push(line);
            }
            None => ctx.note(format!(
                "no title embeddings for {run_date} (run `sgml embed` first): the embedding classifier was not compared"
            )),
        }
        let champion = champion_on(ctx, &data, &eval, &labels);
        if let Some((version, f1)) = &champion {
            metrics.insert("champion_macro_f1".into(), *f1);
            ctx.note(format!(
                "champion {version} on this holdout: macro-F1 {f1:.4}"
            ));
        }

        let mut files: BTreeMap<String, Vec<u8>> = categorizer.to_files().into_iter().collect();
        files.insert(
            "holdout_metrics.json".into(),
            serde_json::to_vec_pretty(&holdout)?,
        );
        files.extend(categorize::report::render(
            &format!("{MODEL} model ({KIND}), trained for {run_date}"),
            &metrics,
            &holdout,
            &labels,
            &notes,
        )?);
        let training_data = bundles::training_data(
            ctx,
            BTreeMap::from([
                ("fit".to_string(), fit_idx.len()),
                ("calibration".to_string(), cal_idx.len()),
                ("holdout".to_string(), eval.len()),
            ]),
            champion.map(|(v, _)| v),
        );
        let baseline = serde_json::json!({
            "rows": fit_idx.len(),
            "levels": {
                "category": sgml_models::baseline::level_shares(fit_idx.iter().map(|&i| Some(data.category[i].as_str())), 100),
                "language": sgml_models::baseline::level_shares(fit_idx.iter().map(|&i| data.language[i].as_deref()), 50),
            },
        });
        let spec = BundleSpec {
            name: MODEL,
            kind: KIND,
            parameters: self.parameters(),
            seed: self.params.seed,
            input_schema: vec![field("title", "str", true), field("language", "str", true)],
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

/// This run date's title embeddings by product id, if `sgml embed` wrote them.
fn read_embeddings(
    ctx: &mut RunContext,
    run_date: NaiveDate,
) -> anyhow::Result<Option<HashMap<String, Vec<f32>>>> {
    Ok(embed::read(ctx, run_date)?.map(|e| {
        (0..e.len())
            .map(|i| (e.product_id[i].clone(), e.vector(i).to_vec()))
            .collect()
    }))
}

/// The embedding classifier fitted on the fit cut, its temperature on the
/// calibration cut, scored on the holdout like the n-gram model. Titles without an
/// embedding (listed after `sgml embed` ran) count as errors.
#[allow(clippy::too_many_arguments)]
fn challenger(
    params: &EmbeddingClassifierParams,
    vectors: &HashMap<String, Vec<f32>>,
    data: &Titles,
    fit_idx: &[usize],
    targets: &[usize],
    cal: &[(usize, usize)],
    eval: &[(usize, Option<usize>)],
    labels: &[String],
) -> anyhow::Result<ClassificationMetrics> {
    let vector = |i: usize| vectors.get(&data.product_id[i]);
    let (xs, ys): (Vec<Vec<f32>>, Vec<usize>) = fit_idx
        .iter()
        .zip(targets)
        .filter_map(|(&i, &t)| vector(i).map(|v| (v.clone(), t)))
        .unzip();
    let mut model = params.check()?.fit(&xs, &ys, labels)?;
    // The challenger knows only the labels it saw; map them back to `labels`.
    let index: Vec<usize> = model
        .labels
        .iter()
        .map(|l| labels.iter().position(|x| x == l).expect("a fit label"))
        .collect();
    let (cal_logits, cal_truth): (Vec<Vec<f32>>, Vec<usize>) = cal
        .iter()
        .filter_map(|&(i, t)| {
            let v = vector(i)?;
            let local = index.iter().position(|&g| g == t)?;
            Some((model.logits(v), local))
        })
        .unzip();
    model.temperature = fit_temperature(&cal_logits, &cal_truth);
    let mut all = labels.to_vec();
    all.push("(unseen)".into());
    let miss = all.len() - 1;
    let (predicted, truth): (Vec<(usize, f32)>, Vec<usize>) = eval
        .iter()
        .map(|&(i, t)| {
            let p = vector(i).map_or((miss, 0.0), |v| {
                let (c, p) = model.top(v);
                (index[c], p)
            });
            (p, t.unwrap_or(miss))
        })
        .unzip();
    Ok(classification(&all, &predicted, &truth))
}

/// Holdout metrics, the share sent to review, and the accuracy of the rest.
fn evaluate(
    c: &TitleCategorizer,
    data: &Titles,
    eval: &[(usize, Option<usize>)],
) -> (ClassificationMetrics, f64, f64) {
    // An unseen category is scored against an extra "(unseen)" class nothing predicts.
    let mut labels = c.model.labels.clone();
    labels.push("(unseen)".into());
    let unseen = labels.len() - 1;
    let mut predicted = Vec::with_capacity(eval.len());
    let mut truth = Vec::with_capacity(eval.len());
    let (mut auto, mut auto_right) = (0usize, 0usize);
    for &(i, t) in eval {
        let top = c.model.top_k(&data.title[i], 1)[0];
        let t = t.unwrap_or(unseen);
        if top.1 >= c.review.threshold {
            auto += 1;
            auto_right += usize::from(top.0 == t);
        }
        predicted.push(top);
        truth.push(t);
    }
    let m = classification(&labels, &predicted, &truth);
    let n = eval.len().max(1) as f64;
    let auto_accuracy = if auto == 0 {
        f64::NAN
    } else {
        auto_right as f64 / auto as f64
    };
    (m, 1.0 - auto as f64 / n, auto_accuracy)
}

/// Holdout accuracy per (declared) language: (language, accuracy, titles).
fn accuracy_by_language(
    c: &TitleCategorizer,
    data: &Titles,
    eval: &[(usize, Option<usize>)],
) -> Vec<(String, f64, usize)> {
    let mut by: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for &(i, t) in eval {
        let lang = data.language[i].clone().unwrap_or_else(|| "unknown".into());
        let e = by.entry(lang).or_default();
        e.0 += 1;
        e.1 += usize::from(Some(c.model.top_k(&data.title[i], 1)[0].0) == t);
    }
    by.into_iter()
        .map(|(l, (n, right))| (l, right as f64 / n as f64, n))
        .collect()
}

/// The current champion's macro-F1 on this holdout, in this version's label space.
fn champion_on(
    ctx: &mut RunContext,
    data: &Titles,
    eval: &[(usize, Option<usize>)],
    labels: &[String],
) -> Option<(String, f64)> {
    bundles::champion_score(ctx, MODEL, |bundle| {
        let champion = TitleCategorizer::from_bundle(bundle)?;
        let mut all = labels.to_vec();
        all.push("(other)".into());
        let other = all.len() - 1;
        let predicted: Vec<(usize, f32)> = eval
            .iter()
            .map(|&(i, _)| {
                let top = champion.model.top_k(&data.title[i], 1)[0];
                let name = &champion.model.labels[top.0];
                (
                    labels.iter().position(|l| l == name).unwrap_or(other),
                    top.1,
                )
            })
            .collect();
        let truth: Vec<usize> = eval.iter().map(|(_, t)| t.unwrap_or(other)).collect();
        Ok(classification(&all, &predicted, &truth).macro_f1)
    })
}

fn read_titles(ctx: &mut RunContext, run_date: NaiveDate) -> anyhow::Result<Titles> {
    let products =
        super::read_raw(ctx, Table::Products, run_date)?.context("no products ingested")?;
    let df = products
        .filter(
            col("title")
                .is_not_null()
                .and(col("category").is_not_null()),
        )
        .select([
            col("product_id"),
            col("title"),
            col("category"),
            col("language"),
        ])
        // A fixed order: the same products give the same model.
        .sort(["product_id"], SortMultipleOptions::default())
        .collect()?;
    let text = |c: &str| super::texts(&df, c);
    Ok(Titles {
        product_id: text("product_id")?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
        title: text("title")?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
        category: text("category")?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
        language: text("language")?,
    })
}
