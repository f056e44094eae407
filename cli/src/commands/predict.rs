//! `sgml predict pricing|categorize|images|similar|duplicates|segments`: batch predictions from a verified version.

use chrono::NaiveDate;
use clap::Subcommand;
use sgml_pipelines::run::{self, Step};
use sgml_pipelines::steps::predict_categorize::PredictCategorize;
use sgml_pipelines::steps::predict_duplicates::PredictDuplicates;
use sgml_pipelines::steps::predict_images::PredictImages;
use sgml_pipelines::steps::predict_pricing::PredictPricing;
use sgml_pipelines::steps::predict_segments::PredictSegments;
use sgml_pipelines::steps::predict_similar::{DEFAULT_K, Markets, PredictSimilar};

use crate::commands::steps::SplitArgs;
use crate::commands::train::SubjectArg;
use crate::global::Global;
use crate::output;

#[derive(Subcommand)]
pub enum Command {
    /// Top-3 categories with calibrated probabilities and a review flag for every
    /// product title up to the run date → predictions/categorize/<version>/dt=D/.
    Categorize(SplitPredictArgs),
    /// Suggested price and interval (base and market currency) for every product
    /// ordered or listed in the 90 days before the run date, in each market it sold to
    /// plus its seller's home market → predictions/pricing/<version>/dt=D/.
    Pricing(SplitPredictArgs),
    /// The k most similar products of every indexed product (cosine on title
    /// embeddings), optionally only other sellers' and only the same or other
    /// markets' → predictions/similar/<version>/dt=D/, one row per pair.
    Similar(SimilarArgs),
    /// The segment of every product or seller of the run date and its distance to
    /// the segment's centroid → predictions/<product|seller>-segments/<version>/dt=D/.
    Segments(SegmentsArgs),
    /// Pairs of listings by different sellers that are the same product, with the
    /// probability and the signals that argued for it →
    /// predictions/duplicates/<version>/dt=D/ (the newer listing duplicates the older).
    Duplicates(Args),
    /// Top-3 categories from every photo `sgml images` embedded on the run date, with
    /// calibrated probabilities, a review flag, and whether a confident answer
    /// disagrees with the listing's category → predictions/images/<version>/dt=D/.
    Images(SplitPredictArgs),
}

#[derive(clap::Args)]
pub struct SegmentsArgs {
    #[command(flatten)]
    common: Args,
    /// What to segment.
    #[arg(long = "of", value_enum)]
    subject: SubjectArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MarketsArg {
    /// Neighbours from any market.
    Any,
    /// Only from the product's own market.
    Same,
    /// Only from other markets (cross-border recommendations).
    Other,
}

#[derive(clap::Args)]
pub struct SimilarArgs {
    #[command(flatten)]
    common: Args,
    /// Neighbours per product.
    #[arg(long, default_value_t = DEFAULT_K)]
    k: usize,
    /// Only other sellers' products.
    #[arg(long)]
    other_sellers: bool,
    /// Which markets neighbours may come from.
    #[arg(long, value_enum, default_value_t = MarketsArg::Any)]
    markets: MarketsArg,
}

#[derive(clap::Args)]
pub struct SplitPredictArgs {
    #[command(flatten)]
    common: Args,
    #[command(flatten)]
    split: SplitArgs,
}

#[derive(clap::Args)]
pub struct Args {
    /// The run date (YYYY-MM-DD): the partition this run owns.
    #[arg(long)]
    run_date: NaiveDate,
    /// A model version (default: the champion, else the newest).
    #[arg(long)]
    version: Option<String>,
}

pub fn run(g: &Global, c: &Command) -> anyhow::Result<()> {
    let (step, a) = step(c);
    let store = g.open_store()?;
    output::finished(
        &run::execute(store.as_ref(), step.as_ref(), Some(a.run_date))?,
        None,
    );
    Ok(())
}

/// The step a command runs, with its common arguments.
pub fn step(c: &Command) -> (Box<dyn Step>, &Args) {
    match c {
        Command::Categorize(a) => (
            Box::new(PredictCategorize {
                version: a.common.version.clone(),
                split: a.split.split(),
            }),
            &a.common,
        ),
        Command::Pricing(a) => (
            Box::new(PredictPricing {
                version: a.common.version.clone(),
                split: a.split.split(),
            }),
            &a.common,
        ),
        Command::Similar(s) => (
            Box::new(PredictSimilar {
                version: s.common.version.clone(),
                k: s.k,
                other_sellers: s.other_sellers,
                markets: match s.markets {
                    MarketsArg::Any => Markets::Any,
                    MarketsArg::Same => Markets::Same,
                    MarketsArg::Other => Markets::Other,
                },
            }),
            &s.common,
        ),
        Command::Duplicates(a) => (
            Box::new(PredictDuplicates {
                version: a.version.clone(),
            }),
            a,
        ),
        Command::Images(a) => (
            Box::new(PredictImages {
                version: a.common.version.clone(),
                split: a.split.split(),
            }),
            &a.common,
        ),
        Command::Segments(s) => (
            Box::new(PredictSegments {
                subject: s.subject.into(),
                version: s.common.version.clone(),
            }),
            &s.common,
        ),
    }
}
