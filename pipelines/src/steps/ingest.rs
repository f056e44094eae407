//! `sgml ingest`: read a source, validate and anonymize every table, write the
//! accepted rows to `raw/<table>/dt=D/` and the rejected ones to
//! `quarantine/<table>/<run_id>/`.
//!
//! Split n ways (`--partition k/n`), every part reads the whole input but validates
//! only its own rows: the orders whose order id, and the products whose product id,
//! falls in its bucket (xxh3 of the trimmed id, the text the duplicate check keys
//! on, so every copy of a key meets in one part and duplicates are found exactly as
//! in one run). The small tables (fx rates, deletion requests, crawled offers,
//! duplicate groups) are part 1's. A part commits its files to
//! `parts/ingest/dt=D/of=n/part-k/` with `part-k.json` (what it read, its counts,
//! its files' checksums); `--merge n` checks that every part read the same input,
//! applies `--max-reject-share` to the totals, and commits the parts' files as the
//! run date's partitions (copied on the store: no bytes pass through the merge).
//!
//! A customer with a deletion request gets one unlinked key across all parts, as in
//! one run: the parts salt it with a random secret the first of them creates in the
//! parts area (create-only, so they all use the same one), which the merge deletes
//! with the parts; from then on nothing links the key back. (A fan-out abandoned
//! before its merge leaves the salt there until the date is ingested again.)

use std::collections::HashSet;

use anyhow::{Context as _, bail};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sgml_features::Table;
use sgml_features::anonymize::AnonKey;
use sgml_features::validate::{self, RawTable, Summary, Validator};

use crate::io;
use crate::mapping::Mapping;
use crate::partition::{self, MergeError, PartInputs, Partition, Split};
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::sources::{self, InputRecord, SourceOptions};
use crate::store::{Condition, StoreError};

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
    /// All of the input, one part of it, or the merge of the parts.
    pub split: Split,
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
    fanout: Fanout::Parts,
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
            "split": self.split.parameters(),
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let part = match self.split {
            Split::Merge(n) => return merge(ctx, n, self.max_reject_share),
            Split::Part(p) if ctx.run_date.is_none() => bail!(
                "ingest --partition {p} needs --run-date: every part must write the same partition"
            ),
            Split::Part(p) => Some(p),
            Split::Whole => None,
        };
        let unlink_salt = match (part, ctx.run_date) {
            (Some(p), Some(date)) => Some(shared_salt(ctx, date, p.count())?),
            _ => None,
        };
        let layout = match (part, ctx.run_date) {
            (Some(p), Some(date)) => Layout::Part(format!(
                "{}part-{}/",
                parts_prefix(date, p.count()),
                p.index()
            )),
            _ => Layout::Whole,
        };
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
            part,
            unlink_salt,
            layout: layout.clone(),
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
        let mut tables = Vec::new();
        for mut t in state.tables {
            t.flush_rejects(ctx, &layout)?;
            tables.push(TablePart {
                table: t.table,
                summary: t.validator.finish(),
                raw: t.raw,
                quarantine: t.quarantine,
            });
        }
        match (&layout, part) {
            (Layout::Part(dir), Some(p)) => {
                let record = PartRecord {
                    made_from: PartInputs::of(ctx),
                    tables,
                };
                ctx.stage(
                    &format!(
                        "{}part-{}.json",
                        parts_prefix(run_date, p.count()),
                        p.index()
                    ),
                    &serde_json::to_vec_pretty(&record)?,
                    0,
                )?;
                // A part run again replaces its own files, and only those.
                ctx.replace_partition(dir);
                for t in &record.tables {
                    ctx.note(format!(
                        "part {p}: {}: {} row(s) read, {} accepted, {} quarantined",
                        t.table,
                        t.summary.counts.rows_in,
                        t.summary.counts.accepted,
                        t.summary.counts.quarantined
                    ));
                }
                Ok(())
            }
            _ => {
                for t in &tables {
                    ctx.replace_partition(&io::partition("raw", t.table.name(), run_date));
                }
                record_totals(
                    ctx,
                    tables.into_iter().map(|t| (t.table, t.summary)),
                    self.max_reject_share,
                )
            }
        }
    }
}

/// Records a table's totals in the run manifest (counts, and notes on columns and
/// rules), and fails the run when a table lost more than `max_reject_share` of its
/// rows: a broken export or mapping must not replace a good partition with an
/// empty one.
fn record_totals(
    ctx: &mut RunContext,
    tables: impl IntoIterator<Item = (Table, Summary)>,
    max_reject_share: f64,
) -> anyhow::Result<()> {
    let mut over = Vec::new();
    for (table, summary) in tables {
        let name = table.name();
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
        if c.rows_in > 0 && c.quarantined as f64 > max_reject_share * c.rows_in as f64 {
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
            100.0 * max_reject_share,
            over.join("; ")
        );
    }
    Ok(())
}

/// Where a run's files go before the commit makes them final.
#[derive(Clone)]
enum Layout {
    /// One run: straight to the table's partition and quarantine.
    Whole,
    /// A part: under its own directory in the parts area.
    Part(String),
}

impl Layout {
    fn raw_key(&self, table: Table, index: usize) -> String {
        match self {
            Layout::Whole => format!(
                "raw/{}/dt={PENDING_DATE}/part-{index:05}.parquet",
                table.name()
            ),
            Layout::Part(dir) => format!("{dir}raw/{}/part-{index:05}.parquet", table.name()),
        }
    }

    fn reject_key(&self, table: Table, run_id: &str, index: usize) -> String {
        match self {
            Layout::Whole => format!(
                "quarantine/{}/{run_id}/rejects-{index:05}.parquet",
                table.name()
            ),
            Layout::Part(dir) => format!(
                "{dir}quarantine/{}/rejects-{index:05}.parquet",
                table.name()
            ),
        }
    }
}

/// Where the parts of a run date's ingest split `count` ways wait for the merge.
fn parts_prefix(run_date: chrono::NaiveDate, count: u32) -> String {
    partition::parts_prefix(&format!("ingest/dt={run_date}"), count)
}

/// The salt the parts of a run date's ingest split `count` ways give deleted
/// customers' keys: created by the first part to ask (create-only, so a part that
/// loses the race reads the winner's), removed by the merge.
fn shared_salt(
    ctx: &RunContext,
    run_date: chrono::NaiveDate,
    count: u32,
) -> anyhow::Result<[u8; 32]> {
    let key = format!("{}unlink-salt", parts_prefix(run_date, count));
    let salt: [u8; 32] = rand::random();
    match ctx.store.put(&key, &salt, Condition::IfAbsent) {
        Ok(_) => return Ok(salt),
        Err(StoreError::PreconditionFailed { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let stored = ctx
        .store
        .get(&key)?
        .with_context(|| format!("{} vanished as it was read", ctx.store.uri(&key)))?;
    stored.bytes.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "{} is not a 32-byte salt: remove it and run every part again",
            ctx.store.uri(&key)
        )
    })
}

/// What a part committed: `part-k.json`, read by the merge.
#[derive(Serialize, Deserialize)]
struct PartRecord {
    #[serde(flatten)]
    made_from: PartInputs,
    tables: Vec<TablePart>,
}

/// One table's share of a part.
#[derive(Serialize, Deserialize)]
struct TablePart {
    table: Table,
    summary: Summary,
    raw: Vec<PartFile>,
    quarantine: Vec<PartFile>,
}

/// A file a part committed, with the checksum of the bytes it wrote.
#[derive(Serialize, Deserialize, Clone)]
struct PartFile {
    key: String,
    sha256: String,
    rows: usize,
}

/// The column a table's rows are split by, or `None` for a table that stays whole
/// in part 1. The first column of the table's key, so all copies of a key meet in
/// one part.
fn split_column(table: Table) -> Option<&'static str> {
    match table {
        Table::Orders => Some("order_id"),
        Table::Products => Some("product_id"),
        Table::CrawledOffers
        | Table::FxRates
        | Table::DeletionRequests
        | Table::DuplicateGroups => None,
    }
}

/// `--merge n`: the `n` parts' files become the run date's partitions, and their
/// totals the run's counts.
fn merge(ctx: &mut RunContext, count: u32, max_reject_share: f64) -> anyhow::Result<()> {
    let Some(run_date) = ctx.run_date else {
        bail!("ingest --merge {count} needs --run-date: the partition the parts were written for");
    };
    let prefix = parts_prefix(run_date, count);
    let listed = ctx.store.list(&prefix)?;
    let mut records = Vec::with_capacity(count as usize);
    let mut missing = Vec::new();
    for index in 1..=count {
        let key = format!("{prefix}part-{index}.json");
        let object = match listed.contains(&key) {
            true => ctx.store.get(&key)?,
            false => None,
        };
        let Some(object) = object else {
            missing.push(index);
            continue;
        };
        let record: PartRecord = serde_json::from_slice(&object.bytes)
            .with_context(|| format!("reading {}", ctx.store.uri(&key)))?;
        ctx.input(InputRecord {
            uri: ctx.store.uri(&key),
            sha256: crate::store::sha256_hex(&object.bytes),
            rows: 0,
        });
        records.push(record);
    }
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            count,
            missing,
            prefix: ctx.store.uri(&prefix),
            made_by: "--partition",
        }
        .into());
    }
    for (i, r) in records.iter().enumerate().skip(1) {
        if let Some(uri) = partition::differing_input(&records[0].made_from, &r.made_from) {
            return Err(MergeError::Inconsistent {
                index: i as u32 + 1,
                count,
                prefix: ctx.store.uri(&prefix),
                uri,
            }
            .into());
        }
    }
    // Tables in the order the parts met them (part 1 has every table).
    let mut totals: Vec<TablePart> = Vec::new();
    for t in records.into_iter().flat_map(|r| r.tables) {
        if let Some(f) = t
            .raw
            .iter()
            .chain(&t.quarantine)
            .find(|f| !f.key.starts_with(&prefix))
        {
            bail!(
                "a part record under {} names {:.80}, outside it: the parts area was tampered with; run every part again",
                ctx.store.uri(&prefix),
                f.key
            );
        }
        match totals.iter_mut().find(|s| s.table == t.table) {
            Some(s) => {
                s.summary.absorb(t.summary);
                s.raw.extend(t.raw);
                s.quarantine.extend(t.quarantine);
            }
            None => totals.push(t),
        }
    }
    for t in &mut totals {
        // A part with none of a table's rows wrote an empty file (the table's
        // schema); one is enough.
        let empty = t.raw.iter().find(|f| f.rows == 0).cloned();
        t.raw.retain(|f| f.rows > 0);
        if t.raw.is_empty() {
            t.raw.extend(empty);
        }
        let partition = io::partition("raw", t.table.name(), run_date);
        for (i, f) in t.raw.iter().enumerate() {
            let key = format!("{partition}part-{i:05}.parquet");
            ctx.adopt(&f.key, &key, f.sha256.clone(), f.rows)?;
        }
        ctx.replace_partition(&partition);
        for (i, f) in t.quarantine.iter().enumerate() {
            let key = Layout::Whole.reject_key(t.table, &ctx.run_id, i);
            ctx.adopt(&f.key, &key, f.sha256.clone(), f.rows)?;
        }
    }
    for key in &listed {
        ctx.delete_on_commit(key);
    }
    ctx.note(format!("merged {count} parts"));
    record_totals(
        ctx,
        totals.into_iter().map(|t| (t.table, t.summary)),
        max_reject_share,
    )
}

/// Partition placeholder while the run date is not known yet (it is the latest order
/// date, known only once every chunk has been read).
const PENDING_DATE: &str = "@pending-run-date@";

struct TableState {
    table: Table,
    validator: Validator,
    /// The files of accepted rows staged so far.
    raw: Vec<PartFile>,
    /// Rejected rows not yet staged: written out a chunk's worth at a time, so a
    /// mostly bad input is held no more than a good one.
    rejects: Vec<DataFrame>,
    rejects_buffered: usize,
    /// The quarantine files staged so far.
    quarantine: Vec<PartFile>,
}

impl TableState {
    /// Stages the buffered rejects as the next `rejects-NNNNN.parquet` of the table's
    /// quarantine.
    fn flush_rejects(&mut self, ctx: &mut RunContext, layout: &Layout) -> anyhow::Result<()> {
        if self.rejects.is_empty() {
            return Ok(());
        }
        let mut rejects = concat_frames(std::mem::take(&mut self.rejects))?;
        self.rejects_buffered = 0;
        let key = layout.reject_key(self.table, &ctx.run_id, self.quarantine.len());
        let file = stage(ctx, key, &mut rejects)?;
        self.quarantine.push(file);
        Ok(())
    }
}

/// Stages `df` under `key`; what a part records of the file.
fn stage(ctx: &mut RunContext, key: String, df: &mut DataFrame) -> anyhow::Result<PartFile> {
    let bytes = io::to_parquet(df)?;
    ctx.stage(&key, &bytes, df.height())?;
    Ok(PartFile {
        key,
        sha256: crate::store::sha256_hex(&bytes),
        rows: df.height(),
    })
}

struct IngestState {
    key: AnonKey,
    deleted: HashSet<String>,
    /// The part this run validates, if split.
    part: Option<Partition>,
    /// The salt of deleted customers' keys that the parts share.
    unlink_salt: Option<[u8; 32]>,
    layout: Layout,
    tables: Vec<TableState>,
    /// Latest order date: the default run date.
    last_order: Option<chrono::NaiveDate>,
    /// Latest date of any other table: the run date of an input without orders.
    last_other: Option<chrono::NaiveDate>,
}

impl IngestState {
    /// Validates one chunk and stages its accepted rows as the next part file.
    fn chunk(&mut self, ctx: &mut RunContext, table: Table, raw: RawTable) -> anyhow::Result<()> {
        let Some(raw) = self.own_rows(table, raw)? else {
            return Ok(());
        };
        if !self.tables.iter().any(|t| t.table == table) {
            let mut ctx = validate::Context::new(self.key.clone(), self.deleted.clone());
            if let Some(salt) = self.unlink_salt {
                ctx = ctx.with_unlink_salt(salt);
            }
            self.tables.push(TableState {
                table,
                // Keys spill to disk past a million, so the one piece of state
                // that grows with the input stays small.
                validator: Validator::with_keys(
                    table,
                    ctx,
                    Box::new(crate::keys::SpillingKeys::new()),
                ),
                raw: Vec::new(),
                rejects: Vec::new(),
                rejects_buffered: 0,
                quarantine: Vec::new(),
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
        if state.raw.is_empty() || chunk.accepted.height() > 0 {
            let key = self.layout.raw_key(table, state.raw.len());
            let file = stage(ctx, key, &mut chunk.accepted)?;
            state.raw.push(file);
        }
        if chunk.rejects.height() > 0 {
            state.rejects_buffered += chunk.rejects.height();
            state.rejects.push(chunk.rejects);
            if state.rejects_buffered >= sources::chunk_rows() {
                state.flush_rejects(ctx, &self.layout)?;
            }
        }
        Ok(())
    }

    /// The rows of a chunk this run validates: all of them in a whole run; in a
    /// part, those whose key it owns (rows without one, and malformed rows, are
    /// part 1's), or none of a table that stays whole in part 1. A part still
    /// learns every deletion request, which applies to its orders.
    fn own_rows(&mut self, table: Table, mut raw: RawTable) -> anyhow::Result<Option<RawTable>> {
        let Some(part) = self.part else {
            return Ok(Some(raw));
        };
        let first = part.index() == 1;
        match split_column(table) {
            Some(column) => {
                let keep: Vec<bool> = match raw.column(column) {
                    Some(cells) => cells
                        .iter()
                        .map(|c| {
                            part.owns_row(c.as_deref().map(str::trim).filter(|k| !k.is_empty()))
                        })
                        .collect(),
                    None => vec![first; raw.height()],
                };
                raw.retain(&keep, first);
                Ok(Some(raw))
            }
            None if first => Ok(Some(raw)),
            None => {
                if table == Table::DeletionRequests {
                    let ctx = validate::Context::new(self.key.clone(), HashSet::new());
                    let requests = validate::validate(table, &raw, &ctx)?;
                    self.deleted
                        .extend(super::strings(&requests.accepted, "customer_key")?);
                }
                Ok(None)
            }
        }
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
