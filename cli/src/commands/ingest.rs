//! `sgml ingest`, and the source options `run all` shares.

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use sgml_features::anonymize::AnonKey;
use sgml_pipelines::partition::Split;
use sgml_pipelines::run;
use sgml_pipelines::sources::{MAX_DECOMPRESSED_BYTES, SourceOptions};
use sgml_pipelines::steps::ingest::{Anonymization, Ingest, MAX_REJECT_SHARE};

use crate::commands::steps::SplitArgs;
use crate::global::Global;
use crate::output;

#[derive(clap::Args, Clone)]
pub struct SourceArgs {
    /// A directory with one file per table (orders.csv, orders.csv.gz, orders.parquet,
    /// orders.jsonl, ...), files named after their table, any export files with
    /// --mapping, or a PostgreSQL URL (postgres://user@host:5432/db).
    #[arg(long = "input", env = "SGML_INPUT", value_name = "SOURCE")]
    pub inputs: Vec<String>,
    /// Map an export with other column names onto the contract: a built-in name
    /// (online-retail) or a mapping file (TOML).
    #[arg(long, env = "SGML_MAPPING")]
    pub mapping: Option<String>,
    /// PostgreSQL schema holding the contract tables.
    #[arg(long, default_value = "public")]
    pub pg_schema: String,
    /// Read a table with this query instead of the whole table: TABLE=SQL (repeatable).
    #[arg(long, value_name = "TABLE=SQL", value_parser = parse_query)]
    pub pg_query: Vec<(String, String)>,
    /// File holding the anonymization secret (else SGML_ANON_KEY). Required for real
    /// data.
    #[arg(long, env = "SGML_ANON_KEY_FILE")]
    pub anon_key_file: Option<PathBuf>,
    /// Anonymize with the public demo key instead of a secret: for synthetic data only
    /// (`sgml generate` output). The run manifest records it.
    #[arg(long, env = "SGML_DEMO", conflicts_with = "anon_key_file")]
    pub demo: bool,
    /// The largest share of a table's rows that may be quarantined (0 to 1); above it
    /// ingest fails and commits nothing.
    #[arg(long, default_value_t = MAX_REJECT_SHARE, value_name = "SHARE", value_parser = parse_share)]
    pub max_reject_share: f64,
    /// A compressed input (.csv.gz, .jsonl.gz) that expands past this many bytes is
    /// refused, naming the file.
    #[arg(long, default_value_t = MAX_DECOMPRESSED_BYTES, value_name = "BYTES")]
    pub max_decompressed_bytes: u64,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// The partition to write (default: the latest order date in the input;
    /// required with --partition and --merge).
    #[arg(long)]
    run_date: Option<NaiveDate>,
    #[command(flatten)]
    split: SplitArgs,
}

pub fn run(g: &Global, a: &Args) -> anyhow::Result<()> {
    let store = g.open_store()?;
    let m = run::execute(
        store.as_ref(),
        &step(&a.source, a.split.split())?,
        a.run_date,
    )?;
    output::finished(&m, None);
    Ok(())
}

fn parse_share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| (0.0..=1.0).contains(x))
        .ok_or_else(|| format!("expected a share between 0 and 1, got `{s}`"))
}

fn parse_query(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(t, q)| (t.trim().to_string(), q.trim().to_string()))
        .filter(|(t, q)| !t.is_empty() && !q.is_empty())
        .ok_or_else(|| format!("expected TABLE=SQL, got `{s}`"))
}

/// The secret from the key file or SGML_ANON_KEY, or the demo key when asked for.
fn anonymization(args: &SourceArgs) -> anyhow::Result<Anonymization> {
    let secret = match (&args.anon_key_file, std::env::var("SGML_ANON_KEY")) {
        (Some(path), _) => Some(
            std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?,
        ),
        (None, Ok(key)) if !key.is_empty() => Some(key.into_bytes()),
        _ => None,
    };
    match (secret, args.demo) {
        (Some(_), true) => bail!(
            "--demo asks for the public demo key, but a secret is set (SGML_ANON_KEY or --anon-key-file): give one or the other"
        ),
        (Some(secret), false) => Ok(Anonymization::Secret(
            AnonKey::new(secret).context("anonymization key")?,
        )),
        (None, true) => Ok(Anonymization::Demo),
        (None, false) => Ok(Anonymization::Missing),
    }
}

/// The ingest step; a merge reads only the parts, so it needs no input.
pub fn step(args: &SourceArgs, split: Split) -> anyhow::Result<Ingest> {
    if args.inputs.is_empty() && !matches!(split, Split::Merge(_)) {
        bail!("no --input given: pass a directory, files or a postgres:// URL");
    }
    Ok(Ingest {
        inputs: args.inputs.clone(),
        mapping: args.mapping.clone(),
        source: SourceOptions {
            pg_schema: args.pg_schema.clone(),
            pg_queries: args.pg_query.clone(),
            max_decompressed_bytes: args.max_decompressed_bytes,
        },
        key: anonymization(args)?,
        max_reject_share: args.max_reject_share,
        split,
    })
}
