//! `sgml train segments --of products|sellers`: k-means segments (kind `kmeans`)
//! of products (title embedding + price and sales) or sellers (the `sellers` feature
//! table), written as `models/<product|seller>-segments/<version>/` with the scaler,
//! the centroids and a report that profiles each segment.
//!
//! k: every k of a range is fitted; the best silhouette on a seeded sample of rows
//! chooses, and the inertia curve's elbow is reported beside it. The gate holds a new
//! version's silhouette to the champion's, both measured on this run's sample in this
//! run's scaled space (the champion's labels for the same rows), so the two are
//! compared on the same points.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Instant;

use anyhow::Context;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use sgml_models::bundle::{Direction, Gate};
use sgml_models::kmeans::report::{self, Page};
use sgml_models::kmeans::select::{self, KScore};
use sgml_models::kmeans::{KIND, KMeansParams, Points, Scaler, Segmenter};

use crate::bundles::{self, BundleSpec, field};
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::steps::segments::{self, Subject};

/// Rows the silhouette is measured on (exact silhouette is quadratic in rows).
pub const SILHOUETTE_SAMPLE: usize = 2000;
/// Points in the report's projection.
const PROJECTED: usize = 3000;

/// How k is chosen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KChoice {
    /// The best silhouette in the range (the elbow reported beside it).
    Sweep { min: usize, max: usize },
    /// This k (still scored, for the gate and the report).
    Fixed(usize),
}

impl KChoice {
    fn range(&self) -> RangeInclusive<usize> {
        match self {
            KChoice::Sweep { min, max } => *min..=*max,
            KChoice::Fixed(k) => *k..=*k,
        }
    }
}

pub struct TrainSegments {
    pub subject: Subject,
    pub k: KChoice,
    pub n_init: usize,
    /// The price and sales block's weight against the title embedding's 1 (products).
    pub price_weight: f64,
    pub seed: u64,
}

impl TrainSegments {
    pub fn new(subject: Subject) -> TrainSegments {
        TrainSegments {
            subject,
            k: KChoice::Sweep { min: 2, max: 12 },
            n_init: KMeansParams::default().n_init,
            price_weight: 0.5,
            seed: 42,
        }
    }
}

pub const PRODUCTS_SPEC: StepSpec = StepSpec {
    name: "train-product-segments",
    command: &["train", "segments", "--of", "products"],
    heavy: true,
    fanout: Fanout::One,
    reads: &[
        "features/embeddings/dt=<run_date>/",
        "features/products/dt=<run_date>/",
        "raw/products/dt=*",
    ],
    writes: &["models/product-segments/<version>/"],
    about: "k-means segments of products (title embedding + price and sales), k by silhouette, with a report",
    trains: Some("product-segments"),
};

pub const SELLERS_SPEC: StepSpec = StepSpec {
    name: "train-seller-segments",
    command: &["train", "segments", "--of", "sellers"],
    heavy: true,
    fanout: Fanout::One,
    reads: &[
        "features/sellers/dt=<run_date>/",
        "features/products/dt=<run_date>/",
    ],
    writes: &["models/seller-segments/<version>/"],
    about: "k-means segments of sellers (activity, price level, returns, cross-border share), k by silhouette, with a report",
    trains: Some("seller-segments"),
};

impl Step for TrainSegments {
    fn spec(&self) -> StepSpec {
        match self.subject {
            Subject::Products => PRODUCTS_SPEC,
            Subject::Sellers => SELLERS_SPEC,
        }
    }

    fn parameters(&self) -> serde_json::Value {
        let params = self.params(0);
        serde_json::json!({
            "subject": self.subject, "k": self.k, "n_init": params.n_init,
            "max_iter": params.max_iter, "tol": params.tol, "seed": self.seed,
            "price_weight": self.price_weight, "silhouette_sample": SILHOUETTE_SAMPLE,
            "init": "k-means++ (greedy)",
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("train segments needs --run-date")?;
        let range = self.k.range();
        anyhow::ensure!(
            *range.start() >= 2 && range.start() <= range.end() && *range.end() <= 100,
            "k must be between 2 and 100 (a range low..=high for a sweep), got {range:?}"
        );
        anyhow::ensure!(
            self.price_weight.is_finite() && self.price_weight > 0.0,
            "--price-weight must be a number > 0, got {}",
            self.price_weight
        );
        self.params(2).check()?;
        let noun = self.subject.noun();
        let data = segments::read(ctx, self.subject, run_date)?;
        let blocks = segments::blocks(self.subject, &data, self.price_weight);
        for (count, why) in &data.skipped {
            ctx.note(format!("{count} {why}: left out"));
        }
        let n = data.rows();
        anyhow::ensure!(
            n > *range.start(),
            "{n} {noun} for {run_date}: {} segments need at least {} rows",
            range.start(),
            range.start() + 1
        );
        // Silhouette needs k ≤ rows − 1.
        let range = *range.start()..=(*range.end()).min(n - 1);
        let d = data.features.len();
        let raw = Points::new(&data.raw, d)?;
        let scaler = Scaler::fit(raw, &blocks)?;
        let scaled = scaler.transform(raw)?;
        let x = Points::new(&scaled, d)?;

        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(self.seed));
        let mut sample: Vec<usize> = order.iter().copied().take(SILHOUETTE_SAMPLE).collect();
        sample.sort_unstable();
        ctx.progress(format!(
            "clustering {n} {noun} ({d} features) for k in {}..={}, {} run(s) each",
            range.start(),
            range.end(),
            self.n_init
        ));
        let started = Instant::now();
        let fits = select::sweep(x, range, &self.params(0), &sample)?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let scores: Vec<KScore> = fits.iter().map(|(s, _)| s.clone()).collect();
        let elbow = select::elbow(&scores);
        let chosen = select::best_silhouette(&scores).context(
            "no k gave two non-empty segments on the sample: the rows are too alike to segment",
        )?;
        let (score, fit) = fits
            .into_iter()
            .find(|(s, _)| s.k == chosen)
            .expect("chosen from the sweep");
        let silhouette = score.silhouette.expect("chosen for its silhouette");

        let segmenter = Segmenter {
            features: data.features.clone(),
            blocks,
            scaler,
            kmeans: fit.model,
        };
        let sizes: Vec<usize> = (0..chosen)
            .map(|j| {
                fit.assignment
                    .labels
                    .iter()
                    .filter(|&&l| l as usize == j)
                    .count()
            })
            .collect();
        let mut metrics = BTreeMap::from([
            ("silhouette".to_string(), silhouette),
            ("inertia".to_string(), fit.inertia),
            ("k".to_string(), chosen as f64),
            ("rows".to_string(), n as f64),
            ("features".to_string(), d as f64),
            ("fit_seconds".to_string(), fit_seconds),
            (
                "smallest_segment_share".to_string(),
                *sizes.iter().min().unwrap_or(&0) as f64 / n as f64,
            ),
        ]);
        if let Some(e) = elbow {
            metrics.insert("elbow_k".into(), e as f64);
        }
        let sampled: Vec<f32> = sample.iter().flat_map(|&i| x.row(i)).copied().collect();
        let sampled = Points::new(&sampled, d)?;
        let model = self.subject.model();
        let champion = bundles::champion_score(ctx, model, |b| {
            let champion = Segmenter::from_bundle(b)?;
            anyhow::ensure!(
                champion.features == segmenter.features,
                "its features differ from this run's ({} vs {})",
                champion.features.len(),
                d
            );
            let rows: Vec<f32> = sample.iter().flat_map(|&i| raw.row(i)).copied().collect();
            let labels = champion.segment(Points::new(&rows, d)?)?.labels;
            select::silhouette(sampled, &labels, champion.k())
                .context("the champion puts the whole sample in one segment")
        });
        if let Some((version, s)) = &champion {
            metrics.insert("champion_silhouette".into(), *s);
            ctx.note(format!(
                "champion {version}: silhouette {s:.4} on this run's sample"
            ));
        }
        ctx.note(format!(
            "{n} {noun} in {chosen} segments (silhouette {silhouette:.4}{}); sizes {sizes:?}; {fit_seconds:.1} s for the sweep",
            elbow.map_or(String::new(), |e| format!(", elbow at k = {e}"))
        ));

        let projected: Vec<usize> = order.iter().copied().take(PROJECTED).collect();
        let coords = {
            let rows: Vec<f32> = projected.iter().flat_map(|&i| x.row(i)).copied().collect();
            report::project_2d(Points::new(&rows, d)?)
        };
        let projection: Vec<([f32; 2], u32)> = coords
            .into_iter()
            .zip(projected.iter().map(|&i| fit.assignment.labels[i]))
            .collect();
        let profiles = segments::profiles(self.subject, &data, &fit.assignment, chosen);
        let notes: Vec<String> = data
            .skipped
            .iter()
            .map(|(c, why)| format!("{c} {why} were left out."))
            .collect();
        let title = format!("{model} ({KIND}), run date {run_date}");
        let mut files = report::render(&Page {
            title: &title,
            subject: noun,
            metrics: &metrics,
            scores: &scores,
            chosen,
            elbow,
            projection: &projection,
            profiles: &profiles,
            notes: &notes,
        })?;
        files.extend(segmenter.to_files());
        files.insert(
            "selection.json".into(),
            serde_json::to_vec_pretty(&serde_json::json!({ "scores": scores, "chosen": chosen, "elbow": elbow, "sizes": sizes }))?,
        );
        let training_data = bundles::training_data(
            ctx,
            BTreeMap::from([
                (noun.to_string(), n),
                ("silhouette_sample".to_string(), sample.len()),
            ]),
            champion.map(|(v, _)| v),
        );
        let spec = BundleSpec {
            name: model,
            kind: KIND,
            parameters: self.parameters(),
            seed: self.seed,
            input_schema: vec![field(self.subject.key(), "str", false)],
            output_schema: vec![
                field("segment", "u32", false),
                field("distance", "f32", false),
            ],
            // Relative: a champion at silhouette 0.30 lets a challenger fall to 0.27.
            gate: Gate {
                metric: "silhouette".into(),
                direction: Direction::Higher,
                tolerance: 0.1,
            },
        };
        let baseline = serde_json::json!({ "rows": n, "sizes": sizes });
        let bundle = bundles::build(spec, files, metrics, training_data, baseline)?;
        bundles::write(ctx, &bundle)
    }
}

impl TrainSegments {
    fn params(&self, k: usize) -> KMeansParams {
        KMeansParams {
            k,
            n_init: self.n_init,
            seed: self.seed,
            ..KMeansParams::default()
        }
    }
}
