//! The Rust side of `benches/anchors/image_classify.py`: the image classifier as `sgml
//! train images` fits it (EfficientNet-Lite0 features, standardised, logistic
//! regression; `sgml_models::vision`), trained on one list of labelled photos and
//! scored on another.
//!
//! Usage (prints one JSON object):
//!   anchor-image-classify WEIGHTS_DIR TRAIN.tsv TEST.tsv THREADS ALPHA
//!       TRAIN/TEST.tsv: `path<TAB>label` per line.

use std::time::Instant;

use anyhow::{Context, bail};
use rayon::prelude::*;
use sgml_benches::vectors::status_mib;
use sgml_models::categorize::dense::EmbeddingClassifierParams;
use sgml_models::categorize::metrics::classification;
use sgml_models::photo::{self, Limits};
use sgml_models::vision::classifier::ImageClassifier;
use sgml_models::vision::{ImageEmbedder, WEIGHTS_SHA256};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn labelled(path: &str) -> anyhow::Result<Vec<(String, String)>> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (p, label) = l.split_once('\t').context("expected path<TAB>label")?;
            Ok((p.to_owned(), label.to_owned()))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, weights, train, test, threads, alpha] = args.as_slice() else {
        bail!("usage: anchor-image-classify WEIGHTS_DIR TRAIN.tsv TEST.tsv THREADS ALPHA");
    };
    let (train, test) = (labelled(train)?, labelled(test)?);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.parse()?)
        .build()?;
    let started = Instant::now();
    let embedder = ImageEmbedder::load(std::path::Path::new(weights))?;
    let limits = Limits::default();
    let embed = |rows: &[(String, String)]| -> anyhow::Result<Vec<Vec<f32>>> {
        pool.install(|| {
            rows.par_iter()
                .map(|(p, _)| {
                    let bytes = std::fs::read(p).with_context(|| format!("reading {p}"))?;
                    let decoded = photo::decode(&bytes, &limits).with_context(|| p.clone())?;
                    Ok(embedder.embed(&decoded.rgb))
                })
                .collect()
        })
    };
    let (xs, test_xs) = (embed(&train)?, embed(&test)?);
    let embed_seconds = started.elapsed().as_secs_f64();
    let mut labels: Vec<String> = train.iter().map(|(_, l)| l.clone()).collect();
    labels.sort();
    labels.dedup();
    let index = |l: &str| labels.iter().position(|x| x == l);
    let ys: Vec<usize> = train
        .iter()
        .map(|(_, l)| index(l).expect("a train label"))
        .collect();
    let started = Instant::now();
    let params = EmbeddingClassifierParams {
        alpha: alpha.parse()?,
        ..EmbeddingClassifierParams::default()
    }
    .check()?;
    let model = ImageClassifier::fit(&params, &xs, &ys, &labels, WEIGHTS_SHA256)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let mut all = labels.clone();
    all.push("(unseen)".into());
    let (predicted, truth): (Vec<(usize, f32)>, Vec<usize>) = test
        .iter()
        .zip(&test_xs)
        .map(|((_, l), x)| {
            let c = model.classify(x, 1);
            let p = index(&c.top[0].0).expect("a model label");
            ((p, c.top[0].1), index(l).unwrap_or(labels.len()))
        })
        .unzip();
    let m = classification(&all, &predicted, &truth);
    println!(
        "{}",
        serde_json::json!({
            "train": train.len(), "test": test.len(), "classes": labels.len(),
            "accuracy": m.accuracy, "macro_f1": m.macro_f1,
            "embed_seconds": embed_seconds, "fit_seconds": fit_seconds,
            "peak_rss_mb": status_mib("VmHWM"),
        })
    );
    Ok(())
}
