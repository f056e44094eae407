//! File inputs: a directory with one file per contract table, explicit files named
//! after their table, or any files read through a mapping.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use polars::prelude::*;
use sgml_features::Table;
use sgml_features::validate::RawTable;

use super::{BoxError, ChunkSink, HashingReader, InputRecord, SourceError};
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
    sink: &mut ChunkSink,
) -> Result<Vec<InputRecord>, SourceError> {
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
                            Some(acc) => acc
                                .append(chunk)
                                .map_err(|e| Box::new(SourceError::Input(e)) as BoxError)?,
                            None => whole = Some(chunk),
                        }
                        Ok(())
                    },
                    Table::Orders,
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
                records.push(read_file(&file, sink, table)?);
            }
        }
    }
    Ok(records)
}

fn data_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SourceError::Input(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && extension(p).is_some())
        .collect();
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

/// Streams one file into `sink` as `table` chunks and records its checksum.
pub fn read_file(
    path: &Path,
    sink: &mut ChunkSink,
    table: Table,
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
                _ => Box::new(MultiGzDecoder::new(&mut hashing)),
            };
            let mut chunks = super::CsvChunks::new(&source, reader)?;
            while let Some(chunk) = chunks.next_chunk(super::chunk_rows())? {
                emit(chunk)?;
            }
        }
        ".jsonl" | ".ndjson" => emit(super::read_jsonl(&source, &mut hashing)?)?,
        ".jsonl.gz" => emit(super::read_jsonl(
            &source,
            MultiGzDecoder::new(&mut hashing),
        )?)?,
        ".parquet" => {
            let mut bytes = Vec::new();
            hashing.read_to_end(&mut bytes).map_err(io_err)?;
            emit(read_parquet(&source, bytes)?)?;
        }
        _ => unreachable!("extension listed"),
    }
    // Drain what a reader left unread (a gzip trailer) so the checksum covers the file.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io_err)?;
    Ok(InputRecord {
        uri: source,
        sha256: hashing.hex(),
        rows,
    })
}

fn read_parquet(source: &str, bytes: Vec<u8>) -> Result<RawTable, SourceError> {
    let unreadable = |e: PolarsError| SourceError::Unreadable {
        file: source.to_string(),
        message: format!("not readable as Parquet: {e}"),
    };
    let df = ParquetReader::new(std::io::Cursor::new(bytes))
        .finish()
        .map_err(unreadable)?;
    let columns: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut table = RawTable::new(source, columns);
    let text: Vec<StringChunked> = df
        .columns()
        .iter()
        .map(|c| c.cast(&DataType::String).and_then(|c| c.str().cloned()))
        .collect::<PolarsResult<_>>()
        .map_err(unreadable)?;
    for (col, cells) in text.iter().zip(table.cells.iter_mut()) {
        cells.extend(col.iter().map(|v| v.map(str::to_string)));
    }
    table.source_rows = (1..=df.height() as u64).collect();
    Ok(table)
}

/// Files of one mapped export, one after another; row numbers continue across files.
fn concat_files(mut acc: RawTable, next: RawTable) -> Result<RawTable, SourceError> {
    if acc.columns != next.columns {
        return Err(SourceError::Unreadable {
            file: next.source.clone(),
            message: format!(
                "columns differ from {}: expected {}, found {}",
                acc.source,
                acc.columns.join(","),
                next.columns.join(",")
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
    Ok(acc)
}
