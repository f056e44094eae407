//! Parquet in and out of the store, and the partitioned layout
//! `<area>/<table>/dt=YYYY-MM-DD/part-0.parquet`.

use std::io::Cursor;
use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use polars::prelude::*;

use crate::sources::InputRecord;
use crate::store::Store;

pub const PART: &str = "part-0.parquet";

pub fn partition(area: &str, table: &str, date: NaiveDate) -> String {
    format!("{area}/{table}/dt={date}/")
}

pub fn to_parquet(df: &mut DataFrame) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .map_err(anyhow::Error::from)
        .context("encoding Parquet")?;
    Ok(buf)
}

/// Rows a chunked pass holds in memory at a time. Priced in memory, an order line
/// takes about 1 KB at the peak of its joins, so a chunk about 250 MB.
pub const CHUNK_ROWS: usize = 250_000;

/// A Parquet file written one frame at a time, by a pass that holds one chunk of its
/// rows in memory. Row-local plans (per-row expressions, joins against small tables)
/// run this way rather than on polars' streaming engine, which does not bound them:
/// in polars 0.55 its Parquet sink of the order-line joins peaked at 1.5 GB on 4M
/// lines that take 300 MB on disk, growing with the input.
pub struct ParquetChunks {
    path: PathBuf,
    compression: ParquetCompression,
    writer: Option<polars::io::parquet::write::BatchedWriter<std::io::BufWriter<std::fs::File>>>,
    rows: usize,
}

impl ParquetChunks {
    /// A table's file: zstd, like every output.
    pub fn create(path: &std::path::Path) -> ParquetChunks {
        ParquetChunks {
            path: path.to_path_buf(),
            compression: ParquetCompression::Zstd(None),
            writer: None,
            rows: 0,
        }
    }

    /// An intermediate file only sgml reads back (scratch chunks, map parts): LZ4,
    /// several times faster to write than zstd, for files about 1.5× larger.
    pub fn intermediate(path: &std::path::Path) -> ParquetChunks {
        ParquetChunks {
            compression: ParquetCompression::Lz4Raw,
            ..ParquetChunks::create(path)
        }
    }

    /// Appends a chunk (the first one fixes the schema; later ones must match it).
    pub fn write(&mut self, df: &DataFrame) -> anyhow::Result<()> {
        let context = || format!("writing {}", self.path.display());
        if self.writer.is_none() {
            let file = std::fs::File::create(&self.path).with_context(context)?;
            let writer = ParquetWriter::new(std::io::BufWriter::new(file))
                .with_compression(self.compression)
                .batched(df.schema())
                .map_err(anyhow::Error::from)
                .with_context(context)?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("created above");
        writer
            .write_batch(df)
            .map_err(anyhow::Error::from)
            .with_context(context)?;
        self.rows += df.height();
        Ok(())
    }

    /// Closes the file; returns its rows. At least one chunk (perhaps empty) must have
    /// been written, so the file has a schema.
    pub fn finish(self) -> anyhow::Result<usize> {
        let writer = self
            .writer
            .with_context(|| format!("{}: no chunk written", self.path.display()))?;
        writer
            .finish()
            .map_err(anyhow::Error::from)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(self.rows)
    }
}

/// Runs `transform` over `input` one slice of [`CHUNK_ROWS`] rows at a time into
/// `out`; returns the rows written. For row-local plans
/// over an input whose row count is known (`rows`).
pub fn sink_chunked(
    input: LazyFrame,
    rows: usize,
    transform: impl Fn(LazyFrame) -> LazyFrame,
    mut out: ParquetChunks,
) -> anyhow::Result<usize> {
    let mut offset = 0;
    loop {
        let slice = input.clone().slice(offset as i64, CHUNK_ROWS as IdxSize);
        out.write(&transform(slice).collect()?)?;
        offset += CHUNK_ROWS;
        if offset >= rows {
            break;
        }
    }
    out.finish()
}

/// Rows of local Parquet files, from their metadata.
pub fn files_rows(paths: &[PathBuf]) -> anyhow::Result<usize> {
    paths.iter().map(|p| parquet_rows(p)).sum()
}

/// Rows of a local Parquet file, from its metadata.
pub fn parquet_rows(path: &std::path::Path) -> anyhow::Result<usize> {
    let lf = LazyFrame::scan_parquet(PlRefPath::try_from_path(path)?, ScanArgsParquet::default())?;
    let n = lf.select([len()]).collect()?;
    Ok(n.column("len")?.u32()?.get(0).unwrap_or(0) as usize)
}

pub fn scan_local(path: &std::path::Path) -> anyhow::Result<LazyFrame> {
    Ok(LazyFrame::scan_parquet(
        PlRefPath::try_from_path(path)?,
        ScanArgsParquet::default(),
    )?)
}

pub fn from_parquet(bytes: Vec<u8>) -> PolarsResult<DataFrame> {
    decoding(|| ParquetReader::new(Cursor::new(bytes)).finish())
}

/// Runs a Parquet decode, turning a panic into an error. polars-parquet 0.55 panics on
/// some corrupt metadata (an `expect` on a thrift bool field, found by the fuzzer in
/// sources/fuzz.rs) where it should return an error; a corrupt input must fail its
/// step with the file's name, not abort the process.
pub fn decoding<T>(decode: impl FnOnce() -> PolarsResult<T>) -> PolarsResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|_| {
        Err(PolarsError::ComputeError(
            "the Parquet decoder failed on corrupt data".into(),
        ))
    })
}

/// Partitions of `<area>/<table>/` with their date, oldest first.
pub fn partitions(
    store: &dyn Store,
    area: &str,
    table: &str,
) -> anyhow::Result<Vec<(NaiveDate, String)>> {
    let prefix = format!("{area}/{table}/");
    let mut out = Vec::new();
    for key in store.list(&prefix)? {
        if !key.ends_with(".parquet") {
            continue;
        }
        let Some(dt) = key[prefix.len()..]
            .split('/')
            .next()
            .and_then(|p| p.strip_prefix("dt="))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        out.push((dt, key));
    }
    out.sort();
    Ok(out)
}

/// The checksum beside a committed part file: `<key>.sha256`, one line in
/// `sha256sum` format (so `sha256sum -c` checks a local store by hand). The run
/// manifest records the same digest; the file beside the part lets a reader find it
/// without searching every manifest.
pub fn checksum_key(key: &str) -> String {
    format!("{key}.sha256")
}

/// The body of [`checksum_key`] for `key`'s bytes.
pub fn checksum_line(key: &str, sha256: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    format!("{sha256}  {name}\n")
}

/// A stored part whose bytes are not the ones its run committed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{uri} does not match the checksum recorded when it was written (sha256 {found}, recorded {recorded}): \
     the file was changed or corrupted; re-run the step that wrote it (its run manifest under runs/ names it)"
)]
pub struct Corrupt {
    pub uri: String,
    pub found: String,
    pub recorded: String,
}

/// Checks a part's digest against the checksum committed beside it. A part written
/// before checksums were kept (none beside it) is used with a warning.
pub fn verify_part(store: &dyn Store, key: &str, found: &str) -> anyhow::Result<()> {
    let Some(line) = store.get(&checksum_key(key))? else {
        tracing::warn!(
            "{}: no checksum beside it (written by an older version); not verified",
            store.uri(key)
        );
        return Ok(());
    };
    let recorded = String::from_utf8_lossy(&line.bytes);
    let recorded = recorded.split_whitespace().next().unwrap_or_default();
    if recorded != found {
        return Err(Corrupt {
            uri: store.uri(key),
            found: found.to_string(),
            recorded: sgml_features::quote::brief(recorded),
        }
        .into());
    }
    Ok(())
}

/// A stored part's bytes, verified; `None` when the key is absent.
pub fn get_verified(store: &dyn Store, key: &str) -> anyhow::Result<Option<(Vec<u8>, String)>> {
    let Some(object) = store.get(key)? else {
        return Ok(None);
    };
    let sha256 = crate::store::sha256_hex(&object.bytes);
    verify_part(store, key, &sha256)?;
    Ok(Some((object.bytes, sha256)))
}

/// Lineage of a local Parquet object: checksum of its bytes (verified), rows from
/// its metadata.
fn local_record(store: &dyn Store, key: &str) -> anyhow::Result<InputRecord> {
    let path = store.local_path(key).expect("local store");
    let sha256 =
        crate::store::sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
    verify_part(store, key, &sha256)?;
    Ok(InputRecord {
        uri: store.uri(key),
        sha256,
        rows: parquet_rows(&path)?,
    })
}

/// A stored Parquet object as a local file, verified, with its lineage record: the
/// store's own file when the store is local, else a copy in `scratch` (so a large
/// object is scanned from disk rather than held in memory).
pub fn local_copy(
    store: &dyn Store,
    key: &str,
    scratch: &std::path::Path,
) -> anyhow::Result<(PathBuf, InputRecord)> {
    if let Some(path) = store.local_path(key) {
        return Ok((path, local_record(store, key)?));
    }
    let uri = store.uri(key);
    let (bytes, sha256) = get_verified(store, key)?.with_context(|| format!("{uri}: missing"))?;
    let path = scratch.join(crate::store::sha256_hex(key.as_bytes()) + ".parquet");
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    drop(bytes);
    Ok((
        path.clone(),
        InputRecord {
            uri,
            sha256,
            rows: parquet_rows(&path)?,
        },
    ))
}

/// Local Parquet files, in order, as one lazy frame (one multi-file scan, which
/// streams; a concat of scans would be buffered by the streaming engine).
pub fn scan_files(paths: Vec<PathBuf>) -> anyhow::Result<LazyFrame> {
    let paths = paths
        .into_iter()
        .map(PlRefPath::try_from_pathbuf)
        .collect::<PolarsResult<Vec<_>>>()?;
    // The store's keys look like Hive partitions (`dt=…/of=…/`): left to itself, a scan
    // of files in one such directory grows `dt` and `of` columns the tables do not have.
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(LazyFrame::scan_parquet_sources(
        ScanSources::Paths(paths.into_iter().collect()),
        args,
    )?)
}

/// One stored Parquet object as a lazy frame: scanned in place when the store is
/// local, loaded otherwise. Returns the lineage record with it.
pub fn scan(store: &dyn Store, key: &str) -> anyhow::Result<(LazyFrame, InputRecord)> {
    let uri = store.uri(key);
    if let Some(path) = store.local_path(key) {
        return Ok((scan_local(&path)?, local_record(store, key)?));
    }
    let (bytes, sha256) = get_verified(store, key)?.with_context(|| format!("{uri}: missing"))?;
    let df = from_parquet(bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("reading {uri}"))?;
    let rows = df.height();
    Ok((df.lazy(), InputRecord { uri, sha256, rows }))
}

/// Every partition of a table up to a date as one frame. A partition may hold several
/// part files; where partitions repeat a key (a full export re-ingested), the latest
/// partition's row wins.
pub fn read_table(
    store: &dyn Store,
    area: &str,
    table: &str,
    key: &[&str],
    up_to: Option<NaiveDate>,
    lineage: &mut Vec<InputRecord>,
) -> anyhow::Result<Option<LazyFrame>> {
    let parts: Vec<(NaiveDate, String)> = partitions(store, area, table)?
        .into_iter()
        .filter(|(d, _)| up_to.is_none_or(|u| *d <= u))
        .collect();
    let dates: std::collections::BTreeSet<NaiveDate> = parts.iter().map(|(d, _)| *d).collect();
    let local: Option<Vec<PathBuf>> = parts.iter().map(|(_, k)| store.local_path(k)).collect();
    let all = match local {
        // One multi-file scan streams; a concat of many scans makes the streaming
        // engine buffer each of them in memory first.
        Some(paths) if !paths.is_empty() => {
            for (_, k) in &parts {
                lineage.push(local_record(store, k)?);
            }
            scan_files(paths)?
        }
        _ => {
            let mut frames = Vec::new();
            for (_, k) in &parts {
                let (lf, record) = scan(store, k)?;
                lineage.push(record);
                frames.push(lf);
            }
            match frames.len() {
                0 => return Ok(None),
                1 => frames.pop().expect("one frame"),
                _ => concat(frames, UnionArgs::default())?,
            }
        }
    };
    if dates.len() < 2 {
        return Ok(Some(all));
    }
    let key: Vec<Expr> = key.iter().map(|k| col(*k)).collect();
    Ok(Some(all.unique_stable_generic(
        Some(key),
        UniqueKeepStrategy::Last,
    )))
}
