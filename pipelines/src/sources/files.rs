//! File inputs: a directory with one file per contract table, explicit files named
//! after their table, or any files read through a mapping.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use sgml_features::validate::RawTable;
use sgml_features::{Table, quote};

use super::{Capped, ChunkSink, HashingReader, InputRecord, SourceError, SourceOptions};
use crate::mapping::Mapping;

const EXTENSIONS: &[&str] = &[
    ".csv.gz",
    ".csv",
    ".parquet",
    ".jsonl.gz",
    ".jsonl",
    ".ndjson",
];

pub fn load(
    inputs: &[String],
    mapping: Option<&Mapping>,
    opts: &SourceOptions,
    sink: &mut ChunkSink,
) -> Result<Vec<InputRecord>, SourceError> {
    let limit = opts.max_decompressed_bytes;
    let mut files: Vec<PathBuf> = Vec::new();
    for input in inputs {
        let path = PathBuf::from(input);
        if path.is_dir() {
            files.extend(data_files(&path)?);
        } else if path.is_file() {
            files.push(path);
        } else {
            return Err(SourceError::Input(format!(
                "{input}: no such file or directory"
            )));
        }
    }
    if files.is_empty() {
        return Err(SourceError::Input(format!(
            "{}: no data files (expected files named after tables, such as orders.csv, orders.csv.gz, orders.parquet or orders.jsonl)",
            inputs.join(", ")
        )));
    }
    let mut records = Vec::new();
    match mapping {
        Some(mapping) => {
            // A mapped export may be split over several files (one per day, say):
            // they are read in name order as one table, whole, because a mapping can
            // derive tables (distinct products) and positions across all rows.
            let mut export: Option<RawTable> = None;
            for file in &files {
                let mut whole: Option<RawTable> = None;
                let record = read_file(
                    file,
                    &mut |_, chunk| {
                        match whole.as_mut() {
                            Some(acc) => acc.append(chunk),
                            None => whole = Some(chunk),
                        }
                        Ok(())
                    },
                    Table::Orders,
                    limit,
                )?;
                records.push(record);
                let table = whole.expect("a file yields at least one chunk");
                export = Some(match export {
                    None => table,
                    Some(acc) => concat_files(acc, table)?,
                });
            }
            let mut tables = mapping
                .apply(&export.expect("at least one file"))
                .map_err(|e| SourceError::Input(e.to_string()))?;
            tables.sort_by_key(|(t, _)| super::ingest_order(t));
            for (table, raw) in tables {
                sink(table, raw).map_err(SourceError::Sink)?;
            }
        }
        None => {
            let mut by_table: Vec<(Table, PathBuf)> = Vec::new();
            for file in files {
                let table = table_of(&file).ok_or_else(|| {
                    SourceError::Input(format!(
                        "{}: the name is not a contract table ({}); name files after their table or pass --mapping",
                        file.display(),
                        Table::ALL.map(|t| t.name()).join(", ")
                    ))
                })?;
                if let Some((_, first)) = by_table.iter().find(|(t, _)| *t == table) {
                    return Err(SourceError::Input(format!(
                        "two inputs for table {table} ({} and {}); give one file per table",
                        first.display(),
                        file.display()
                    )));
                }
                by_table.push((table, file));
            }
            by_table.sort_by_key(|(t, _)| super::ingest_order(t));
            for (table, file) in by_table {
                records.push(read_file(&file, sink, table, limit)?);
            }
        }
    }
    Ok(records)
}

/// The data files of an input directory, in name order. A symbolic link is followed
/// only when it stays inside the directory: a link planted in an export directory must
/// not make ingest read (and quote) a file elsewhere on the machine.
fn data_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let failed = |e: std::io::Error| SourceError::Input(format!("{}: {e}", dir.display()));
    let root = dir.canonicalize().map_err(failed)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let path = entry.map_err(failed)?.path();
        if extension(&path).is_none() {
            continue;
        }
        let is_link = path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            let inside = path
                .canonicalize()
                .is_ok_and(|target| target.starts_with(&root));
            if !inside {
                return Err(SourceError::Unreadable {
                    file: path.display().to_string(),
                    message: format!(
                        "a symbolic link that leaves the input directory {}: refused (copy the file in, or name it as an input)",
                        dir.display()
                    ),
                });
            }
        }
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn extension(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    EXTENSIONS.iter().copied().find(|ext| name.ends_with(ext))
}

fn table_of(path: &Path) -> Option<Table> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(extension(path)?)?;
    Table::from_name(stem)
}

/// Streams one file into `sink` as `table` chunks and records its checksum. A
/// compressed file (gzip, or Parquet's pages) may expand to at most
/// `max_decompressed` bytes.
pub fn read_file(
    path: &Path,
    sink: &mut ChunkSink,
    table: Table,
    max_decompressed: u64,
) -> Result<InputRecord, SourceError> {
    let source = path.display().to_string();
    let io_err = |e: std::io::Error| SourceError::Unreadable {
        file: source.clone(),
        message: e.to_string(),
    };
    let ext = extension(path).ok_or_else(|| SourceError::Unreadable {
        file: source.clone(),
        message: format!(
            "unknown file type: expected one of {}",
            EXTENSIONS.join(", ")
        ),
    })?;
    let file = File::open(path).map_err(io_err)?;
    let mut hashing = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let mut rows = 0usize;
    let mut emit = |chunk: RawTable| {
        rows += chunk.rows_in();
        sink(table, chunk).map_err(SourceError::Sink)
    };
    match ext {
        ".csv" | ".csv.gz" => {
            let reader: Box<dyn Read + '_> = match ext {
                ".csv" => Box::new(&mut hashing),
                _ => Box::new(Capped::new(
                    MultiGzDecoder::new(&mut hashing),
                    max_decompressed,
                )),
            };
            let mut chunks = super::CsvChunks::new(&source, reader)?;
            while let Some(chunk) = chunks.next_chunk(super::chunk_rows())? {
                emit(chunk)?;
            }
        }
        ".jsonl" | ".ndjson" | ".jsonl.gz" => {
            let reader: Box<dyn Read + '_> = match ext {
                ".jsonl.gz" => Box::new(Capped::new(
                    MultiGzDecoder::new(&mut hashing),
                    max_decompressed,
                )),
                _ => Box::new(&mut hashing),
            };
            let mut chunks =
                super::JsonlChunks::new(&source, BufReader::with_capacity(1 << 16, reader));
            while let Some(chunk) = chunks.next_chunk(super::chunk_rows())? {
                emit(chunk)?;
            }
        }
        ".parquet" => {
            // polars scans the file by its own handle, a chunk of rows at a time;
            // the checksum is the drain below, a streaming pass beside decoding.
            super::parquet::read(
                path,
                &source,
                super::chunk_rows(),
                max_decompressed,
                &mut emit,
            )?;
        }
        _ => unreachable!("extension listed"),
    }
    // Drain what a reader left unread (a gzip trailer, or all of a Parquet file) so
    // the checksum covers the file.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io_err)?;
    Ok(InputRecord {
        uri: source,
        sha256: hashing.hex(),
        rows,
    })
}

/// Files of one mapped export, one after another; row numbers continue across files.
fn concat_files(mut acc: RawTable, next: RawTable) -> Result<RawTable, SourceError> {
    if acc.columns != next.columns {
        return Err(SourceError::Unreadable {
            file: next.source.clone(),
            message: format!(
                "columns differ from {}: expected {}, found {}",
                acc.source,
                quote::list(&acc.columns, ","),
                quote::list(&next.columns, ",")
            ),
        });
    }
    let offset = acc.source_rows.last().copied().unwrap_or(0);
    for (a, b) in acc.cells.iter_mut().zip(next.cells) {
        a.extend(b);
    }
    acc.source_rows
        .extend(next.source_rows.iter().map(|r| r + offset));
    acc.malformed
        .extend(next.malformed.into_iter().map(|mut m| {
            m.source_row += offset;
            m
        }));
    acc.not_utf8.extend(next.not_utf8.into_iter().map(|mut m| {
        m.source_row += offset;
        m
    }));
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use polars::prelude::*;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    /// A small gzip that expands past the limit is refused by type, naming the file
    /// and the limit, CSV and JSON lines alike.
    #[test]
    fn decompression_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = b"order_id,note\n".to_vec();
        csv.extend(
            std::iter::repeat_n(b"1,aaaaaaaaaaaaaaaaaaaa\n".iter().copied(), 50_000).flatten(),
        );
        let mut jsonl = Vec::new();
        jsonl.extend(std::iter::repeat_n(b"{\"order_id\": 1}\n".iter().copied(), 50_000).flatten());
        for (name, bytes) in [("orders.csv.gz", csv), ("orders.jsonl.gz", jsonl)] {
            let path = dir.path().join(name);
            std::fs::write(&path, gzip(&bytes)).unwrap();
            let err = read_file(&path, &mut |_, _| Ok(()), Table::Orders, 100_000).unwrap_err();
            match &err {
                SourceError::TooLarge { file, limit } => {
                    assert!(file.ends_with(name));
                    assert_eq!(*limit, 100_000);
                }
                other => panic!("{name}: {other}"),
            }
            assert!(err.to_string().contains("--max-decompressed-bytes"));
            // Under a limit it fits, the same file reads.
            let record = read_file(&path, &mut |_, _| Ok(()), Table::Orders, 10 << 20).unwrap();
            assert_eq!(record.rows, 50_000);
        }
    }

    /// A Parquet file's record counts its rows and checksums the whole file.
    #[test]
    fn parquet_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.parquet");
        let mut df = df!("order_id" => (0..25i64).collect::<Vec<_>>()).unwrap();
        std::fs::write(&path, crate::io::to_parquet(&mut df).unwrap()).unwrap();
        let record = read_file(&path, &mut |_, _| Ok(()), Table::Orders, 1 << 20).unwrap();
        assert_eq!(record.rows, 25);
        assert_eq!(
            record.sha256,
            crate::store::sha256_hex(&std::fs::read(&path).unwrap())
        );
    }
}
