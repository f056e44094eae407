//! The data steps that take only a run date and their own options (retention,
//! features, embed), and `sgml steps`, the graph.

use chrono::NaiveDate;
use sgml_models::photo::Limits;
use sgml_pipelines::partition::{MAX_PARTS, Partition, Split};
use sgml_pipelines::plan::Plan;
use sgml_pipelines::run;
use sgml_pipelines::steps::{
    self,
    embed::Embed,
    features::{Features, Stage},
    images::Images,
    retention::Retention,
};

use crate::global::Global;
use crate::output;
use crate::weights::{self, ModelDirArgs};

#[derive(clap::Args)]
pub struct DateArgs {
    /// The run date (YYYY-MM-DD): the partition this run owns.
    #[arg(long)]
    pub run_date: NaiveDate,
}

#[derive(clap::Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    date: DateArgs,
    /// Currency that prices convert to when the input has several (via fx_rates).
    #[arg(long, default_value = sgml_features::fx::DEFAULT_BASE)]
    base_currency: String,
    #[command(flatten)]
    stage: MapReduceArgs,
}

/// Scale-out of `features` over several workers: n maps, n reduces, one merge. Every
/// map must have succeeded before any reduce, and every reduce before the merge; a
/// failed one is re-run alone.
#[derive(clap::Args)]
pub struct MapReduceArgs {
    /// Map: price the order lines of the orders in part K of N (split by the xxh3
    /// hash of the order id) into parts/features/priced_lines/dt=D/of=N/. Then
    /// `--reduce K/N` for every K.
    #[arg(long, value_name = "K/N", conflicts_with_all = ["reduce", "merge"])]
    partition: Option<Partition>,
    /// Reduce: from all N map parts, order_lines of map part K and every aggregate
    /// table (products, sellers, customers, markets) for the keys in bucket K of N.
    /// Then `--merge N`.
    #[arg(long, value_name = "K/N", conflicts_with = "merge")]
    reduce: Option<Partition>,
    /// Merge the N reduce parts into the run date's feature tables; refused while a
    /// part is missing or was computed from other map parts than the rest. Removes
    /// the map and reduce parts.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_PARTS as i64))]
    merge: Option<u32>,
}

impl MapReduceArgs {
    pub fn stage(&self) -> Stage {
        match (self.partition, self.reduce, self.merge) {
            (Some(p), _, _) => Stage::Map(p),
            (None, Some(p), _) => Stage::Reduce(p),
            (None, None, Some(n)) => Stage::Merge(n),
            (None, None, None) => Stage::Whole,
        }
    }
}

#[derive(clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    date: DateArgs,
    #[command(flatten)]
    model: ModelDirArgs,
    /// Titles per forward pass.
    #[arg(long, default_value_t = sgml_models::embed::DEFAULT_BATCH)]
    batch: usize,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    split: SplitArgs,
}

/// Scale-out over several workers: each does one part of a step's rows, then one
/// merge commits them.
#[derive(clap::Args)]
pub struct SplitArgs {
    /// Do part K of N (rows split by the xxh3 hash of their key, the same on every
    /// machine: the product id; ingest: the order id and product id, the small
    /// tables in part 1) and write it to parts/<table>/dt=D/of=N/; a failed part is
    /// re-run alone. Then `--merge N`.
    #[arg(long, value_name = "K/N", conflicts_with = "merge")]
    partition: Option<Partition>,
    /// Merge the N parts written with --partition K/N into the run date's partition
    /// (sorted by product id as one run would write it); refused while a part is
    /// missing or was computed from other inputs than the rest.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_PARTS as i64))]
    merge: Option<u32>,
}

impl SplitArgs {
    pub fn split(&self) -> Split {
        match (self.partition, self.merge) {
            (Some(p), _) => Split::Part(p),
            (None, Some(n)) => Split::Merge(n),
            (None, None) => Split::Whole,
        }
    }
}

#[derive(clap::Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    date: DateArgs,
    #[command(flatten)]
    pub photos: PhotoArgs,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    split: SplitArgs,
}

/// Where photos are and what they may weigh (`sgml images`, `sgml run all`).
#[derive(clap::Args, Clone)]
pub struct PhotoArgs {
    /// The directory relative image_uri paths (and file:// URIs) lie in; a photo
    /// path outside it is quarantined under images.uri. `run all` defaults to its
    /// input directory.
    #[arg(long, env = "SGML_IMAGES_DIR", value_name = "DIR")]
    pub images_dir: Option<std::path::PathBuf>,
    /// Largest photo file accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    pub max_image_bytes: usize,
    /// Largest photo accepted, in pixels (width × height): the decompression-bomb
    /// guard, checked from the file's header before any pixel is decoded.
    #[arg(long, default_value_t = Limits::default().max_pixels)]
    pub max_image_pixels: u64,
    /// Smallest side accepted, in pixels.
    #[arg(long, default_value_t = Limits::default().min_side)]
    pub min_image_side: u32,
    /// Directory with the image embedder's model.safetensors (EfficientNet-Lite0,
    /// converted from the PyPI package by scripts/setup; default: .venv/share/sgml/
    /// efficientnet-lite0 in ./ or in the source tree sgml was built from).
    #[arg(long, env = "SGML_IMAGE_MODEL_DIR", value_name = "DIR")]
    pub image_model_dir: Option<std::path::PathBuf>,
}

impl PhotoArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_image_bytes,
            max_pixels: self.max_image_pixels,
            min_side: self.min_image_side,
        }
    }
}

#[derive(clap::Args)]
pub struct GraphArgs {
    /// As JSON (name, about, reads, writes, trains, after), for generating the Airflow
    /// DAG.
    #[arg(long)]
    json: bool,
}

pub fn retention(g: &Global, a: &DateArgs) -> anyhow::Result<()> {
    let store = g.open_store()?;
    output::finished(
        &run::execute(store.as_ref(), &Retention, Some(a.run_date))?,
        None,
    );
    Ok(())
}

pub fn features(g: &Global, a: &FeaturesArgs) -> anyhow::Result<()> {
    let store = g.open_store()?;
    let step = Features {
        base_currency: a.base_currency.clone(),
        stage: a.stage.stage(),
    };
    output::finished(
        &run::execute(store.as_ref(), &step, Some(a.date.run_date))?,
        None,
    );
    Ok(())
}

pub fn images(g: &Global, a: &ImagesArgs) -> anyhow::Result<()> {
    let store = g.open_store()?;
    let split = a.split.split();
    let step = Images {
        images_dir: a.photos.images_dir.clone(),
        s3: g.s3_options(),
        limits: a.photos.limits(),
        policy: Default::default(),
        // A merge only reads the parts: its worker needs no weights.
        image_model_dir: match split {
            Split::Merge(_) => Default::default(),
            _ => weights::image_model_dir(&a.photos)?,
        },
        threads: a.threads,
        split,
    };
    output::finished(
        &run::execute(store.as_ref(), &step, Some(a.date.run_date))?,
        None,
    );
    Ok(())
}

pub fn embed(g: &Global, a: &EmbedArgs) -> anyhow::Result<()> {
    let store = g.open_store()?;
    let split = a.split.split();
    let step = Embed {
        // A merge only reads the parts: its worker needs no weights.
        model_dir: match split {
            Split::Merge(_) => Default::default(),
            _ => weights::model_dir(&a.model)?,
        },
        batch: a.batch,
        threads: a.threads,
        split,
    };
    output::finished(
        &run::execute(store.as_ref(), &step, Some(a.date.run_date))?,
        None,
    );
    Ok(())
}

/// The graph in the order `run all` runs it.
pub fn graph(a: &GraphArgs) -> anyhow::Result<()> {
    let plan = Plan::new(steps::GRAPH)?;
    let described = plan.describe();
    if a.json {
        say!("{}", serde_json::to_string_pretty(&described)?);
        return Ok(());
    }
    for s in described {
        say!(
            "{:<18} {}\n{:19}reads  {}\n{:19}writes {}\n{:19}after  {}",
            s.spec.name,
            s.spec.about,
            "",
            s.spec.reads.join(", "),
            "",
            s.spec.writes.join(", "),
            "",
            if s.after.is_empty() {
                "-".to_string()
            } else {
                s.after.join(", ")
            }
        );
    }
    Ok(())
}
