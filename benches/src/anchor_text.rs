//! The Rust side of `benches/anchors/text.py`: the title categorizer, the embedding
//! classifier and the sentence embedder on the rows and titles the Python harness
//! chose, so both sides train and test on the same data.
//!
//! Usage (each prints one JSON object):
//!   anchor-text categorize TITLES.csv.gz SPLIT.json THREADS
//!       SPLIT.json: {"train": [row...], "valid": [row...], "test": [row...]} where
//!       valid ⊂ train. Tunes epochs, learning rate and character n-grams (off or
//!       3–5) on train∖valid → valid, then trains on all of train (timed: the median
//!       of three fits) and scores test.
//!   anchor-text embed-classify TITLES.csv.gz SPLIT.json THREADS MODEL_DIR
//!       Logistic regression on the titles' embeddings (train → test).
//!   anchor-text embed MODEL_DIR TITLES.json THREADS BATCH OUT.f32
//!       Embeds the titles (a JSON list), writes the vectors (little-endian f32) to
//!       OUT.f32 and reports titles per second, load time and peak RSS.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, bail};
use sgml_models::categorize::dense::EmbeddingClassifierParams;
use sgml_models::categorize::metrics::classification;
use sgml_models::categorize::model::{Categorizer, CategorizerParams};
use sgml_models::categorize::text::TextFeatures;
use sgml_models::embed::Embedder;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The grid both sides search (fastText's in text.py is the same shape).
const EPOCHS: [usize; 3] = [5, 10, 25];
const LEARNING_RATES: [f32; 3] = [0.1, 0.5, 1.0];
/// Character n-gram lengths (min, max), ours only: fastText's supervised default is
/// none, and they cost about ten rows per word — worth it only where they score.
const CHAR_NGRAMS: [(u32, u32); 2] = [(0, 0), (3, 5)];

struct Data {
    titles: Vec<String>,
    categories: Vec<String>,
}

fn read_titles(path: &str) -> anyhow::Result<Data> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut csv = csv::Reader::from_reader(flate2::read::GzDecoder::new(file));
    let headers = csv.headers()?.clone();
    let at = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{path}: no column {name}"))
    };
    let (title_at, category_at) = (at("title")?, at("category")?);
    let mut data = Data {
        titles: Vec::new(),
        categories: Vec::new(),
    };
    for record in csv.records() {
        let r = record?;
        data.titles.push(r[title_at].to_string());
        data.categories.push(r[category_at].to_string());
    }
    Ok(data)
}

fn read_split(path: &str) -> anyhow::Result<HashMap<String, Vec<usize>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(serde_json::from_str(&text)?)
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

struct Labels(Vec<String>);

impl Labels {
    fn of(data: &Data) -> Labels {
        let mut l = data.categories.clone();
        l.sort();
        l.dedup();
        Labels(l)
    }
    fn index(&self, c: &str) -> usize {
        self.0
            .binary_search_by(|l| l.as_str().cmp(c))
            .expect("a known label")
    }
}

fn fit(
    data: &Data,
    labels: &Labels,
    rows: &[usize],
    params: &CategorizerParams,
) -> anyhow::Result<Categorizer> {
    let titles: Vec<&str> = rows.iter().map(|&i| data.titles[i].as_str()).collect();
    let targets: Vec<usize> = rows
        .iter()
        .map(|&i| labels.index(&data.categories[i]))
        .collect();
    Ok(params.check()?.fit(&titles, &targets, labels.0.clone())?)
}

/// (accuracy, macro-F1) of a model's top-1 on `rows`, and the same on the rows whose
/// title does not occur in `train` (duplicate-aware).
fn score(
    data: &Data,
    labels: &Labels,
    rows: &[usize],
    predict: impl Fn(usize) -> (usize, f32),
    seen: &std::collections::HashSet<&str>,
) -> serde_json::Value {
    let predicted: Vec<(usize, f32)> = rows.iter().map(|&i| predict(i)).collect();
    let truth: Vec<usize> = rows
        .iter()
        .map(|&i| labels.index(&data.categories[i]))
        .collect();
    let all = classification(&labels.0, &predicted, &truth);
    let (p_new, t_new): (Vec<(usize, f32)>, Vec<usize>) = rows
        .iter()
        .zip(predicted.iter().zip(&truth))
        .filter(|(i, _)| !seen.contains(data.titles[**i].as_str()))
        .map(|(_, (p, t))| (*p, *t))
        .unzip();
    let new = classification(&labels.0, &p_new, &t_new);
    serde_json::json!({
        "accuracy": all.accuracy, "macro_f1": all.macro_f1,
        "unseen_title_rows": t_new.len(),
        "unseen_title_accuracy": new.accuracy, "unseen_title_macro_f1": new.macro_f1,
    })
}

fn categorize(args: &[String]) -> anyhow::Result<serde_json::Value> {
    let [path, split, threads] = args else {
        bail!("usage: anchor-text categorize TITLES.csv.gz SPLIT.json THREADS");
    };
    let threads: usize = threads.parse()?;
    let data = read_titles(path)?;
    let split = read_split(split)?;
    let labels = Labels::of(&data);
    let (train, valid, test) = (&split["train"], &split["valid"], &split["test"]);
    let valid_set: std::collections::HashSet<usize> = valid.iter().copied().collect();
    let inner: Vec<usize> = train
        .iter()
        .copied()
        .filter(|i| !valid_set.contains(i))
        .collect();

    let base = CategorizerParams {
        threads,
        ..CategorizerParams::default()
    };
    let mut best = (f64::NEG_INFINITY, base.clone());
    let mut grid = Vec::new();
    let t_tune = Instant::now();
    for epochs in EPOCHS {
        for learning_rate in LEARNING_RATES {
            for (char_min, char_max) in CHAR_NGRAMS {
                let p = CategorizerParams {
                    epochs,
                    learning_rate,
                    features: TextFeatures {
                        char_ngrams_min: char_min,
                        char_ngrams_max: char_max,
                        ..base.features.clone()
                    },
                    ..base.clone()
                };
                let model = fit(&data, &labels, &inner, &p)?;
                let predicted: Vec<(usize, f32)> = valid
                    .iter()
                    .map(|&i| model.top_k(&data.titles[i], 1)[0])
                    .collect();
                let truth: Vec<usize> = valid
                    .iter()
                    .map(|&i| labels.index(&data.categories[i]))
                    .collect();
                let m = classification(&labels.0, &predicted, &truth);
                grid.push(serde_json::json!({"epochs": epochs, "lr": learning_rate, "char_ngrams": [char_min, char_max], "valid_accuracy": m.accuracy, "valid_macro_f1": m.macro_f1}));
                if m.accuracy > best.0 {
                    best = (m.accuracy, p);
                }
            }
        }
    }
    let tune_seconds = t_tune.elapsed().as_secs_f64();
    // The median of three fits, as text.py times fastText.
    let mut times = Vec::new();
    let mut model = None;
    for _ in 0..3 {
        let t0 = Instant::now();
        model = Some(fit(&data, &labels, train, &best.1)?);
        times.push(t0.elapsed().as_secs_f64());
    }
    let model = model.expect("three fits");
    times.sort_by(f64::total_cmp);
    let train_seconds = times[1];
    let t1 = Instant::now();
    let predicted: Vec<(usize, f32)> = test
        .iter()
        .map(|&i| model.top_k(&data.titles[i], 1)[0])
        .collect();
    let predict_seconds = t1.elapsed().as_secs_f64();
    let seen: std::collections::HashSet<&str> =
        train.iter().map(|&i| data.titles[i].as_str()).collect();
    let by_row: HashMap<usize, (usize, f32)> = test.iter().copied().zip(predicted).collect();
    let mut out = score(&data, &labels, test, |i| by_row[&i], &seen);
    let o = out.as_object_mut().expect("object");
    o.insert("model".into(), "sgml n-gram categorizer".into());
    o.insert("threads".into(), threads.into());
    o.insert("epochs".into(), best.1.epochs.into());
    o.insert("lr".into(), best.1.learning_rate.into());
    o.insert("dim".into(), best.1.dim.into());
    o.insert(
        "char_ngrams".into(),
        serde_json::json!([
            best.1.features.char_ngrams_min,
            best.1.features.char_ngrams_max
        ]),
    );
    o.insert("train_seconds".into(), train_seconds.into());
    o.insert("tune_seconds".into(), tune_seconds.into());
    o.insert(
        "predict_per_second".into(),
        (test.len() as f64 / predict_seconds).into(),
    );
    o.insert("grid".into(), grid.into());
    Ok(out)
}

fn embed_classify(args: &[String]) -> anyhow::Result<serde_json::Value> {
    let [path, split, threads, model_dir] = args else {
        bail!("usage: anchor-text embed-classify TITLES.csv.gz SPLIT.json THREADS MODEL_DIR");
    };
    let threads: usize = threads.parse()?;
    let data = read_titles(path)?;
    let split = read_split(split)?;
    let labels = Labels::of(&data);
    let (train, test) = (&split["train"], &split["test"]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let embedder = Embedder::load(std::path::Path::new(model_dir))?;
    let texts: Vec<&str> = data.titles.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let vectors = pool.install(|| embedder.embed(&texts, 64))?;
    let embed_seconds = t0.elapsed().as_secs_f64();
    let xs: Vec<Vec<f32>> = train.iter().map(|&i| vectors[i].clone()).collect();
    let ys: Vec<usize> = train
        .iter()
        .map(|&i| labels.index(&data.categories[i]))
        .collect();
    let t1 = Instant::now();
    let model = EmbeddingClassifierParams::default()
        .check()?
        .fit(&xs, &ys, &labels.0)?;
    let fit_seconds = t1.elapsed().as_secs_f64();
    let index: Vec<usize> = model.labels.iter().map(|l| labels.index(l)).collect();
    let seen: std::collections::HashSet<&str> =
        train.iter().map(|&i| data.titles[i].as_str()).collect();
    let mut out = score(
        &data,
        &labels,
        test,
        |i| {
            let (c, p) = model.top(&vectors[i]);
            (index[c], p)
        },
        &seen,
    );
    let o = out.as_object_mut().expect("object");
    o.insert(
        "model".into(),
        "sgml logistic regression on MiniLM embeddings".into(),
    );
    o.insert("threads".into(), threads.into());
    o.insert("embed_seconds_all_titles".into(), embed_seconds.into());
    o.insert("train_seconds".into(), fit_seconds.into());
    Ok(out)
}

fn embed(args: &[String]) -> anyhow::Result<serde_json::Value> {
    let [model_dir, titles, threads, batch, out] = args else {
        bail!("usage: anchor-text embed MODEL_DIR TITLES.json THREADS BATCH OUT.f32");
    };
    let (threads, batch): (usize, usize) = (threads.parse()?, batch.parse()?);
    let titles: Vec<String> = serde_json::from_str(&std::fs::read_to_string(titles)?)?;
    let texts: Vec<&str> = titles.iter().map(String::as_str).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let t0 = Instant::now();
    let embedder = Embedder::load(std::path::Path::new(model_dir))?;
    let load_seconds = t0.elapsed().as_secs_f64();
    // Warm-up, as the Python side gets: first-call allocations are not throughput.
    pool.install(|| embedder.embed(&texts[..texts.len().min(batch.max(8))], batch))?;
    let t1 = Instant::now();
    let vectors = pool.install(|| embedder.embed(&texts, batch))?;
    let seconds = t1.elapsed().as_secs_f64();
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(out, bytes)?;
    Ok(serde_json::json!({
        "model": "sgml embedder (candle, packed)", "threads": threads, "batch": batch,
        "titles": titles.len(), "titles_per_second": titles.len() as f64 / seconds,
        "load_seconds": load_seconds, "peak_rss_mib": peak_rss_mib(),
    }))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.first().map(String::as_str) {
        Some("categorize") => categorize(&args[1..])?,
        Some("embed-classify") => embed_classify(&args[1..])?,
        Some("embed") => embed(&args[1..])?,
        _ => bail!("usage: anchor-text categorize|embed-classify|embed ... (see the source)"),
    };
    println!("{out}");
    Ok(())
}
