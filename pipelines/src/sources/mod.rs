//! Sources that ingest reads: files (CSV, gzipped CSV, Parquet, JSON lines) and
//! PostgreSQL. Every source yields contract tables as text cells
//! ([`RawTable`]) plus a record of what was read (URI, checksum, rows), so
//! validation treats every source alike.

mod files;
#[cfg(test)]
mod fuzz;
mod parquet;
mod postgres;
mod text;

use std::io::Read;

use sgml_features::Table;
use sgml_features::validate::RawTable;
use sha2::{Digest, Sha256};

use crate::mapping::Mapping;

pub use postgres::redact as redact_url;
pub use text::{CsvChunks, JsonlChunks, MAX_JSON_LINE_BYTES, read_csv, read_jsonl};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("{0}")]
    Input(String),
    #[error(
        "{file}: more than {limit} bytes once decompressed: refused (a compression bomb, or raise --max-decompressed-bytes)"
    )]
    TooLarge { file: String, limit: u64 },
    #[error("PostgreSQL {uri}: {message}")]
    Postgres { uri: String, message: String },
    /// The consumer of the chunks failed.
    #[error(transparent)]
    Sink(BoxError),
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Receives each table chunk as it is read. Chunks of `deletion_requests` come
/// before any other table's, so deletions apply to the orders read after them.
pub type ChunkSink<'a> = dyn FnMut(Table, RawTable) -> Result<(), BoxError> + 'a;

/// Rows per chunk: bounds ingest memory whatever the input size.
pub const CHUNK_ROWS: usize = 200_000;

/// The chunk size: [`CHUNK_ROWS`], or `SGML_CHUNK_ROWS` to trade memory for speed.
pub fn chunk_rows() -> usize {
    std::env::var("SGML_CHUNK_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(CHUNK_ROWS)
}

/// What a step read, for lineage (the same record a bundle's training data keeps).
pub use sgml_models::bundle::InputRecord;

/// Options that only some sources use.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub pg_schema: String,
    /// `(table, SQL)` pairs replacing `SELECT * FROM schema.table`.
    pub pg_queries: Vec<(String, String)>,
    /// A compressed file that expands past this many bytes is refused.
    pub max_decompressed_bytes: u64,
}

/// Default of [`SourceOptions::max_decompressed_bytes`]: 16 GiB, ten times the
/// largest real export seen (1.5 GB of CSV for 10 M order lines).
pub const MAX_DECOMPRESSED_BYTES: u64 = 16 << 30;

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions {
            pg_schema: "public".into(),
            pg_queries: Vec::new(),
            max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// The error a [`Capped`] reader fails with past its limit, found again by type in
/// the readers' error chains.
#[derive(Debug, thiserror::Error)]
#[error("more than {limit} bytes")]
pub(crate) struct OverLimit {
    pub limit: u64,
}

/// A reader that fails once more than `limit` bytes have come through (decompressed
/// input: a 9 MB gzip can expand to terabytes).
pub(crate) struct Capped<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R: Read> Capped<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Capped {
            inner,
            limit,
            read: 0,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(OverLimit { limit: self.limit }));
        }
        Ok(n)
    }
}

/// The limit a [`Capped`] reader hit, if that is what `e` comes from.
pub(crate) fn over_limit(e: &std::io::Error) -> Option<u64> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<OverLimit>())
        .map(|o| o.limit)
}

/// Streams every input (PostgreSQL URLs, directories, files) into `sink`, table by
/// table, and returns what was read.
pub fn load(
    inputs: &[String],
    mapping: Option<&Mapping>,
    opts: &SourceOptions,
    sink: &mut ChunkSink,
) -> Result<Vec<InputRecord>, SourceError> {
    if inputs.is_empty() {
        return Err(SourceError::Input("no input given".into()));
    }
    if let [url] = inputs
        && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        if mapping.is_some() {
            return Err(SourceError::Input(
                "--mapping applies to file exports; for PostgreSQL give a query per table with --pg-query TABLE=SQL".into(),
            ));
        }
        return postgres::load(url, opts, sink);
    }
    files::load(inputs, mapping, opts, sink)
}

/// Tables in the order ingest needs them: deletion requests first.
pub(crate) fn ingest_order(t: &Table) -> (bool, Table) {
    (*t != Table::DeletionRequests, *t)
}

/// A reader that hashes what passes through it, so a file is read once for both
/// its rows and its checksum.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub fn hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
