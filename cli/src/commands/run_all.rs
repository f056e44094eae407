//! `sgml run all`: the step graph (sgml_pipelines::plan) on one input.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Subcommand;
use sgml_pipelines::partition::Split;
use sgml_pipelines::plan::{self, Settings};
use sgml_pipelines::steps::{self, ingest::Anonymization};

use super::ingest::{self, SourceArgs};
use super::steps::PhotoArgs;
use crate::global::Global;
use crate::output;
use crate::weights::{self, ModelDirArgs};

#[derive(Subcommand)]
pub enum Command {
    /// Every step of the graph (`sgml steps` lists them), each after the steps whose
    /// outputs it reads: ingest → retention → features → train pricing → predict
    /// pricing → embed → train categorize → predict categorize. Training steps promote
    /// their version to champion when it passes the gate. Without --input it uses the
    /// bundled synthetic sample with the public demo key (demo mode) and ends with a
    /// summary of what it wrote.
    All(Args),
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// The run date (default: the latest order date in the input).
    #[arg(long)]
    run_date: Option<NaiveDate>,
    /// Currency that prices convert to when the input has several (via fx_rates).
    #[arg(long, default_value = sgml_features::fx::DEFAULT_BASE)]
    base_currency: String,
    #[command(flatten)]
    model: ModelDirArgs,
    #[command(flatten)]
    photos: PhotoArgs,
}

pub fn run(g: &Global, c: &Command) -> anyhow::Result<()> {
    let Command::All(a) = c;
    let store = g.open_store()?;
    let mut source = a.source.clone();
    let demo = source.inputs.is_empty();
    let _generated; // keeps a generated sample alive for the run
    if demo {
        let dir = match bundled_sample() {
            Some(dir) => dir,
            None => {
                let tmp = std::env::temp_dir().join(format!("sgml-sample-{}", std::process::id()));
                eprintln!(
                    "bundled sample not found; generating one in {}",
                    tmp.display()
                );
                sgml_synth::generate(
                    &tmp,
                    &sgml_synth::Params {
                        orders: 5_000,
                        seed: 42,
                        bad_fraction: 0.02,
                        gzip: true,
                        photos: 0.05,
                    },
                )?;
                _generated = TempDirGuard(tmp.clone());
                tmp
            }
        };
        source.inputs = vec![dir.display().to_string()];
    }
    let mut ingest = ingest::step(&source, Split::Whole)?;
    // Demo mode is the user's explicit choice: no --input means the bundled sample.
    if demo && matches!(ingest.key, Anonymization::Missing) {
        ingest.key = Anonymization::Demo;
    }
    // Relative photo paths lie beside the export unless told otherwise.
    let images_dir = a
        .photos
        .images_dir
        .clone()
        .or_else(|| match source.inputs.as_slice() {
            [one] if std::path::Path::new(one).is_dir() => Some(one.into()),
            _ => None,
        });
    let settings = Settings {
        ingest,
        base_currency: a.base_currency.clone(),
        model_dir: weights::model_dir(&a.model)?,
        images_dir,
        s3: g.s3_options(),
        photo_limits: a.photos.limits(),
        image_model_dir: weights::image_model_dir(&a.photos)?,
    };
    let announcer = g.announcer();
    let outcomes = plan::run_all(
        store.as_ref(),
        &announcer,
        steps::GRAPH,
        &settings,
        a.run_date,
        |o| output::step_done(o, announcer.is_on()),
    )?;
    let run_date = outcomes.first().and_then(|o| o.manifest.run_date);
    output::summary(&g.store, run_date, &outcomes);
    Ok(())
}

/// The bundled sample: `data/sample/` of the source tree this binary was built from.
fn bundled_sample() -> Option<PathBuf> {
    let dir = weights::source_tree().join("data/sample");
    dir.join("orders.csv.gz").exists().then_some(dir)
}

struct TempDirGuard(PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
