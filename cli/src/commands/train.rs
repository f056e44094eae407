//! `sgml train pricing|categorize|images|similar|duplicates|segments`: one training run, then promotion to champion when
//! the new version passes the gate (unless --no-promote).

use chrono::NaiveDate;
use clap::{Subcommand, ValueEnum};
use sgml_models::ann::{AnnParams, Metric, Quantization};
use sgml_models::categorize::dense::EmbeddingClassifierParams;
use sgml_models::categorize::model::CategorizerParams;
use sgml_models::categorize::text::TextFeatures;
use sgml_models::gbdt::GbdtParams;
use sgml_models::linear::LinearParams;
use sgml_pipelines::plan;
use sgml_pipelines::run::{self, Step};
use sgml_pipelines::steps::segments::Subject;
use sgml_pipelines::steps::train_categorize::{DEFAULT_REVIEW_PRECISION, TrainCategorize};
use sgml_pipelines::steps::train_duplicates::TrainDuplicates;
use sgml_pipelines::steps::train_images::TrainImages;
use sgml_pipelines::steps::train_pricing::{Algo, TrainPricing};
use sgml_pipelines::steps::train_segments::{KChoice, TrainSegments};
use sgml_pipelines::steps::train_similar::TrainSimilar;

use crate::global::Global;
use crate::output;

#[derive(Subcommand)]
pub enum Command {
    /// LightGBM on log price (base currency) from features/order_lines/dt=D: the latest
    /// 20% of days (or the days from --holdout-from) are held out, the last 10% of the
    /// days before them calibrate split-conformal 90% intervals, the rest train. Writes
    /// models/pricing/<version>/ with the model, its lookups, metrics, drift baseline
    /// and a report (report/index.html).
    Pricing(PricingArgs),
    /// The product-title categorizer (fastText-style: hashed word and character
    /// n-grams, softmax, SGD) from every product listed up to the run date. Distinct
    /// titles are split 70/10/20 into fit, calibration (temperature and review
    /// threshold) and holdout. Writes models/categorize/<version>/ with the weights
    /// (safetensors), metrics (accuracy, macro-F1, per category) and a report with the
    /// confusion matrix.
    Categorize(CategorizeArgs),
    /// The similar-products index: an HNSW graph (usearch, cosine) over the title
    /// embeddings of the run date (run `sgml embed` first), with each product's seller
    /// and market for filtered queries. Measures recall@10 against exact search on
    /// 1,000 sampled products. Writes models/similar/<version>/ (kind ann-index).
    Similar(SimilarArgs),
    /// k-means segments of products (title embedding + price and sales; run `sgml
    /// embed` first) or of sellers (the `sellers` feature table). Every k from --k-min
    /// to --k-max is fitted (k-means++, --n-init runs each); the best silhouette on a
    /// 2,000-row sample chooses and the inertia curve's elbow is reported beside it.
    /// Writes models/<product|seller>-segments/<version>/ (kind kmeans) with the
    /// scaler, the centroids and report/index.html: silhouette and inertia against k,
    /// sizes, a 2-D projection, and each segment's typical members, words, price
    /// level and markets — what you read to name the segments.
    Segments(SegmentsArgs),
    /// The duplicate-listings decision: pairs of listings by different sellers that
    /// are the same product. Candidates are each listing's 10 nearest other-seller
    /// titles (embeddings; run `sgml embed` first) plus listings sharing a rare model
    /// code; each pair is judged on meaning, spelling, model code and category,
    /// combined by a logistic regression fitted on half of the labelled groups
    /// (the ingested duplicate_groups table) with the threshold of best pair F1.
    /// The other half measures per-listing F1, pair precision and recall, beside
    /// spelling alone. Writes models/duplicates/<version>/ (kind duplicates).
    Duplicates(DuplicatesArgs),
    /// The image classifier: a product's category from its photo, as logistic
    /// regression on the EfficientNet-Lite0 features `sgml images` wrote for the run
    /// date (run it first). Photo files are split 70/10/20 into fit, calibration
    /// (temperature and review threshold) and holdout. Writes models/images/<version>/
    /// (kind image-classifier) with the weights (safetensors), metrics (accuracy,
    /// macro-F1, per category) and a report with the confusion matrix.
    Images(ImagesArgs),
}

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// The run date (YYYY-MM-DD): whose photo embeddings and listings to use.
    #[arg(long)]
    run_date: NaiveDate,
    /// L2 penalty of the logistic regression (on standardised features).
    #[arg(long, default_value_t = EmbeddingClassifierParams::default().alpha)]
    alpha: f64,
    /// L-BFGS iterations at most.
    #[arg(long, default_value_t = EmbeddingClassifierParams::default().max_iterations)]
    max_iterations: u64,
    /// Precision the automatically categorized photos must reach on the calibration
    /// photos; photos less sure than that go to review.
    #[arg(long, default_value_t = sgml_pipelines::steps::train_images::DEFAULT_REVIEW_PRECISION)]
    review_precision: f64,
    /// Do not promote the new version to `champion`.
    #[arg(long)]
    no_promote: bool,
}

#[derive(clap::Args)]
pub struct DuplicatesArgs {
    /// The run date (YYYY-MM-DD): whose listings and labels to use.
    #[arg(long)]
    run_date: NaiveDate,
    /// Seed of the calibration/holdout split of the labelled groups.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Do not promote the new version to `champion`.
    #[arg(long)]
    no_promote: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SubjectArg {
    /// Products: title embedding, log price, log units sold.
    Products,
    /// Sellers: orders, revenue, products, markets, price level, return, cancel and
    /// cross-border rates.
    Sellers,
}

impl From<SubjectArg> for Subject {
    fn from(s: SubjectArg) -> Subject {
        match s {
            SubjectArg::Products => Subject::Products,
            SubjectArg::Sellers => Subject::Sellers,
        }
    }
}

#[derive(clap::Args)]
pub struct SegmentsArgs {
    /// The run date (YYYY-MM-DD): whose features to segment.
    #[arg(long)]
    run_date: NaiveDate,
    /// What to segment.
    #[arg(long = "of", value_enum)]
    subject: SubjectArg,
    /// Use exactly this many segments instead of choosing by silhouette.
    #[arg(long, conflicts_with_all = ["k_min", "k_max"])]
    k: Option<usize>,
    /// The smallest k tried.
    #[arg(long, default_value_t = 2)]
    k_min: usize,
    /// The largest k tried (at most rows − 1).
    #[arg(long, default_value_t = 12)]
    k_max: usize,
    /// k-means++ seedings per k; the least inertia wins.
    #[arg(long, default_value_t = TrainSegments::new(Subject::Products).n_init)]
    n_init: usize,
    /// How much price and sales count against the title embedding (weight 1).
    #[arg(long, default_value_t = TrainSegments::new(Subject::Products).price_weight)]
    price_weight: f64,
    /// Seed of the seedings and the silhouette sample.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Do not promote the new version to `champion`.
    #[arg(long)]
    no_promote: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantizationArg {
    /// 4 bytes a dimension: exact distances.
    F32,
    /// 2 bytes a dimension: half the memory, recall unchanged on unit vectors.
    F16,
    /// 1 byte a dimension: a quarter of the memory, a little recall lost.
    I8,
}

#[derive(clap::Args)]
pub struct SimilarArgs {
    /// The run date (YYYY-MM-DD): whose embeddings to index.
    #[arg(long)]
    run_date: NaiveDate,
    /// Graph degree (hnswlib's M): more is better recall, more memory.
    #[arg(long, default_value_t = AnnParams::default().connectivity)]
    connectivity: usize,
    /// Candidates kept while building (hnswlib's ef_construction).
    #[arg(long, default_value_t = AnnParams::default().expansion_add)]
    expansion_add: usize,
    /// Candidates kept while searching (hnswlib's ef): recall against speed.
    #[arg(long, default_value_t = AnnParams::default().expansion_search)]
    expansion_search: usize,
    /// How vectors are stored in the index.
    #[arg(long, value_enum, default_value_t = QuantizationArg::F16)]
    quantization: QuantizationArg,
    /// Seed of the recall queries' sample.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Do not promote the new version to `champion`.
    #[arg(long)]
    no_promote: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgoArg {
    /// LightGBM gradient-boosted trees.
    Gbdt,
    /// ElasticNet on standardised features (the baseline).
    Linear,
}

#[derive(clap::Args)]
pub struct PricingArgs {
    /// The run date (YYYY-MM-DD): whose features to train on.
    #[arg(long)]
    run_date: NaiveDate,
    #[arg(long, value_enum, default_value_t = AlgoArg::Gbdt)]
    algo: AlgoArg,
    /// Hold out the sale lines from this date (YYYY-MM-DD) on, instead of the latest 20%
    /// of days.
    #[arg(long, value_name = "DATE")]
    holdout_from: Option<NaiveDate>,
    /// Boosting rounds.
    #[arg(long, default_value_t = 500)]
    trees: usize,
    #[arg(long, default_value_t = 0.05)]
    learning_rate: f64,
    #[arg(long, default_value_t = 31)]
    num_leaves: usize,
    /// Seed for LightGBM and the target-encoding folds.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Do not promote the new version to `champion` (by default it is promoted when
    /// it passes the gate).
    #[arg(long)]
    no_promote: bool,
}

#[derive(clap::Args)]
pub struct CategorizeArgs {
    /// The run date (YYYY-MM-DD): train on every product listed up to it.
    #[arg(long)]
    run_date: NaiveDate,
    /// Width of the title vector.
    #[arg(long, default_value_t = CategorizerParams::default().dim)]
    dim: usize,
    #[arg(long, default_value_t = CategorizerParams::default().epochs)]
    epochs: usize,
    /// Starting learning rate (decays linearly to 0).
    #[arg(long, default_value_t = CategorizerParams::default().learning_rate)]
    learning_rate: f32,
    /// Word n-grams up to this length.
    #[arg(long, default_value_t = TextFeatures::default().word_ngrams)]
    word_ngrams: u32,
    /// Character n-gram lengths MIN,MAX (0,0: none).
    #[arg(long, value_delimiter = ',', num_args = 2, default_values_t = [TextFeatures::default().char_ngrams_min, TextFeatures::default().char_ngrams_max])]
    char_ngrams: Vec<u32>,
    /// Rows of the hashed embedding table.
    #[arg(long, default_value_t = TextFeatures::default().buckets)]
    buckets: u32,
    /// Training threads (0: all cores; 1 trains deterministically).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Precision the automatically categorized listings must reach on the calibration
    /// titles; listings less sure than that go to review.
    #[arg(long, default_value_t = DEFAULT_REVIEW_PRECISION)]
    review_precision: f64,
    /// Do not promote the new version to `champion`.
    #[arg(long)]
    no_promote: bool,
}

pub fn run(g: &Global, c: &Command) -> anyhow::Result<()> {
    let (step, common) = step(c);
    train(g, step.as_ref(), common.run_date, !common.no_promote)
}

/// The run date and promotion choice every `train` command takes.
pub struct Common {
    pub run_date: NaiveDate,
    pub no_promote: bool,
}

/// The step a command runs, with its run date and promotion choice.
pub fn step(c: &Command) -> (Box<dyn Step>, Common) {
    let common = |run_date: NaiveDate, no_promote: bool| Common {
        run_date,
        no_promote,
    };
    match c {
        Command::Pricing(a) => {
            let step = TrainPricing {
                algo: match a.algo {
                    AlgoArg::Gbdt => Algo::Gbdt,
                    AlgoArg::Linear => Algo::Linear,
                },
                holdout_from: a.holdout_from,
                linear: LinearParams::default(),
                params: GbdtParams {
                    trees: a.trees,
                    learning_rate: a.learning_rate,
                    num_leaves: a.num_leaves,
                    seed: a.seed,
                    ..GbdtParams::default()
                },
            };
            (Box::new(step), common(a.run_date, a.no_promote))
        }
        Command::Categorize(a) => {
            let step = TrainCategorize {
                params: CategorizerParams {
                    features: TextFeatures {
                        buckets: a.buckets,
                        word_ngrams: a.word_ngrams,
                        char_ngrams_min: a.char_ngrams[0],
                        char_ngrams_max: a.char_ngrams[1],
                    },
                    dim: a.dim,
                    epochs: a.epochs,
                    learning_rate: a.learning_rate,
                    threads: a.threads,
                    seed: a.seed,
                },
                review_precision: a.review_precision,
                challenger: EmbeddingClassifierParams::default(),
            };
            (Box::new(step), common(a.run_date, a.no_promote))
        }
        Command::Similar(a) => {
            let step = TrainSimilar {
                params: AnnParams {
                    connectivity: a.connectivity,
                    expansion_add: a.expansion_add,
                    expansion_search: a.expansion_search,
                    quantization: match a.quantization {
                        QuantizationArg::F32 => Quantization::F32,
                        QuantizationArg::F16 => Quantization::F16,
                        QuantizationArg::I8 => Quantization::I8,
                    },
                    metric: Metric::Cos,
                },
                seed: a.seed,
            };
            (Box::new(step), common(a.run_date, a.no_promote))
        }
        Command::Duplicates(a) => {
            let step = TrainDuplicates { seed: a.seed };
            (Box::new(step), common(a.run_date, a.no_promote))
        }
        Command::Images(a) => {
            let step = TrainImages {
                params: EmbeddingClassifierParams {
                    alpha: a.alpha,
                    max_iterations: a.max_iterations,
                },
                review_precision: a.review_precision,
            };
            (Box::new(step), common(a.run_date, a.no_promote))
        }
        Command::Segments(a) => {
            let step = TrainSegments {
                subject: a.subject.into(),
                k: match a.k {
                    Some(k) => KChoice::Fixed(k),
                    None => KChoice::Sweep {
                        min: a.k_min,
                        max: a.k_max,
                    },
                },
                n_init: a.n_init,
                price_weight: a.price_weight,
                seed: a.seed,
            };
            (Box::new(step), common(a.run_date, a.no_promote))
        }
    }
}

fn train(g: &Global, step: &dyn Step, run_date: NaiveDate, promote: bool) -> anyhow::Result<()> {
    let store = g.open_store()?;
    let m = run::execute(store.as_ref(), step, Some(run_date))?;
    let spec = step.spec();
    let announcer = g.announcer();
    let trained = match promote {
        true => plan::promote_trained(store.as_ref(), &announcer, &spec, &m)?,
        false => None,
    };
    output::finished(
        &m,
        trained
            .as_ref()
            .map(|t| (spec.trains.unwrap_or_default(), t, announcer.is_on())),
    );
    Ok(())
}
