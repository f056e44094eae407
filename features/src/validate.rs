//! Validation and quarantine: raw text rows in, typed accepted rows and anonymized
//! rejects out, with `rows_in = accepted + quarantined` always.
//!
//! Validation works column by column over the raw text (each cell gets its first
//! failing rule), then rows are split. It is hand-written rather than a polars
//! expression chain because each rejected row must carry the exact rule and the
//! offending value as it arrived, across several accepted spellings per type;
//! polars takes over once the data is typed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use polars::prelude::*;

use crate::anonymize::{self, AnonKey};
use crate::contract::{
    CUSTOMER_ID, Check, Column as Spec, FREE_TEXT_COLUMNS, PII_COLUMNS, REVERSAL_STATUSES, Table,
    Type,
};
use crate::{quote, values};

/// A table as read from a source: every cell text, column-major.
#[derive(Debug, Clone, Default)]
pub struct RawTable {
    /// Where the rows came from (a file name, a key, `postgres:schema.table`), for messages.
    pub source: String,
    pub columns: Vec<String>,
    pub cells: Vec<Vec<Option<String>>>,
    /// The row's position in the source (1-based data row), for messages and quarantine.
    pub source_rows: Vec<u64>,
    /// Rows the reader could not split into cells (ragged CSV lines, bad JSON lines).
    pub malformed: Vec<Malformed>,
    /// Cells whose bytes were not UTF-8 (kept as text with U+FFFD in their place, so
    /// the row reaches quarantine whole). A U+FFFD that arrived as valid UTF-8 is
    /// text like any other and is not listed.
    pub not_utf8: Vec<NotUtf8>,
}

/// A cell of the input that was not valid UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub struct NotUtf8 {
    pub source_row: u64,
    /// The input's column name.
    pub column: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub source_row: u64,
    pub rule: String,
    pub detail: String,
}

impl RawTable {
    pub fn new(source: impl Into<String>, columns: Vec<String>) -> RawTable {
        let n = columns.len();
        RawTable {
            source: source.into(),
            columns,
            cells: vec![Vec::new(); n],
            ..RawTable::default()
        }
    }

    pub fn push_row(&mut self, source_row: u64, row: impl IntoIterator<Item = Option<String>>) {
        let mut width = 0;
        for (cells, v) in self.cells.iter_mut().zip(row) {
            cells.push(v);
            width += 1;
        }
        debug_assert_eq!(width, self.cells.len(), "row width must match the header");
        self.source_rows.push(source_row);
    }

    pub fn height(&self) -> usize {
        self.source_rows.len()
    }

    /// All rows read, including the malformed ones.
    pub fn rows_in(&self) -> usize {
        self.height() + self.malformed.len()
    }

    /// Appends the rows of another chunk of the same source. Chunks of JSON lines
    /// may name different keys: the columns are their union, null where a chunk
    /// lacks one.
    pub fn append(&mut self, other: RawTable) {
        let before = self.height();
        let added = other.height();
        let mut other_cells: Vec<Option<Vec<Option<String>>>> =
            other.cells.into_iter().map(Some).collect();
        for (name, cells) in other.columns.into_iter().zip(other_cells.iter_mut()) {
            let cells = cells.take().expect("each column once");
            match self.columns.iter().position(|c| *c == name) {
                Some(i) => self.cells[i].extend(cells),
                None => {
                    let mut column = vec![None; before];
                    column.extend(cells);
                    self.columns.push(name);
                    self.cells.push(column);
                }
            }
        }
        for column in &mut self.cells {
            column.resize(before + added, None);
        }
        self.source_rows.extend(other.source_rows);
        self.malformed.extend(other.malformed);
        self.not_utf8.extend(other.not_utf8);
    }

    /// Keeps the rows where `keep` is true, and the malformed rows (which have no
    /// cells to decide by) only when `keep_malformed`: the rows one part of a
    /// fanned-out ingest validates.
    pub fn retain(&mut self, keep: &[bool], keep_malformed: bool) {
        assert_eq!(keep.len(), self.height(), "one flag per row");
        for column in &mut self.cells {
            let mut flags = keep.iter();
            column.retain(|_| *flags.next().expect("one flag per row"));
        }
        let kept: HashSet<u64> = self
            .source_rows
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| *r)
            .collect();
        let mut flags = keep.iter();
        self.source_rows
            .retain(|_| *flags.next().expect("one flag per row"));
        self.not_utf8.retain(|c| kept.contains(&c.source_row));
        if !keep_malformed {
            self.malformed.clear();
        }
    }

    /// The cells of the column `name`, if the input has it.
    pub fn column(&self, name: &str) -> Option<&[Option<String>]> {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| self.cells[i].as_slice())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ContractError {
    #[error(
        "{file}: missing required column `{column}` of table {table} (expected {expected}); found columns: {found}"
    )]
    MissingColumn {
        file: String,
        table: Table,
        column: String,
        expected: String,
        found: String,
    },
    /// The set of keys seen could not be kept (its spill files failed): the I/O
    /// error's text, so the error stays comparable.
    #[error("keeping the keys seen for duplicate detection: {0}")]
    Keys(String),
}

/// The keys a table has shown so far, as 128-bit fingerprints, for duplicate
/// detection across chunks. A plain in-memory set does for small inputs and tests;
/// ingest gives one that spills to disk (sgml-pipelines' `keys`).
pub trait SeenKeys: Send {
    /// Records `key`; false when it was recorded before.
    fn insert(&mut self, key: u128) -> std::io::Result<bool>;
}

impl SeenKeys for HashSet<u128> {
    fn insert(&mut self, key: u128) -> std::io::Result<bool> {
        Ok(HashSet::insert(self, key))
    }
}

/// What validation needs besides the rows.
#[derive(Clone, Debug)]
pub struct Context {
    pub key: AnonKey,
    /// Customer keys with a deletion request: their rows get an unlinked random key.
    pub deleted: Arc<HashSet<String>>,
    /// Where the unlinked keys come from: fresh random ones, or (for validators in
    /// several processes that must agree) keys salted with a secret they share for
    /// the run and then discard.
    pub unlink_salt: Option<[u8; 32]>,
}

impl Context {
    pub fn new(key: AnonKey, deleted: HashSet<String>) -> Context {
        Context {
            key,
            deleted: Arc::new(deleted),
            unlink_salt: None,
        }
    }

    /// Unlinked keys salted with `salt` (see [`anonymize::salted_key`]).
    pub fn with_unlink_salt(mut self, salt: [u8; 32]) -> Context {
        self.unlink_salt = Some(salt);
        self
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub rows_in: usize,
    pub accepted: usize,
    pub quarantined: usize,
}

#[derive(Debug)]
pub struct Validated {
    pub accepted: DataFrame,
    /// Rejected rows: `_source, _row, _rule, _column, _value`, then every contract
    /// column as (anonymized) text.
    pub rejects: DataFrame,
    pub counts: Counts,
    /// Contract columns the input lacked (null in every accepted row).
    pub missing_columns: Vec<String>,
    /// Input columns outside the contract, dropped (PII columns among them).
    pub dropped_columns: Vec<String>,
    /// Rejections per rule name.
    pub rules: Vec<(String, usize)>,
}

/// A cell's first broken rule.
#[derive(Debug, Clone)]
struct Violation {
    rule: String,
    column: &'static str,
    value: Option<String>,
}

enum Parsed {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Timestamp(Vec<Option<i64>>),
    Date(Vec<Option<i32>>),
}

/// A validated column: typed values plus the raw text kept for quarantine.
struct Checked<'a> {
    spec: &'static Spec,
    parsed: Parsed,
    /// The cells as read: borrowed from the chunk unless validation derived them
    /// (customer keys, scrubbed free text, absent columns), so a chunk is not
    /// copied whole.
    text: Cow<'a, [Option<String>]>,
}

/// One chunk's outcome.
#[derive(Debug)]
pub struct Chunk {
    pub accepted: DataFrame,
    pub rejects: DataFrame,
}

/// Validates a table chunk by chunk, so an input of any size streams through in
/// bounded memory. The state that spans chunks is the set of keys seen (duplicates
/// are found across chunks), the random keys given to deleted customers, and the
/// counts.
pub struct Validator {
    table: Table,
    ctx: Context,
    seen_keys: Box<dyn SeenKeys>,
    unlinked: HashMap<String, String>,
    counts: Counts,
    rules: BTreeMap<String, usize>,
    missing_columns: Vec<String>,
    dropped_columns: Vec<String>,
}

/// The totals of a validated table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub counts: Counts,
    /// Contract columns the input lacked (null in every accepted row).
    pub missing_columns: Vec<String>,
    /// Input columns outside the contract, dropped (PII columns among them).
    pub dropped_columns: Vec<String>,
    /// Rejections per rule name.
    pub rules: Vec<(String, usize)>,
}

impl Summary {
    /// Adds the summary of another part of the same table's rows (a fanned-out
    /// ingest's): counts and rules sum; the column lists, which every part reads
    /// from the same header, are kept from the first part that has them.
    pub fn absorb(&mut self, other: Summary) {
        self.counts.rows_in += other.counts.rows_in;
        self.counts.accepted += other.counts.accepted;
        self.counts.quarantined += other.counts.quarantined;
        if self.missing_columns.is_empty() {
            self.missing_columns = other.missing_columns;
        }
        if self.dropped_columns.is_empty() {
            self.dropped_columns = other.dropped_columns;
        }
        let mut rules: BTreeMap<String, usize> =
            std::mem::take(&mut self.rules).into_iter().collect();
        for (rule, n) in other.rules {
            *rules.entry(rule).or_default() += n;
        }
        self.rules = rules.into_iter().collect();
    }
}

impl Validator {
    /// A validator that keeps the keys seen in memory.
    pub fn new(table: Table, ctx: Context) -> Validator {
        Validator::with_keys(table, ctx, Box::new(HashSet::<u128>::new()))
    }

    /// A validator that keeps the keys seen in `seen_keys`.
    pub fn with_keys(table: Table, ctx: Context, seen_keys: Box<dyn SeenKeys>) -> Validator {
        Validator {
            table,
            ctx,
            seen_keys,
            unlinked: HashMap::new(),
            counts: Counts::default(),
            rules: BTreeMap::new(),
            missing_columns: Vec::new(),
            dropped_columns: Vec::new(),
        }
    }

    pub fn chunk(&mut self, raw: &RawTable) -> Result<Chunk, ContractError> {
        let table = self.table;
        let n = raw.height();
        let mut missing_columns = Vec::new();
        let mut violations: Vec<Option<Violation>> = vec![None; n];
        flag_not_utf8(table, raw, &mut violations);
        let mut checked: Vec<Checked> = Vec::new();
        for spec in table.columns() {
            let text: Cow<[Option<String>]> = if spec.name == "customer_key" && table.has_customer()
            {
                Cow::Owned(
                    match raw
                        .column(CUSTOMER_ID)
                        .or_else(|| raw.column("customer_key"))
                    {
                        Some(ids) => self.customer_keys(ids, raw.column(CUSTOMER_ID).is_some()),
                        None => absent(table, spec, raw, &mut missing_columns, CUSTOMER_ID)?,
                    },
                )
            } else {
                match raw.column(spec.name) {
                    Some(cells) if FREE_TEXT_COLUMNS.contains(&spec.name) => Cow::Owned(
                        cells
                            .iter()
                            .map(|c| c.as_deref().map(anonymize::scrub_free_text))
                            .collect(),
                    ),
                    Some(cells) => Cow::Borrowed(cells),
                    None => Cow::Owned(absent(table, spec, raw, &mut missing_columns, spec.name)?),
                }
            };
            let parsed = check_column(table, spec, &text, &mut violations);
            checked.push(Checked { spec, parsed, text });
        }
        if table == Table::Orders {
            check_quantity_sign(&checked, &mut violations);
        }
        check_duplicate_keys(table, &checked, &mut violations, self.seen_keys.as_mut())
            .map_err(|e| ContractError::Keys(e.to_string()))?;

        let keep: Vec<bool> = violations.iter().map(Option::is_none).collect();
        let accepted = accepted_frame(&checked, &keep);
        let rejects = rejects_frame(raw, &checked, &violations);
        for rule in violations
            .iter()
            .flatten()
            .map(|v| &v.rule)
            .chain(raw.malformed.iter().map(|m| &m.rule))
        {
            *self.rules.entry(rule.clone()).or_default() += 1;
        }
        self.counts.rows_in += raw.rows_in();
        self.counts.accepted += accepted.height();
        self.counts.quarantined += rejects.height();
        debug_assert_eq!(
            self.counts.rows_in,
            self.counts.accepted + self.counts.quarantined
        );
        if self.missing_columns.is_empty() {
            self.missing_columns = missing_columns;
        }
        if self.dropped_columns.is_empty() {
            let known: HashSet<&str> = table
                .columns()
                .iter()
                .map(|c| c.name)
                .chain([CUSTOMER_ID])
                .collect();
            self.dropped_columns = raw
                .columns
                .iter()
                .filter(|c| !known.contains(c.as_str()))
                .cloned()
                .collect();
        }
        Ok(Chunk { accepted, rejects })
    }

    /// HMAC keys from raw customer ids (or keys passed through when the input already
    /// has them); a customer with a deletion request gets an unlinked random key.
    fn customer_keys(&mut self, ids: &[Option<String>], hash: bool) -> Vec<Option<String>> {
        ids.iter()
            .map(|id| {
                let id = id.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
                let key = if hash {
                    self.ctx.key.customer_key(id)
                } else {
                    id.to_string()
                };
                Some(
                    if self.table == Table::Orders && self.ctx.deleted.contains(&key) {
                        let salt = self.ctx.unlink_salt;
                        self.unlinked
                            .entry(key)
                            .or_insert_with_key(|key| match salt {
                                Some(salt) => anonymize::salted_key(&salt, key),
                                None => anonymize::random_key(),
                            })
                            .clone()
                    } else {
                        key
                    },
                )
            })
            .collect()
    }

    pub fn finish(self) -> Summary {
        Summary {
            counts: self.counts,
            missing_columns: self.missing_columns,
            dropped_columns: self.dropped_columns,
            rules: self.rules.into_iter().collect(),
        }
    }
}

/// Validates a whole table in one chunk.
pub fn validate(table: Table, raw: &RawTable, ctx: &Context) -> Result<Validated, ContractError> {
    let mut v = Validator::new(table, ctx.clone());
    let chunk = v.chunk(raw)?;
    let s = v.finish();
    Ok(Validated {
        accepted: chunk.accepted,
        rejects: chunk.rejects,
        counts: s.counts,
        missing_columns: s.missing_columns,
        dropped_columns: s.dropped_columns,
        rules: s.rules,
    })
}

/// An empty frame with the table's stored schema (for a table an input lacks).
pub fn empty(table: Table) -> DataFrame {
    let columns = table.columns().iter().map(|c| c.name.to_string()).collect();
    let key = AnonKey::demo();
    validate(
        table,
        &RawTable::new("empty", columns),
        &Context::new(key, HashSet::new()),
    )
    .expect("an input with every column validates")
    .accepted
}

/// A contract column the input lacks: an error when required, all-null otherwise.
fn absent(
    table: Table,
    spec: &Spec,
    raw: &RawTable,
    missing: &mut Vec<String>,
    input_name: &str,
) -> Result<Vec<Option<String>>, ContractError> {
    if spec.required {
        return Err(ContractError::MissingColumn {
            file: raw.source.clone(),
            table,
            column: input_name.to_string(),
            expected: describe(spec),
            found: quote::list(&raw.columns, ", "),
        });
    }
    missing.push(spec.name.to_string());
    Ok(vec![None; raw.height()])
}

fn describe(spec: &Spec) -> String {
    let ty = match spec.ty {
        Type::Text { max_chars } => format!("text up to {max_chars} characters"),
        Type::Int => "an integer".into(),
        Type::Float => "a number".into(),
        Type::Timestamp => "a UTC timestamp such as 2024-03-01 10:00:00".into(),
        Type::Date => "a date YYYY-MM-DD".into(),
    };
    match spec.check {
        Check::Currency => format!("{ty}, an ISO 4217 currency code"),
        Check::Country => format!("{ty}, an ISO 3166-1 alpha-2 country code"),
        Check::Identifier => format!("{ty} without control characters"),
        Check::OneOf(values) => format!("{ty}, one of {}", values.join("|")),
        _ => ty,
    }
}

fn check_column(
    table: Table,
    spec: &'static Spec,
    text: &[Option<String>],
    violations: &mut [Option<Violation>],
) -> Parsed {
    let rule = |r: &str| format!("{}.{}.{r}", table.name(), spec.name);
    let mut flag = |i: usize, r: &str, v: &str| {
        if violations[i].is_none() {
            violations[i] = Some(Violation {
                rule: rule(r),
                column: spec.name,
                value: Some(v.to_string()),
            });
        }
    };
    let cells: Vec<Option<&str>> = text
        .iter()
        .map(|c| c.as_deref().map(str::trim).filter(|s| !s.is_empty()))
        .collect();
    let mut parsed = match spec.ty {
        Type::Text { .. } => Parsed::Text(Vec::with_capacity(cells.len())),
        Type::Int => Parsed::Int(Vec::with_capacity(cells.len())),
        Type::Float => Parsed::Float(Vec::with_capacity(cells.len())),
        Type::Timestamp => Parsed::Timestamp(Vec::with_capacity(cells.len())),
        Type::Date => Parsed::Date(Vec::with_capacity(cells.len())),
    };
    for (i, cell) in cells.iter().enumerate() {
        let Some(s) = *cell else {
            if spec.required {
                flag(i, "required", "");
            }
            push_null(&mut parsed);
            continue;
        };
        let number = match (&mut parsed, spec.ty) {
            (Parsed::Text(out), Type::Text { max_chars }) => {
                if s.chars().count() > max_chars {
                    let head: String = s.chars().take(40).collect();
                    flag(
                        i,
                        "length",
                        &format!("{head}… ({} characters)", s.chars().count()),
                    );
                } else if !text_check(spec.check, s) {
                    let r = match spec.check {
                        Check::Currency => "currency",
                        Check::Country => "country",
                        Check::Identifier => "control",
                        _ => "enum",
                    };
                    flag(i, r, s);
                }
                out.push(Some(s.to_string()));
                None
            }
            (Parsed::Int(out), _) => {
                let v = values::parse_int(s);
                out.push(v);
                v.map(|v| v as f64)
            }
            (Parsed::Float(out), _) => {
                let v = values::parse_float(s);
                out.push(v);
                v
            }
            (Parsed::Timestamp(out), _) => {
                let v = values::parse_timestamp(s);
                out.push(v);
                v.map(|_| 0.0)
            }
            (Parsed::Date(out), _) => {
                let v = values::parse_date(s);
                out.push(v);
                v.map(|_| 0.0)
            }
            _ => unreachable!("parsed vector matches the column type"),
        };
        if !matches!(spec.ty, Type::Text { .. }) {
            match number {
                None => flag(i, "type", s),
                Some(x) if !in_range(spec.check, x) => flag(i, "range", s),
                Some(_) => {}
            }
        }
    }
    parsed
}

/// Rows with a cell the reader found not to be UTF-8 break the column's `utf8` rule.
fn flag_not_utf8(table: Table, raw: &RawTable, violations: &mut [Option<Violation>]) {
    if raw.not_utf8.is_empty() {
        return;
    }
    let index: HashMap<u64, usize> = raw
        .source_rows
        .iter()
        .enumerate()
        .map(|(i, r)| (*r, i))
        .collect();
    for bad in &raw.not_utf8 {
        let contract_name = if bad.column == CUSTOMER_ID && table.has_customer() {
            "customer_key"
        } else {
            bad.column.as_str()
        };
        let (Some(spec), Some(&i)) = (
            table.columns().iter().find(|c| c.name == contract_name),
            index.get(&bad.source_row),
        ) else {
            // A column outside the contract is dropped anyway.
            continue;
        };
        if violations[i].is_none() {
            let cell = raw
                .column(&bad.column)
                .and_then(|cells| cells[i].as_deref())
                .unwrap_or_default();
            violations[i] = Some(Violation {
                rule: format!("{}.{}.utf8", table.name(), spec.name),
                column: spec.name,
                value: Some(cell.to_string()),
            });
        }
    }
}

fn push_null(p: &mut Parsed) {
    match p {
        Parsed::Text(v) => v.push(None),
        Parsed::Int(v) => v.push(None),
        Parsed::Float(v) => v.push(None),
        Parsed::Timestamp(v) => v.push(None),
        Parsed::Date(v) => v.push(None),
    }
}

fn text_check(check: Check, s: &str) -> bool {
    match check {
        Check::Currency => values::is_currency(s),
        Check::Country => values::is_country(s),
        Check::OneOf(allowed) => allowed.contains(&s),
        // A NUL, newline or escape inside a key breaks joins, logs and file formats
        // downstream.
        Check::Identifier => !s.chars().any(char::is_control),
        _ => true,
    }
}

fn in_range(check: Check, x: f64) -> bool {
    match check {
        Check::Range { min, max } => (min..=max).contains(&x),
        Check::Positive { max } => x > 0.0 && x <= max,
        _ => true,
    }
}

fn find<'a, 'b>(checked: &'a [Checked<'b>], name: &str) -> &'a Checked<'b> {
    checked
        .iter()
        .find(|c| c.spec.name == name)
        .expect("contract column present")
}

/// A line's quantity is positive, except reversals (cancelled, returned), which may
/// be negative; zero is never a sale.
fn check_quantity_sign(checked: &[Checked], violations: &mut [Option<Violation>]) {
    let (Parsed::Int(qty), Parsed::Text(status)) = (
        &find(checked, "quantity").parsed,
        &find(checked, "status").parsed,
    ) else {
        unreachable!("orders contract types");
    };
    for (i, (q, s)) in qty.iter().zip(status).enumerate() {
        let Some(q) = *q else { continue };
        let reversal = s.as_deref().is_some_and(|s| REVERSAL_STATUSES.contains(&s));
        if violations[i].is_none() && (q == 0 || (q < 0 && !reversal)) {
            violations[i] = Some(Violation {
                rule: "orders.quantity.sign".into(),
                column: "quantity",
                value: Some(format!(
                    "{q} with status {}",
                    s.as_deref().unwrap_or("null")
                )),
            });
        }
    }
}

/// The first row with a key is kept; later rows with the same key are quarantined.
/// Only rows that are otherwise valid take part, so a bad first copy does not push
/// a good second copy into quarantine.
fn check_duplicate_keys(
    table: Table,
    checked: &[Checked],
    violations: &mut [Option<Violation>],
    seen: &mut dyn SeenKeys,
) -> std::io::Result<()> {
    let key_cols: Vec<&Checked> = table.key().iter().map(|k| find(checked, k)).collect();
    for (i, slot) in violations.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let key: Vec<&str> = key_cols
            .iter()
            .map(|c| c.text[i].as_deref().map(str::trim).unwrap_or(""))
            .collect();
        let key = key.join("\u{1f}");
        // The set spans every chunk of the table, so it holds a 128-bit fingerprint
        // per key rather than the key (16 bytes whatever the key's length; a false
        // duplicate needs a collision, about 1e-25 for ten million keys).
        if !seen.insert(xxhash_rust::xxh3::xxh3_128(key.as_bytes()))? {
            *slot = Some(Violation {
                rule: format!("{}.key.duplicate", table.name()),
                column: table.key()[0],
                value: Some(key.replace('\u{1f}', "/")),
            });
        }
    }
    Ok(())
}

fn pick<T: Clone>(v: &[Option<T>], keep: &[bool]) -> Vec<Option<T>> {
    v.iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(x, _)| x.clone())
        .collect()
}

fn accepted_frame(checked: &[Checked], keep: &[bool]) -> DataFrame {
    let height = keep.iter().filter(|k| **k).count();
    let columns = checked
        .iter()
        .map(|c| {
            let name = PlSmallStr::from_static(c.spec.name);
            match &c.parsed {
                Parsed::Text(v) => Column::new(name, pick(v, keep)),
                Parsed::Int(v) => Column::new(name, pick(v, keep)),
                Parsed::Float(v) => Column::new(name, pick(v, keep)),
                Parsed::Timestamp(v) => Column::new(name, pick(v, keep))
                    .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                    .expect("i64 casts to datetime"),
                Parsed::Date(v) => Column::new(name, pick(v, keep))
                    .cast(&DataType::Date)
                    .expect("i32 casts to date"),
            }
        })
        .collect();
    DataFrame::new(height, columns).expect("columns of equal height")
}

fn rejects_frame(
    raw: &RawTable,
    checked: &[Checked],
    violations: &[Option<Violation>],
) -> DataFrame {
    let rejected: Vec<usize> = (0..violations.len())
        .filter(|i| violations[*i].is_some())
        .collect();
    let mut source_row: Vec<u64> = Vec::new();
    let mut rule: Vec<String> = Vec::new();
    let mut column: Vec<Option<String>> = Vec::new();
    let mut value: Vec<Option<String>> = Vec::new();
    for &i in &rejected {
        let v = violations[i]
            .as_ref()
            .expect("rejected rows have a violation");
        source_row.push(raw.source_rows[i]);
        rule.push(v.rule.clone());
        column.push(Some(v.column.to_string()));
        // The row itself is kept whole beside this; the note quotes its value briefly.
        value.push(v.value.as_deref().map(|s| {
            if PII_COLUMNS.contains(&v.column) {
                anonymize::mask(s)
            } else {
                quote::brief(s)
            }
        }));
    }
    for m in &raw.malformed {
        source_row.push(m.source_row);
        rule.push(m.rule.clone());
        column.push(None);
        value.push(Some(quote::brief(&m.detail)));
    }
    let height = source_row.len();
    let mut columns = vec![
        Column::new("_source".into(), vec![raw.source.clone(); height]),
        Column::new("_row".into(), source_row),
        Column::new("_rule".into(), rule),
        Column::new("_column".into(), column),
        Column::new("_value".into(), value),
    ];
    for c in checked {
        let mut cells: Vec<Option<String>> = rejected.iter().map(|&i| c.text[i].clone()).collect();
        cells.resize(height, None);
        columns.push(Column::new(PlSmallStr::from_static(c.spec.name), cells));
    }
    DataFrame::new(height, columns).expect("columns of equal height")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::rule_names;
    use proptest::prelude::*;

    fn orders_header() -> Vec<String> {
        [
            "order_id",
            "line_no",
            "order_ts",
            "customer_id",
            "customer_name",
            "customer_email",
            "product_id",
            "seller_id",
            "quantity",
            "unit_price",
            "currency",
            "buyer_country",
            "ship_country",
            "channel",
            "status",
        ]
        .map(String::from)
        .to_vec()
    }

    fn good_order(id: &str) -> Vec<&str> {
        vec![
            id,
            "1",
            "2024-03-01 10:00:00",
            "C-17",
            "Jane Roe",
            "jane.roe@example.com",
            "P1",
            "S1",
            "2",
            "19.99",
            "EUR",
            "DE",
            "FR",
            "web",
            "completed",
        ]
    }

    fn table(rows: &[Vec<&str>]) -> RawTable {
        let mut t = RawTable::new("orders.csv", orders_header());
        for (i, r) in rows.iter().enumerate() {
            t.push_row(i as u64 + 1, r.iter().map(|s| Some(s.to_string())));
        }
        t
    }

    /// Two parts' summaries add up to the whole's: counts and rules sum, rules stay
    /// sorted by name.
    #[test]
    fn summaries_absorb_their_parts() {
        let part = |accepted, rules: &[(&str, usize)]| Summary {
            counts: Counts {
                rows_in: accepted + rules.iter().map(|r| r.1).sum::<usize>(),
                accepted,
                quarantined: rules.iter().map(|r| r.1).sum(),
            },
            missing_columns: vec!["channel".into()],
            dropped_columns: Vec::new(),
            rules: rules.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        };
        let mut total = Summary::default();
        total.absorb(part(5, &[("orders.quantity.range", 2)]));
        total.absorb(part(
            3,
            &[("orders.currency.code", 1), ("orders.quantity.range", 1)],
        ));
        assert_eq!(total.counts.rows_in, 12);
        assert_eq!(total.counts.accepted, 8);
        assert_eq!(total.counts.quarantined, 4);
        assert_eq!(
            total.rules,
            [
                ("orders.currency.code".to_string(), 1),
                ("orders.quantity.range".to_string(), 3)
            ]
        );
        assert_eq!(total.missing_columns, ["channel"]);
    }

    /// A part keeps its rows whole (every column, the source row, the cells that
    /// were not UTF-8) and the malformed rows only when asked.
    #[test]
    fn retain_keeps_rows_whole() {
        let mut t = table(&[good_order("O1"), good_order("O2"), good_order("O3")]);
        t.not_utf8 = vec![
            NotUtf8 {
                source_row: 2,
                column: "customer_name".into(),
            },
            NotUtf8 {
                source_row: 3,
                column: "customer_name".into(),
            },
        ];
        t.malformed.push(Malformed {
            source_row: 4,
            rule: "orders.row.ragged".into(),
            detail: String::new(),
        });
        let mut other = t.clone();
        t.retain(&[false, false, true], true);
        assert_eq!(t.height(), 1);
        assert_eq!(t.column("order_id").unwrap(), [Some("O3".to_string())]);
        assert!(t.cells.iter().all(|c| c.len() == 1));
        assert_eq!(t.source_rows, [3]);
        assert_eq!(t.not_utf8.len(), 1);
        assert_eq!(t.rows_in(), 2, "the malformed row stays");
        other.retain(&[true, true, false], false);
        assert_eq!(other.source_rows, [1, 2]);
        assert_eq!(other.not_utf8[0].source_row, 2);
        assert_eq!(other.rows_in(), 2, "the malformed row is the other part's");
    }

    fn run(rows: &[Vec<&str>]) -> Validated {
        let key = AnonKey::new("unit-test-secret-123").unwrap();
        validate(
            Table::Orders,
            &table(rows),
            &Context::new(key.clone(), HashSet::new()),
        )
        .unwrap()
    }

    fn rule_of(v: &Validated) -> String {
        let r = v.rejects.column("_rule").unwrap().str().unwrap();
        r.get(0).unwrap().to_string()
    }

    /// A valid raw value for a column; `row` keeps text keys unique.
    fn good_value(spec: &Spec, row: usize) -> String {
        match (spec.ty, spec.check) {
            (_, Check::Currency) => "EUR".into(),
            (_, Check::Country) => "DE".into(),
            (_, Check::OneOf(values)) => values[0].into(),
            (Type::Text { .. }, _) => format!("{}{row}", &spec.name[..3]),
            (Type::Int, _) => "2".into(),
            (Type::Float, _) => "10.5".into(),
            (Type::Timestamp, _) => "2024-03-01 10:00:00".into(),
            (Type::Date, _) => format!("2024-03-{:02}", row + 1),
        }
    }

    /// A bad value for each rule a column has, keyed by the rule's last part.
    fn bad_values(spec: &Spec) -> Vec<(&'static str, String)> {
        let mut bad = Vec::new();
        if spec.required {
            bad.push(("required", String::new()));
        }
        match spec.ty {
            Type::Text { max_chars } => {
                bad.push(("utf8", "a\u{FFFD}b".into()));
                bad.push(("length", "x".repeat(max_chars + 1)));
            }
            _ => bad.push(("type", "not-a-value".into())),
        }
        match spec.check {
            Check::Range { min, .. } => bad.push(("range", (min - 1.0).to_string())),
            Check::Positive { .. } => bad.push(("range", "0".into())),
            Check::OneOf(_) => bad.push(("enum", "bogus".into())),
            Check::Currency => bad.push(("currency", "EUX".into())),
            Check::Country => bad.push(("country", "XX".into())),
            Check::Identifier => bad.push(("control", "A\u{0}1".into())),
            Check::None => {}
        }
        bad
    }

    /// The raw column a contract column is read from.
    fn input_name(table: Table, spec: &Spec) -> &'static str {
        if spec.name == "customer_key" && table.has_customer() {
            CUSTOMER_ID
        } else {
            spec.name
        }
    }

    fn raw_rows(table: Table, rows: &[Vec<String>]) -> RawTable {
        let columns = table
            .columns()
            .iter()
            .map(|c| input_name(table, c).to_string())
            .collect();
        let mut t = RawTable::new(format!("{table}.csv"), columns);
        for (i, r) in rows.iter().enumerate() {
            // These rows stand for bytes read from a file: a U+FFFD here is where the
            // reader found bytes that were not UTF-8, and it says so.
            for (c, cell) in r.iter().enumerate() {
                if cell.contains('\u{FFFD}') {
                    t.not_utf8.push(NotUtf8 {
                        source_row: i as u64 + 1,
                        column: t.columns[c].clone(),
                    });
                }
            }
            t.push_row(i as u64 + 1, r.iter().map(|s| Some(s.clone())));
        }
        t
    }

    /// U+FFFD that arrived as valid UTF-8 is text (real exports carry it); only cells
    /// the reader found not to be UTF-8 break the `utf8` rule.
    #[test]
    fn a_literal_replacement_character_is_text() {
        let mut row = good_row(Table::Products, 0);
        let title = Table::Products
            .columns()
            .iter()
            .position(|c| c.name == "title")
            .unwrap();
        row[title] = "Mug \u{FFFD} blue".into();
        let mut raw = raw_rows(Table::Products, &[row]);
        raw.not_utf8.clear();
        let key = AnonKey::new("unit-test-secret-123").unwrap();
        let v = validate(Table::Products, &raw, &Context::new(key, HashSet::new())).unwrap();
        assert_eq!((v.counts.accepted, v.counts.quarantined), (1, 0));
    }

    /// A quoted newline or a NUL inside an id is refused under the `control` rule.
    #[test]
    fn ids_refuse_control_characters() {
        for id in ["A\n1", "A\u{0}1", "A\u{1b}[31m1", "A\t1"] {
            let mut rows = vec![good_row(Table::Orders, 0), good_row(Table::Orders, 1)];
            rows[1][0] = id.into();
            let v = validate_rows(Table::Orders, &rows);
            assert_eq!(v.counts.quarantined, 1, "{id:?}");
            assert_eq!(rule_of(&v), "orders.order_id.control");
        }
    }

    fn good_row(table: Table, row: usize) -> Vec<String> {
        table.columns().iter().map(|c| good_value(c, row)).collect()
    }

    fn validate_rows(table: Table, rows: &[Vec<String>]) -> Validated {
        let key = AnonKey::new("unit-test-secret-123").unwrap();
        validate(
            table,
            &raw_rows(table, rows),
            &Context::new(key.clone(), HashSet::new()),
        )
        .unwrap()
    }

    /// Every rule of every table: a row that breaks it (and nothing else) lands in
    /// quarantine under that rule's name, while a good row beside it is accepted.
    #[test]
    fn every_rule_quarantines_its_row() {
        for table in Table::ALL {
            let mut covered: HashSet<String> = HashSet::new();
            let check = |rows: Vec<Vec<String>>, want: &str, covered: &mut HashSet<String>| {
                let v = validate_rows(table, &rows);
                assert_eq!(v.counts.quarantined, 1, "{want}: {:?}", v.rejects);
                assert_eq!(v.counts.accepted, rows.len() - 1, "{want}");
                assert_eq!(rule_of(&v), want);
                covered.insert(want.to_string());
            };
            for (i, spec) in table.columns().iter().enumerate() {
                for (rule, value) in bad_values(spec) {
                    if table.has_customer() && spec.name == "customer_key" && rule != "required" {
                        continue;
                    }
                    let mut bad = good_row(table, 1);
                    bad[i] = value;
                    check(
                        vec![good_row(table, 0), bad],
                        &format!("{table}.{}.{rule}", spec.name),
                        &mut covered,
                    );
                }
            }
            check(
                vec![good_row(table, 0), good_row(table, 0)],
                &format!("{table}.key.duplicate"),
                &mut covered,
            );
            if table == Table::Orders {
                let q = table
                    .columns()
                    .iter()
                    .position(|c| c.name == "quantity")
                    .unwrap();
                let mut negative = good_row(table, 1);
                negative[q] = "-1".into();
                check(
                    vec![good_row(table, 0), negative.clone()],
                    "orders.quantity.sign",
                    &mut covered,
                );
                let status = table
                    .columns()
                    .iter()
                    .position(|c| c.name == "status")
                    .unwrap();
                negative[status] = "cancelled".into();
                assert_eq!(
                    validate_rows(table, &[negative]).counts.accepted,
                    1,
                    "reversals may be negative"
                );
            }
            // A derived key (an HMAC) can be neither broken UTF-8 nor too long.
            let derived = |r: &String| r.contains(".customer_key.") && !r.ends_with(".required");
            let missing: Vec<String> = rule_names(table)
                .into_iter()
                .filter(|r| !(covered.contains(r) || table.has_customer() && derived(r)))
                .collect();
            assert!(missing.is_empty(), "rules without a test: {missing:?}");
        }
    }

    #[test]
    fn duplicates_are_found_across_chunks() {
        let key = AnonKey::new("unit-test-secret-123").unwrap();
        let mut v = Validator::new(Table::Orders, Context::new(key, HashSet::new()));
        let first = v
            .chunk(&table(&[good_order("O1"), good_order("O2")]))
            .unwrap();
        let second = v
            .chunk(&table(&[good_order("O2"), good_order("O3")]))
            .unwrap();
        assert_eq!((first.accepted.height(), second.accepted.height()), (2, 1));
        assert_eq!(
            rule_of(&Validated {
                accepted: second.accepted,
                rejects: second.rejects,
                counts: Counts::default(),
                missing_columns: vec![],
                dropped_columns: vec![],
                rules: vec![]
            }),
            "orders.key.duplicate"
        );
        let s = v.finish();
        assert_eq!(
            s.counts,
            Counts {
                rows_in: 4,
                accepted: 3,
                quarantined: 1
            }
        );
    }

    #[test]
    fn pii_is_dropped_and_customer_is_keyed() {
        let v = run(&[good_order("O1")]);
        let names: Vec<&str> = v
            .accepted
            .get_column_names()
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert!(!names.contains(&"customer_name") && !names.contains(&"customer_id"));
        let key = v
            .accepted
            .column("customer_key")
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .unwrap()
            .to_string();
        assert_eq!(
            key,
            AnonKey::new("unit-test-secret-123")
                .unwrap()
                .customer_key("C-17")
        );
        assert!(v.dropped_columns.contains(&"customer_email".to_string()));
    }

    #[test]
    fn deleted_customers_get_an_unlinked_key() {
        let key = AnonKey::new("unit-test-secret-123").unwrap();
        let deleted: HashSet<String> = [key.customer_key("C-17")].into();
        let v = validate(
            Table::Orders,
            &table(&[good_order("O1"), good_order("O2")]),
            &Context::new(key.clone(), deleted),
        )
        .unwrap();
        let keys = v.accepted.column("customer_key").unwrap().str().unwrap();
        assert_ne!(keys.get(0).unwrap(), key.customer_key("C-17"));
        assert_eq!(keys.get(0), keys.get(1), "one random key per customer");
    }

    #[test]
    fn missing_required_column_names_file_and_column() {
        let mut t = table(&[good_order("O1")]);
        let i = t.columns.iter().position(|c| c == "unit_price").unwrap();
        t.columns.remove(i);
        t.cells.remove(i);
        let key = AnonKey::demo();
        let err = validate(
            Table::Orders,
            &t,
            &Context::new(key.clone(), HashSet::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("orders.csv") && err.contains("unit_price") && err.contains("a number"),
            "{err}"
        );
    }

    #[test]
    fn malformed_rows_are_counted_and_quarantined() {
        let mut t = table(&[good_order("O1")]);
        t.malformed.push(Malformed {
            source_row: 2,
            rule: "csv.field_count".into(),
            detail: "3 fields, expected 15".into(),
        });
        let key = AnonKey::demo();
        let v = validate(
            Table::Orders,
            &t,
            &Context::new(key.clone(), HashSet::new()),
        )
        .unwrap();
        assert_eq!(
            v.counts,
            Counts {
                rows_in: 2,
                accepted: 1,
                quarantined: 1
            }
        );
    }

    proptest! {
        /// Whatever the cells hold, every row is accepted or quarantined, never both,
        /// and accepted rows satisfy the typed rules.
        #[test]
        fn rows_are_conserved(rows in prop::collection::vec(
            (prop::sample::select(vec!["O1", "O2", "", "O\u{FFFD}"]),
             prop::sample::select(vec!["1", "2", "0", "x", "-1"]),
             prop::sample::select(vec!["2024-01-01", "2024-02-30", "", "2024-01-01T00:00:00Z"]),
             prop::sample::select(vec!["1", "-2", "0", "7.5"]),
             prop::sample::select(vec!["1.5", "-1", "inf", "", "0"]),
             prop::sample::select(vec!["EUR", "XXY", ""]),
             prop::sample::select(vec!["completed", "cancelled", "bogus"])), 0..40)) {
            let rows: Vec<Vec<&str>> = rows.iter().map(|(id, line, ts, q, p, cur, st)| {
                let mut r = good_order(id);
                r[1] = line; r[2] = ts; r[8] = q; r[9] = p; r[10] = cur; r[14] = st;
                r
            }).collect();
            let v = run(&rows);
            prop_assert_eq!(v.counts.rows_in, rows.len());
            prop_assert_eq!(v.counts.accepted + v.counts.quarantined, rows.len());
            let price = v.accepted.column("unit_price").unwrap().f64().unwrap();
            prop_assert!(price.iter().all(|p| p.is_some_and(|p| p >= 0.0 && p.is_finite())));
            let qty = v.accepted.column("quantity").unwrap().i64().unwrap();
            let st = v.accepted.column("status").unwrap().str().unwrap();
            for (q, s) in qty.iter().zip(st.iter()) {
                prop_assert!(q.unwrap() > 0 || s == Some("cancelled"));
            }
        }
    }
}
