//! `sgml ingest`: read a source, validate and anonymize every table, write the
//! accepted rows to `raw/<table>/dt=D/` and the rejected ones to
//! `quarantine/<table>/<run_id>/`.

use std::collections::HashSet;

use anyhow::{Context, bail};
use polars::prelude::*;
use sgml_features::Table;
use sgml_features::anonymize::AnonKey;
use sgml_features::validate::{self, Validated};

use crate::io;
use crate::mapping::Mapping;
use crate::run::{RunContext, Step, StepSpec};
use crate::sources::{self, SourceOptions};

pub struct Ingest {
    pub inputs: Vec<String>,
    pub mapping: Option<String>,
    pub source: SourceOptions,
    /// The secret from `SGML_ANON_KEY` or a key file.
    pub key: Option<AnonKey>,
    /// Demo mode (`sgml run all` on the bundled sample): the demo key is allowed.
    pub demo: bool,
}

pub const SPEC: StepSpec = StepSpec {
    name: "ingest",
    reads: &["<input>", "raw/deletion_requests/dt=*"],
    writes: &["raw/<table>/dt=<run_date>/", "quarantine/<table>/<run_id>/"],
    about: "validate, anonymize and store the input tables",
};

impl Step for Ingest {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "inputs": self.inputs.iter().map(|i| redact(i)).collect::<Vec<_>>(),
            "mapping": self.mapping,
            "pg_schema": self.source.pg_schema,
            "pg_queries": self.source.pg_queries.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let mapping = self.mapping.as_deref().map(Mapping::load).transpose()?;
        ctx.progress(format!("reading {}", self.inputs.iter().map(|i| redact(i)).collect::<Vec<_>>().join(", ")));
        let loaded = sources::load(&self.inputs, mapping.as_ref(), &self.source)?;
        for record in &loaded.inputs {
            ctx.input(record.clone());
        }
        let key = match (&self.key, self.demo || loaded.synthetic) {
            (Some(key), _) => key.clone(),
            (None, true) => {
                ctx.note("anonymization: DEMO KEY (public; synthetic sample data only)");
                AnonKey::demo()
            }
            (None, false) => bail!(
                "no anonymization key: set SGML_ANON_KEY (at least 16 bytes) or pass --anon-key-file; \
                 only synthetic data (sgml generate output, the bundled sample) may use the demo key"
            ),
        };

        // Deletion requests first: every one ever seen applies to the orders below.
        let mut deleted: HashSet<String> = HashSet::new();
        let mut lineage = Vec::new();
        if let Some(lf) = io::read_table(ctx.store, "raw", "deletion_requests", &["customer_key"], None, &mut lineage)? {
            deleted.extend(string_values(&lf.select([col("customer_key")]).collect()?, "customer_key")?);
        }
        let mut tables = loaded.tables;
        tables.sort_by_key(|(t, _)| *t != Table::DeletionRequests);

        let mut results: Vec<(Table, Validated)> = Vec::new();
        for (table, raw) in &tables {
            ctx.progress(format!("validating {table} ({} rows)", raw.rows_in()));
            let v = validate::validate(*table, raw, &validate::Context { key: &key, deleted: &deleted })?;
            if *table == Table::DeletionRequests {
                deleted.extend(string_values(&v.accepted, "customer_key")?);
            }
            results.push((*table, v));
        }
        if ctx.run_date.is_none() {
            ctx.run_date = Some(infer_run_date(&results)?);
        }
        let run_date = ctx.run_date.expect("set above");

        for (table, mut v) in results {
            let name = table.name();
            if !v.missing_columns.is_empty() {
                ctx.note(format!("{name}: the input lacks {}; they are null", v.missing_columns.join(", ")));
            }
            if !v.dropped_columns.is_empty() {
                ctx.note(format!("{name}: dropped columns outside the contract: {}", v.dropped_columns.join(", ")));
            }
            for (rule, n) in &v.rules {
                ctx.note(format!("{name}: {n} row(s) quarantined by {rule}"));
            }
            let part = io::partition("raw", name, run_date);
            let bytes = io::to_parquet(&mut v.accepted)?;
            ctx.stage(&format!("{part}{}", io::PART), &bytes, v.accepted.height())?;
            ctx.replace_partition(&part);
            if v.rejects.height() > 0 {
                let key = format!("quarantine/{name}/{}/rejects.parquet", ctx.run_id);
                let bytes = io::to_parquet(&mut v.rejects)?;
                ctx.stage(&key, &bytes, v.rejects.height())?;
            }
            ctx.count(name, v.counts);
        }
        Ok(())
    }
}

fn redact(input: &str) -> String {
    if input.starts_with("postgres") { crate::sources::redact_url(input) } else { input.to_string() }
}

fn string_values(df: &DataFrame, column: &str) -> anyhow::Result<Vec<String>> {
    Ok(df
        .column(column)?
        .str()?.iter()
        .flatten()
        .map(str::to_string)
        .collect())
}

/// The latest order date (so the same input always lands in the same partition);
/// without orders, the latest timestamp of any table.
fn infer_run_date(results: &[(Table, Validated)]) -> anyhow::Result<chrono::NaiveDate> {
    let ts_column = |t: Table| match t {
        Table::Orders => "order_ts",
        Table::CrawledOffers => "crawled_ts",
        Table::DeletionRequests => "requested_ts",
        Table::Products => "created_ts",
        Table::FxRates => "date",
    };
    let order = [Table::Orders, Table::CrawledOffers, Table::Products, Table::FxRates, Table::DeletionRequests];
    for t in order {
        let Some((_, v)) = results.iter().find(|(rt, _)| *rt == t) else { continue };
        let max = v
            .accepted
            .column(ts_column(t))?
            .cast(&DataType::Date)?
            .cast(&DataType::Int32)?
            .i32()?
            .max();
        if let Some(days) = max {
            return Ok(sgml_features::values::date_from_days(days));
        }
    }
    Err(anyhow::anyhow!("cannot infer the run date: no accepted row has a date; pass --run-date"))
        .context("choosing the partition")
}
