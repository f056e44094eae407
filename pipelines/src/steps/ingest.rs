//! `sgml ingest`: read a source, validate and anonymize every table, write the
//! accepted rows to `raw/<table>/dt=D/` and the rejected ones to
//! `quarantine/<table>/<run_id>/`.

use std::collections::HashSet;

use anyhow::bail;
use polars::prelude::*;
use sgml_features::Table;
use sgml_features::anonymize::AnonKey;
use sgml_features::validate::{self, RawTable, Validator};

use crate::io;
use crate::mapping::Mapping;
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::sources::{self, SourceOptions};

#[derive(Clone)]
pub struct Ingest {
    pub inputs: Vec<String>,
    pub mapping: Option<String>,
    pub source: SourceOptions,
    pub key: Anonymization,
    /// The largest share of a table's rows that may be quarantined: above it the run
    /// fails and commits nothing (a broken export or mapping must not replace a good
    /// partition with an empty one).
    pub max_reject_share: f64,
}

/// Default of [`Ingest::max_reject_share`].
pub const MAX_REJECT_SHARE: f64 = 0.5;

/// How customer ids are keyed. Chosen by the user, never by the input: a file in an
/// input directory cannot switch a real export to the public key.
#[derive(Clone)]
pub enum Anonymization {
    /// The secret from `SGML_ANON_KEY` or a key file.
    Secret(AnonKey),
    /// The public demo key, asked for explicitly (`--demo`, or `sgml run all` on the
    /// bundled sample); the run manifest records it.
    Demo,
    /// Neither: ingest refuses to run.
    Missing,
}

impl Anonymization {
    fn name(&self) -> &'static str {
        match self {
            Anonymization::Secret(_) => "secret",
            Anonymization::Demo => "demo",
            Anonymization::Missing => "missing",
        }
    }
}

pub const SPEC: StepSpec = StepSpec {
    name: "ingest",
    command: &["ingest"],
    heavy: false,
    fanout: Fanout::One,
    reads: &["<input>", "raw/deletion_requests/dt=*"],
    writes: &["raw/<table>/dt=<run_date>/", "quarantine/<table>/<run_id>/"],
    about: "validate, anonymize and store the input tables",
    trains: None,
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
            "anonymization": self.key.name(),
            "max_reject_share": self.max_reject_share,
            "max_decompressed_bytes": self.source.max_decompressed_bytes,
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let mapping = self.mapping.as_deref().map(Mapping::load).transpose()?;
        let key = match &self.key {
            Anonymization::Secret(key) => key.clone(),
            Anonymization::Demo => {
                ctx.note(
                    "anonymization: DEMO KEY (public; asked for explicitly: --demo or run all on the bundled sample; synthetic data only)",
                );
                AnonKey::demo()
            }
            Anonymization::Missing => bail!(
                "no anonymization key: set SGML_ANON_KEY (at least 16 bytes) or pass --anon-key-file; \
                 for synthetic data (sgml generate output) pass --demo to use the public demo key"
            ),
        };
        // Every deletion request ever seen applies to the orders read now; the input's
        // own requests arrive first (sources order them so) and join the set.
        let deleted = super::deleted_customers(ctx)?;

        ctx.progress(format!(
            "reading {}",
            self.inputs
                .iter()
                .map(|i| redact(i))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut state = IngestState {
            key,
            deleted,
            tables: Vec::new(),
            last_order: None,
            last_other: None,
        };
        let records = sources::load(
            &self.inputs,
            mapping.as_ref(),
            &self.source,
            &mut |table, raw| {
                state
                    .chunk(ctx, table, raw)
                    .map_err(|e| e.into_boxed_dyn_error())
            },
        )?;
        records.into_iter().for_each(|r| ctx.input(r));

        let run_date = match ctx.run_date {
            Some(d) => d,
            None => state.last_order.or(state.last_other).ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot infer the run date: no accepted row has a date; pass --run-date"
                )
            })?,
        };
        ctx.run_date = Some(run_date);
        ctx.rekey(PENDING_DATE, &run_date.to_string());
        let mut over = Vec::new();
        for mut t in state.tables {
            t.flush_rejects(ctx)?;
            let name = t.table.name();
            ctx.replace_partition(&io::partition("raw", name, run_date));
            let summary = t.validator.finish();
            if !summary.missing_columns.is_empty() {
                ctx.note(format!(
                    "{name}: the input lacks {}; they are null",
                    summary.missing_columns.join(", ")
                ));
            }
            if !summary.dropped_columns.is_empty() {
                ctx.note(format!(
                    "{name}: dropped columns outside the contract: {}",
                    sgml_features::quote::list(&summary.dropped_columns, ", ")
                ));
            }
            for (rule, n) in &summary.rules {
                ctx.note(format!("{name}: {n} row(s) quarantined by {rule}"));
            }
            let c = &summary.counts;
            if c.rows_in > 0 && c.quarantined as f64 > self.max_reject_share * c.rows_in as f64 {
                over.push(format!(
                    "{name}: {} of {} rows ({:.0}%)",
                    c.quarantined,
                    c.rows_in,
                    100.0 * c.quarantined as f64 / c.rows_in as f64
                ));
            }
            ctx.count(name, summary.counts);
        }
        if !over.is_empty() {
            bail!(
                "too many rows rejected, above the limit of {:.0}% of a table (--max-reject-share): {}; \
                 nothing was committed (the run manifest lists the rules that rejected them)",
                100.0 * self.max_reject_share,
                over.join("; ")
            );
        }
        Ok(())
    }
}

/// Partition placeholder while the run date is not known yet (it is the latest order
/// date, known only once every chunk has been read).
const PENDING_DATE: &str = "@pending-run-date@";

struct TableState {
    table: Table,
    validator: Validator,
    parts: usize,
    /// Rejected rows not yet staged: written out a chunk's worth at a time, so a
    /// mostly bad input is held no more than a good one.
    rejects: Vec<DataFrame>,
    rejects_buffered: usize,
    reject_parts: usize,
}

impl TableState {
    /// Stages the buffered rejects as the next `rejects-NNNNN.parquet` of the table's
    /// quarantine.
    fn flush_rejects(&mut self, ctx: &mut RunContext) -> anyhow::Result<()> {
        if self.rejects.is_empty() {
            return Ok(());
        }
        let mut rejects = concat_frames(std::mem::take(&mut self.rejects))?;
        self.rejects_buffered = 0;
        let key = format!(
            "quarantine/{}/{}/rejects-{:05}.parquet",
            self.table.name(),
            ctx.run_id,
            self.reject_parts
        );
        let bytes = io::to_parquet(&mut rejects)?;
        ctx.stage(&key, &bytes, rejects.height())?;
        self.reject_parts += 1;
        Ok(())
    }
}

struct IngestState {
    key: AnonKey,
    deleted: HashSet<String>,
    tables: Vec<TableState>,
    /// Latest order date: the default run date.
    last_order: Option<chrono::NaiveDate>,
    /// Latest date of any other table: the run date of an input without orders.
    last_other: Option<chrono::NaiveDate>,
}

impl IngestState {
    /// Validates one chunk and stages its accepted rows as the next part file.
    fn chunk(&mut self, ctx: &mut RunContext, table: Table, raw: RawTable) -> anyhow::Result<()> {
        if !self.tables.iter().any(|t| t.table == table) {
            let ctx = validate::Context::new(self.key.clone(), self.deleted.clone());
            self.tables.push(TableState {
                table,
                // Keys spill to disk past a million, so the one piece of state
                // that grows with the input stays small.
                validator: Validator::with_keys(
                    table,
                    ctx,
                    Box::new(crate::keys::SpillingKeys::new()),
                ),
                parts: 0,
                rejects: Vec::new(),
                rejects_buffered: 0,
                reject_parts: 0,
            });
        }
        let state = self
            .tables
            .iter_mut()
            .find(|t| t.table == table)
            .expect("inserted above");
        ctx.progress(format!("validating {table}: {} rows", raw.rows_in()));
        let mut chunk = state.validator.chunk(&raw)?;
        drop(raw);
        if table == Table::DeletionRequests {
            self.deleted
                .extend(super::strings(&chunk.accepted, "customer_key")?);
        }
        if table == Table::Products {
            let detected = sgml_features::language::fill(&mut chunk.accepted)?;
            if detected > 0 {
                ctx.note(format!("products: language detected from the title for {detected} rows that declared none"));
            }
        }
        if let Some(d) = latest_date(table, &chunk.accepted)? {
            let slot = if table == Table::Orders {
                &mut self.last_order
            } else {
                &mut self.last_other
            };
            *slot = Some(slot.map_or(d, |prev| prev.max(d)));
        }
        if state.parts == 0 || chunk.accepted.height() > 0 {
            let key = format!(
                "raw/{}/dt={PENDING_DATE}/part-{:05}.parquet",
                table.name(),
                state.parts
            );
            let bytes = io::to_parquet(&mut chunk.accepted)?;
            ctx.stage(&key, &bytes, chunk.accepted.height())?;
            state.parts += 1;
        }
        if chunk.rejects.height() > 0 {
            state.rejects_buffered += chunk.rejects.height();
            state.rejects.push(chunk.rejects);
            if state.rejects_buffered >= sources::chunk_rows() {
                state.flush_rejects(ctx)?;
            }
        }
        Ok(())
    }
}

fn redact(input: &str) -> String {
    if input.starts_with("postgres") {
        crate::sources::redact_url(input)
    } else {
        input.to_string()
    }
}

/// The latest date in a chunk of a table (orders: the order date), for the default
/// run date: the same input always lands in the same partition.
fn latest_date(table: Table, df: &DataFrame) -> anyhow::Result<Option<chrono::NaiveDate>> {
    let column = match table {
        Table::Orders => "order_ts",
        Table::CrawledOffers => "crawled_ts",
        Table::DeletionRequests => "requested_ts",
        Table::Products => "created_ts",
        Table::FxRates => "date",
        Table::DuplicateGroups => "labelled_ts",
    };
    let days = df
        .column(column)?
        .cast(&DataType::Date)?
        .cast(&DataType::Int32)?;
    Ok(days.i32()?.max().map(sgml_features::values::date_from_days))
}

fn concat_frames(frames: Vec<DataFrame>) -> anyhow::Result<DataFrame> {
    let mut iter = frames.into_iter();
    let mut acc = iter.next().expect("non-empty");
    for df in iter {
        acc.vstack_mut(&df)?;
    }
    Ok(acc)
}
