//! `sgml predict pricing|categorize`: batch predictions from a verified version.

use chrono::NaiveDate;
use clap::Subcommand;
use sgml_pipelines::run::{self, Step};
use sgml_pipelines::steps::predict_categorize::PredictCategorize;
use sgml_pipelines::steps::predict_pricing::PredictPricing;

use crate::global::Global;
use crate::output;

#[derive(Subcommand)]
pub enum Command {
    /// Top-3 categories with calibrated probabilities and a review flag for every
    /// product title up to the run date → predictions/categorize/<version>/dt=D/.
    Categorize(Args),
    /// Suggested price and interval (base and market currency) for every product
    /// ordered or listed in the 90 days before the run date, in each market it sold to
    /// plus its seller's home market → predictions/pricing/<version>/dt=D/.
    Pricing(Args),
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
    let (step, a): (Box<dyn Step>, &Args) = match c {
        Command::Categorize(a) => (
            Box::new(PredictCategorize {
                version: a.version.clone(),
            }),
            a,
        ),
        Command::Pricing(a) => (
            Box::new(PredictPricing {
                version: a.version.clone(),
            }),
            a,
        ),
    };
    let store = g.open_store()?;
    output::manifest(&run::execute(
        store.as_ref(),
        step.as_ref(),
        Some(a.run_date),
    )?);
    Ok(())
}
