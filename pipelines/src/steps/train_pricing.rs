//! `sgml train pricing`: a GBDT on log price (base currency) from the order lines as of
//! the run date, split by time, evaluated, with split-conformal intervals, written as
//! an immutable bundle version under `models/pricing/<version>/`.
//!
//! Time split: sale lines are ordered by date; the last 20% of days (or the days from
//! `--holdout-from`) is the holdout. The last 10% of the days before it calibrate the
//! intervals with trees fitted on the days before them; the shipped model is those
//! trees with lookups refitted on every day before the holdout, and is the one the
//! holdout metrics measure.
//! Target encodings are fitted on training rows only (out of fold for the training
//! rows themselves), so no holdout price reaches the model or its features.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use polars::prelude::*;
use sgml_features::Table;
use sgml_models::bundle::{Direction, Gate, TimeSplit, TrainingData};
use sgml_models::estimator::{Fit, Matrix, Params, Predict};
use sgml_models::gbdt::GbdtParams;
use sgml_models::gbdt::ValidGbdtParams;
use sgml_models::linear::LinearParams;
use sgml_models::linear::ValidLinearParams;
use sgml_models::metrics::{ConformalInterval, RegressionMetrics, regression};
use sgml_models::pricing::{self, KIND_GBDT, KIND_LINEAR, PriceInput, PricingLookups};
use sgml_models::{baseline, report};

use crate::bundles::{self, BundleSpec, field};
use crate::io;
use crate::run::{Fanout, RunContext, Step, StepSpec};

pub const MODEL: &str = "pricing";

/// Which estimator prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Gbdt,
    Linear,
}
/// Share of days (the latest) held out for evaluation.
pub const HOLDOUT: f64 = 0.2;
/// Share of the remaining days (the latest) that calibrates the intervals.
pub const CALIBRATION: f64 = 0.1;
pub const COVERAGE: f64 = 0.9;

pub struct TrainPricing {
    pub algo: Algo,
    /// First day of the holdout; by default the latest [`HOLDOUT`] share of days.
    pub holdout_from: Option<NaiveDate>,
    pub params: GbdtParams,
    pub linear: LinearParams,
}

impl Default for TrainPricing {
    /// LightGBM with its default parameters, the latest days held out.
    fn default() -> TrainPricing {
        TrainPricing {
            algo: Algo::Gbdt,
            holdout_from: None,
            params: GbdtParams::default(),
            linear: LinearParams::default(),
        }
    }
}

pub const SPEC: StepSpec = StepSpec {
    name: "train-pricing",
    command: &["train", "pricing"],
    heavy: true,
    fanout: Fanout::One,
    reads: &["features/order_lines/dt=<run_date>/", "raw/products/dt=*"],
    writes: &["models/pricing/<version>/"],
    about: "train the price model (LightGBM on log price), evaluate on the latest days, write a bundle",
    trains: Some(MODEL),
};

/// The fitted model's file in the bundle: path and bytes.
type ModelFile = (String, Vec<u8>);

/// Training rows: attributes, log price, order day.
struct Rows {
    inputs: Vec<PriceInput>,
    log_price: Vec<f64>,
    day: Vec<i32>,
}

impl Step for TrainPricing {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        let p = &self.params;
        serde_json::json!({
            "algo": format!("{:?}", self.algo).to_lowercase(),
            "penalty": self.linear.penalty, "l1_ratio": self.linear.l1_ratio,
            "trees": p.trees, "learning_rate": p.learning_rate, "num_leaves": p.num_leaves,
            "min_data_in_leaf": p.min_data_in_leaf, "seed": p.seed,
            "holdout": HOLDOUT, "holdout_from": self.holdout_from, "calibration": CALIBRATION, "coverage": COVERAGE,
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("train pricing needs --run-date")?;
        let gbdt_params = self.params.check()?;
        let linear_params = self.linear.check()?;
        ctx.progress("reading order lines");
        let rows = read_rows(ctx, run_date)?;
        let (cut_eval, cut_cal) = cutoffs(&rows.day, self.holdout_from)?;
        let part = |pred: &dyn Fn(i32) -> bool| -> Vec<usize> {
            (0..rows.day.len()).filter(|&i| pred(rows.day[i])).collect()
        };
        let (fit_idx, cal_idx, eval_idx) = (
            part(&|d| d < cut_cal),
            part(&|d| d >= cut_cal && d < cut_eval),
            part(&|d| d >= cut_eval),
        );
        if fit_idx.is_empty() || cal_idx.is_empty() || eval_idx.is_empty() {
            bail!(
                "too little history to split by time ({} fit, {} calibration, {} holdout rows)",
                fit_idx.len(),
                cal_idx.len(),
                eval_idx.len()
            );
        }
        let take = |idx: &[usize]| -> (Vec<PriceInput>, Vec<f64>) {
            idx.iter()
                .map(|&i| (rows.inputs[i].clone(), rows.log_price[i]))
                .unzip()
        };
        let (fit_x, fit_y) = take(&fit_idx);
        let (cal_x, cal_y) = take(&cal_idx);
        let (eval_x, eval_y) = take(&eval_idx);
        let (train_x, train_y) = take(&[fit_idx.as_slice(), &cal_idx].concat());
        ctx.note(format!(
            "time split: train before {} ({} lines; intervals calibrated on {} lines from {} by a model fitted before it), holdout from {} ({} lines)",
            sgml_features::values::date_from_days(cut_eval),
            train_y.len(),
            cal_y.len(),
            sgml_features::values::date_from_days(cut_cal),
            sgml_features::values::date_from_days(cut_eval),
            eval_y.len()
        ));

        // Split-conformal needs residuals of a model that never saw the calibration
        // days, so the trees are fitted on the days before them. The calibration days
        // still reach the shipped model through its lookups, refitted on every day
        // before the holdout: they hold the most recent prices and the products first
        // sold in them. The holdout metrics and coverage are measured on the shipped
        // model (these trees, the refreshed lookups).
        ctx.progress(format!("training on {} lines", fit_y.len()));
        let (model, fit_lookups, (file, importance, matrix)) =
            self.fit(&fit_x, &fit_y, &gbdt_params, &linear_params)?;
        let cal_pred = model.predict(&fit_lookups.transform(&cal_x))?;
        let residuals: Vec<f64> = cal_pred.iter().zip(&cal_y).map(|(p, y)| p - y).collect();
        let interval = ConformalInterval::calibrate(&residuals, COVERAGE);
        let lookups = PricingLookups::fit(&train_x, &train_y)?;
        let eval_pred = model.predict(&lookups.transform(&eval_x))?;
        let metrics = regression(&eval_pred, &eval_y);
        let coverage = interval.empirical_coverage(&eval_pred, &eval_y);
        let baseline = category_median_baseline(&train_x, &train_y, &eval_x, &eval_y);
        ctx.note(format!(
            "holdout: rmse_log {:.4} (category-median baseline {:.4}), median APE {:.3}, interval coverage {:.3}",
            metrics.rmse_log, baseline.rmse_log, metrics.median_ape, coverage
        ));

        let mut metrics = metrics_map(&metrics, coverage, &baseline);
        // The gate compares challenger and champion on the same rows: score the current
        // champion on this holdout now, while the rows are at hand.
        let champion = champion_on(ctx, &eval_x, &eval_y);
        if let Some((version, rmse)) = &champion {
            metrics.insert("champion_rmse_log".into(), *rmse);
            ctx.note(format!(
                "champion {version} on this holdout: rmse_log {rmse:.4}"
            ));
        }
        ctx.progress("drawing the report");
        let mut files = BTreeMap::from([
            file,
            (
                "lookups.json".to_string(),
                serde_json::to_vec_pretty(&lookups)?,
            ),
            (
                "interval.json".to_string(),
                serde_json::to_vec_pretty(&interval)?,
            ),
        ]);
        let level = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        let kind = self.kind();
        files.extend(report::render(&report::Evaluation {
            title: &format!("{MODEL} model ({kind}), trained for {run_date}"),
            metrics: &metrics,
            predicted: &eval_pred,
            actual: &eval_y,
            half_width: interval.half_width,
            coverage_target: COVERAGE,
            groups: vec![
                (
                    "category",
                    eval_x.iter().map(|r| level(&r.category)).collect(),
                ),
                ("market", eval_x.iter().map(|r| r.market.clone()).collect()),
            ],
            importance: pricing::COLUMNS
                .iter()
                .map(|c| c.to_string())
                .zip(importance)
                .collect(),
        })?);
        let training_data = TrainingData {
            split: Some(TimeSplit {
                train_until: sgml_features::values::date_from_days(cut_eval - 1).to_string(),
                calibration_from: sgml_features::values::date_from_days(cut_cal).to_string(),
                holdout_from: sgml_features::values::date_from_days(cut_eval).to_string(),
            }),
            ..bundles::training_data(
                ctx,
                BTreeMap::from([
                    ("train".to_string(), train_y.len()),
                    ("calibration".to_string(), cal_y.len()),
                    ("holdout".to_string(), eval_y.len()),
                ]),
                champion.map(|(v, _)| v),
            )
        };
        let baseline = serde_json::json!({
            "rows": train_y.len(),
            "mean_log_price": train_y.iter().sum::<f64>() / train_y.len() as f64,
            "columns": baseline::profile_columns(&matrix),
            "levels": {
                "category": baseline::level_shares(train_x.iter().map(|r| r.category.as_deref()), 50),
                "market": baseline::level_shares(train_x.iter().map(|r| Some(r.market.as_str())), 50),
                "condition": baseline::level_shares(train_x.iter().map(|r| r.condition.as_deref()), 10),
            },
        });
        let spec = BundleSpec {
            name: MODEL,
            kind: self.kind(),
            parameters: self.parameters(),
            seed: self.params.seed,
            input_schema: pricing::input_schema(),
            output_schema: vec![
                field("log_price_base", "f64", false),
                field("price_base", "f64", false),
                field("price_low", "f64", false),
                field("price_high", "f64", false),
            ],
            gate: Gate {
                metric: "rmse_log".into(),
                direction: Direction::Lower,
                tolerance: 0.005,
            },
        };
        let bundle = bundles::build(spec, files, metrics, training_data, baseline)?;
        bundles::write(ctx, &bundle)
    }
}

fn read_rows(ctx: &mut RunContext, run_date: NaiveDate) -> anyhow::Result<Rows> {
    let key = format!(
        "{}{}",
        io::partition("features", "order_lines", run_date),
        io::PART
    );
    if ctx.store.get(&key)?.is_none() {
        bail!("no features for {run_date}: run `sgml features --run-date {run_date}` first");
    }
    let (lines, record) = io::scan(ctx.store, &key)?;
    ctx.input(record);
    let products =
        super::read_raw(ctx, Table::Products, run_date)?.context("no products ingested")?;
    let df = lines
        .filter(col("is_sale").and(col("log_price_base").is_not_null()))
        .select([
            col("order_ts"),
            col("order_id"),
            col("line_no"),
            col("product_id"),
            col("category"),
            col("brand"),
            col("condition"),
            col("buyer_country"),
            col("seller_country"),
            col("quantity").cast(DataType::Float64),
            col("customer_key").is_null().alias("guest"),
            col("order_date").cast(DataType::Int32).alias("day"),
            col("order_date")
                .dt()
                .month()
                .cast(DataType::UInt32)
                .alias("month"),
            col("log_price_base"),
        ])
        .join(
            products.select([col("product_id"), col("title")]),
            [col("product_id")],
            [col("product_id")],
            JoinArgs::new(JoinType::Left),
        )
        // The feature step's row order is whatever its streaming engine produced, and
        // joins need not keep order: training in a fixed order makes the same data give
        // the same model bytes.
        .sort(
            ["order_ts", "order_id", "line_no"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()?;
    let text = |c: &str| super::texts(&df, c);
    let (category, brand, condition, market, seller, title) = (
        text("category")?,
        text("brand")?,
        text("condition")?,
        text("buyer_country")?,
        text("seller_country")?,
        text("title")?,
    );
    let month = df.column("month")?.u32()?;
    let quantity = df.column("quantity")?.f64()?;
    let guest = df.column("guest")?.bool()?;
    let product = text("product_id")?;
    let inputs = (0..df.height())
        .map(|i| PriceInput {
            product_id: product[i].clone(),
            quantity: quantity.get(i),
            guest: guest.get(i),
            category: category[i].clone(),
            brand: brand[i].clone(),
            condition: condition[i].clone(),
            market: market[i].clone().unwrap_or_default(),
            seller_country: seller[i].clone(),
            title: title[i].clone(),
            month: month.get(i).unwrap_or(0),
        })
        .collect();
    Ok(Rows {
        inputs,
        log_price: df
            .column("log_price_base")?
            .f64()?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect(),
        day: df
            .column("day")?
            .i32()?
            .iter()
            .map(|v| v.unwrap_or(i32::MIN))
            .collect(),
    })
}

/// First day of the holdout and first day of the calibration window.
fn cutoffs(days: &[i32], holdout_from: Option<NaiveDate>) -> anyhow::Result<(i32, i32)> {
    let (Some(&first), Some(&last)) = (days.iter().min(), days.iter().max()) else {
        bail!("no priced sale lines to train on");
    };
    let span = f64::from(last - first + 1);
    let cut_eval = match holdout_from {
        Some(d) => {
            let day = sgml_features::values::days_since_epoch(d);
            if day <= first || day > last {
                bail!(
                    "--holdout-from {d} leaves no {} (sale lines run from {} to {})",
                    if day <= first {
                        "training rows"
                    } else {
                        "holdout rows"
                    },
                    sgml_features::values::date_from_days(first),
                    sgml_features::values::date_from_days(last)
                );
            }
            day
        }
        None => last + 1 - (span * HOLDOUT).ceil() as i32,
    };
    let cut_cal = cut_eval - (f64::from(cut_eval - first) * CALIBRATION).ceil() as i32;
    Ok((cut_eval, cut_cal))
}

/// What a model must beat: the median training log price of the row's category.
fn category_median_baseline(
    fit_x: &[PriceInput],
    fit_y: &[f64],
    eval_x: &[PriceInput],
    eval_y: &[f64],
) -> RegressionMetrics {
    let mut by: BTreeMap<Option<String>, Vec<f64>> = BTreeMap::new();
    for (r, y) in fit_x.iter().zip(fit_y) {
        by.entry(r.category.clone()).or_default().push(*y);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut all = fit_y.to_vec();
    let global = median(&mut all);
    let medians: BTreeMap<Option<String>, f64> = by
        .into_iter()
        .map(|(k, mut v)| (k, median(&mut v)))
        .collect();
    let pred: Vec<f64> = eval_x
        .iter()
        .map(|r| *medians.get(&r.category).unwrap_or(&global))
        .collect();
    regression(&pred, eval_y)
}

fn metrics_map(
    metrics: &RegressionMetrics,
    coverage: f64,
    baseline: &RegressionMetrics,
) -> BTreeMap<String, f64> {
    [
        ("rmse_log", metrics.rmse_log),
        ("mae_log", metrics.mae_log),
        ("mape", metrics.mape),
        ("median_ape", metrics.median_ape),
        ("r2_log", metrics.r2_log),
        ("interval_coverage", coverage),
        ("holdout_rows", metrics.rows as f64),
        ("baseline_category_median_rmse_log", baseline.rmse_log),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The champion's version and its RMSE of log price on these rows; `None` when there
/// is no champion or it cannot score this build's inputs (noted: the gate will then
/// ask for `--force`).
fn champion_on(ctx: &mut RunContext, x: &[PriceInput], y: &[f64]) -> Option<(String, f64)> {
    bundles::champion_score(ctx, MODEL, |bundle| {
        let model = pricing::PriceModel::from_bundle(bundle)?;
        let pred: Vec<f64> = model.price(x)?.iter().map(|p| p.log_price).collect();
        Ok(regression(&pred, y).rmse_log)
    })
}

/// What a fit yields besides the model and lookups: the model's bundle file, feature
/// importance by column, and the training matrix (for the drift baseline).
type FitOutputs = (ModelFile, Vec<f64>, Matrix);

impl TrainPricing {
    /// Encodes the rows (out of fold) and fits the chosen estimator on them.
    fn fit(
        &self,
        x: &[PriceInput],
        y: &[f64],
        gbdt: &ValidGbdtParams,
        linear: &ValidLinearParams,
    ) -> anyhow::Result<(Box<dyn Predict>, PricingLookups, FitOutputs)> {
        let (matrix, lookups) = pricing::fit_transform(x, y, 5, self.params.seed)?;
        Ok(match self.algo {
            Algo::Gbdt => {
                let m = gbdt.fit(&matrix, y)?;
                let file = ("model.txt".to_string(), m.to_text()?.into_bytes());
                let importance = m.importance()?;
                (Box::new(m), lookups, (file, importance, matrix))
            }
            Algo::Linear => {
                let m = linear.fit(&matrix, y)?;
                let file = ("model.json".to_string(), serde_json::to_vec_pretty(&m)?);
                let importance = m.importance();
                (Box::new(m), lookups, (file, importance, matrix))
            }
        })
    }

    fn kind(&self) -> &'static str {
        match self.algo {
            Algo::Gbdt => KIND_GBDT,
            Algo::Linear => KIND_LINEAR,
        }
    }
}
