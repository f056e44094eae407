//! Diamonds price models with this project's estimators (sgml-models: LightGBM through
//! lightgbm3, ElasticNet through linfa), on the split `benches/anchors/pricing.py`
//! made with scikit-learn, so Rust and Python train and test on the same rows.
//!
//! Features as in `../shared/NOTES.md`: carat, depth, table, x, y, z, and cut, color,
//! clarity as ordered integer codes (the trees); the linear model gets them one-hot.
//!
//! Usage: anchor-pricing DIAMONDS.csv.gz TEST_ROWS.txt THREADS → prints JSON, one
//! object per model: rmse (log price), train_seconds, predict_rows_per_second.

use std::io::{BufRead, BufReader};
use std::time::Instant;

use anyhow::{Context, bail};
use sgml_models::estimator::{Fit, Matrix, Params, Predict};
use sgml_models::gbdt::GbdtParams;
use sgml_models::linear::LinearParams;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CUT: [&str; 5] = ["Fair", "Good", "Very Good", "Premium", "Ideal"];
const COLOR: [&str; 7] = ["J", "I", "H", "G", "F", "E", "D"];
const CLARITY: [&str; 8] = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"];
const NUMERIC: [&str; 6] = ["carat", "depth", "table", "x", "y", "z"];

struct Diamond {
    numeric: [f64; 6],
    cut: usize,
    color: usize,
    clarity: usize,
    log_price: f64,
}

fn read(path: &str) -> anyhow::Result<Vec<Diamond>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut csv = csv::Reader::from_reader(flate2::read::GzDecoder::new(file));
    let headers = csv.headers()?.clone();
    let at = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{path}: no column {name}"))
    };
    let numeric_at: Vec<usize> = NUMERIC.iter().map(|c| at(c)).collect::<Result<_, _>>()?;
    let (cut_at, color_at, clarity_at, price_at) =
        (at("cut")?, at("color")?, at("clarity")?, at("price")?);
    let mut rows = Vec::new();
    for (i, record) in csv.records().enumerate() {
        let r = record?;
        let code = |levels: &[&str], j: usize| {
            levels
                .iter()
                .position(|l| *l == &r[j])
                .with_context(|| format!("{path} row {}: unknown level {}", i + 2, &r[j]))
        };
        let mut numeric = [0.0; 6];
        for (k, &j) in numeric_at.iter().enumerate() {
            numeric[k] = r[j].parse()?;
        }
        rows.push(Diamond {
            numeric,
            cut: code(&CUT, cut_at)?,
            color: code(&COLOR, color_at)?,
            clarity: code(&CLARITY, clarity_at)?,
            log_price: r[price_at].parse::<f64>()?.ln(),
        });
    }
    Ok(rows)
}

fn codes(rows: &[&Diamond]) -> anyhow::Result<Matrix> {
    let names = NUMERIC
        .iter()
        .map(|s| s.to_string())
        .chain(["cut", "color", "clarity"].map(String::from))
        .collect();
    let values = rows
        .iter()
        .flat_map(|d| {
            d.numeric
                .into_iter()
                .chain([d.cut as f64, d.color as f64, d.clarity as f64])
        })
        .collect();
    Ok(Matrix::new(names, values)?)
}

fn one_hot(rows: &[&Diamond]) -> anyhow::Result<Matrix> {
    let mut names: Vec<String> = NUMERIC.iter().map(|s| s.to_string()).collect();
    for (prefix, levels) in [("cut", &CUT[..]), ("color", &COLOR), ("clarity", &CLARITY)] {
        // The first level is the reference (dropped), as in Ridge on drop-first dummies.
        names.extend(levels[1..].iter().map(|l| format!("{prefix}={l}")));
    }
    let mut values = Vec::with_capacity(rows.len() * names.len());
    for d in rows {
        values.extend(d.numeric);
        for (code, n) in [
            (d.cut, CUT.len()),
            (d.color, COLOR.len()),
            (d.clarity, CLARITY.len()),
        ] {
            values.extend((1..n).map(|k| f64::from(u8::from(k == code))));
        }
    }
    Ok(Matrix::new(names, values)?)
}

fn rmse(p: &[f64], y: &[f64]) -> f64 {
    (p.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64).sqrt()
}

fn measure<F: Fit>(
    name: &str,
    params: &F,
    train: (&Matrix, &[f64]),
    test: (&Matrix, &[f64]),
) -> anyhow::Result<serde_json::Value> {
    let t0 = Instant::now();
    let model = params.fit(train.0, train.1)?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let pred = model.predict(test.0)?;
    let predict_seconds = t1.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "model": name,
        "rmse": rmse(&pred, test.1),
        "train_seconds": train_seconds,
        "predict_rows_per_second": test.1.len() as f64 / predict_seconds,
    }))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, test_rows, threads] = args.as_slice() else {
        bail!("usage: anchor-pricing DIAMONDS.csv.gz TEST_ROWS.txt THREADS");
    };
    let threads: usize = threads.parse()?;
    let rows = read(data)?;
    let mut is_test = vec![false; rows.len()];
    for line in BufReader::new(std::fs::File::open(test_rows)?).lines() {
        let i: usize = line?.trim().parse()?;
        *is_test.get_mut(i).context("test row index out of range")? = true;
    }
    let pick = |want: bool| -> Vec<&Diamond> {
        rows.iter()
            .zip(&is_test)
            .filter(|(_, t)| **t == want)
            .map(|(d, _)| d)
            .collect()
    };
    let (test, train) = (pick(true), pick(false));
    let y = |s: &[&Diamond]| s.iter().map(|d| d.log_price).collect::<Vec<f64>>();
    let (y_train, y_test) = (y(&train), y(&test));
    let (x_train, x_test) = (codes(&train)?, codes(&test)?);
    let (h_train, h_test) = (one_hot(&train)?, one_hot(&test)?);

    // LightGBM's own defaults: 100 trees at learning rate 0.1.
    let default = GbdtParams {
        trees: 100,
        learning_rate: 0.1,
        threads,
        ..GbdtParams::default()
    };
    let long = GbdtParams {
        trees: 1000,
        learning_rate: 0.05,
        threads,
        ..GbdtParams::default()
    };
    let results = vec![
        measure(
            "sgml GBDT (LightGBM default: 100 × 0.1)",
            &default.check()?,
            (&x_train, &y_train),
            (&x_test, &y_test),
        )?,
        measure(
            "sgml GBDT (1000 × 0.05)",
            &long.check()?,
            (&x_train, &y_train),
            (&x_test, &y_test),
        )?,
        measure(
            "sgml linear (ElasticNet, one-hot)",
            &LinearParams::default().check()?,
            (&h_train, &y_train),
            (&h_test, &y_test),
        )?,
    ];
    println!(
        "{}",
        serde_json::json!({ "train_rows": y_train.len(), "test_rows": y_test.len(), "models": results })
    );
    Ok(())
}
