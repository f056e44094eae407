//! Parquet inputs: read a chunk of rows at a time, after checking that the file's
//! metadata and page headers describe a file polars can decode without trusting
//! them.
//!
//! polars-parquet 0.55 trusts what a file claims. The fuzzer in fuzz.rs found three
//! ways a corrupt file takes the process down: an `expect` in the metadata decoder
//! (a panic, caught by [`crate::io::decoding`]), byte ranges it slices without
//! bounds checks, and page headers whose sizes and value counts it allocates for
//! before reading a byte (2^61 bytes seen: an allocation failure aborts the process,
//! which nothing in-process can catch). [`check`] refuses the last two before
//! polars opens the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use polars::prelude::*;
use polars_parquet_format::thrift::protocol::TCompactInputProtocol;
use polars_parquet_format::{PageHeader, PageType};
use sgml_features::quote;
use sgml_features::validate::RawTable;

use super::SourceError;

/// The largest page a file may declare, compressed or not. Writers cut pages near
/// 1 MiB (arrow, pyarrow, polars, Spark); a thousand times that is corruption, not
/// data, and no allocation on its behalf may exceed it.
pub const MAX_PAGE_BYTES: u64 = 1 << 30;

/// The most values one page may declare. Writers cap pages at tens of thousands of
/// rows; polars decodes a page into buffers sized by this count (up to 16 bytes a
/// value), so it bounds those buffers to 1 GiB.
pub const MAX_PAGE_VALUES: u64 = 1 << 26;

/// Reads a Parquet file a chunk of rows at a time (each slice decodes only the row
/// groups it needs), every column as text. The file is checked first ([`check`]);
/// its pages may expand to at most `max_decompressed` bytes.
pub fn read(
    path: &Path,
    source: &str,
    chunk_rows: usize,
    max_decompressed: u64,
    emit: &mut dyn FnMut(RawTable) -> Result<(), SourceError>,
) -> Result<(), SourceError> {
    let unreadable = |e: PolarsError| SourceError::Unreadable {
        file: source.to_string(),
        message: quote::brief(&format!("not readable as Parquet: {e}")),
    };
    let total = check(path, source, max_decompressed)?;
    let scan = || -> PolarsResult<LazyFrame> {
        LazyFrame::scan_parquet(PlRefPath::try_from_path(path)?, ScanArgsParquet::default())
    };
    let step = chunk_rows.max(1) as u64;
    let mut offset = 0u64;
    loop {
        let df = crate::io::decoding(|| scan()?.slice(offset as i64, step as IdxSize).collect())
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
        table.source_rows = (offset + 1..=offset + df.height() as u64).collect();
        offset += df.height() as u64;
        emit(table)?;
        if offset >= total || df.height() == 0 {
            return Ok(());
        }
    }
}

/// Checks a Parquet file before polars decodes it and returns its row count:
/// every byte range the metadata claims lies inside the file, the row groups add up
/// to the file's rows, and every page header (read one column chunk at a time)
/// declares sizes and counts within [`MAX_PAGE_BYTES`] and [`MAX_PAGE_VALUES`], no
/// more values than its row group has rows (flat columns), and in all no more than
/// `max_decompressed` bytes once decompressed.
pub fn check(path: &Path, source: &str, max_decompressed: u64) -> Result<u64, SourceError> {
    let refuse = |message: String| SourceError::Unreadable {
        file: source.to_string(),
        message: quote::brief(&format!("not readable as Parquet: {message}")),
    };
    let mut file = File::open(path).map_err(|e| refuse(e.to_string()))?;
    let len = file.metadata().map_err(|e| refuse(e.to_string()))?.len();
    let metadata = crate::io::decoding(|| {
        Ok(ParquetReader::new(file.try_clone()?)
            .get_metadata()?
            .clone())
    })
    .map_err(|e| refuse(e.to_string()))?;
    let group_rows: u64 = metadata
        .row_groups
        .iter()
        .map(|g| g.num_rows() as u64)
        .sum();
    if group_rows != metadata.num_rows as u64 {
        return Err(refuse(format!(
            "the row groups hold {group_rows} rows but the file claims {} (corrupt)",
            metadata.num_rows
        )));
    }
    let mut expanded = 0u64;
    for (g, group) in metadata.row_groups.iter().enumerate() {
        let ranges = std::iter::once(group.full_byte_range()).chain(group.byte_ranges_iter());
        for range in ranges {
            if range.start > range.end || range.end > len {
                return Err(refuse(format!(
                    "row group {g} claims bytes {}..{} of a {len}-byte file (corrupt or truncated)",
                    range.start, range.end
                )));
            }
        }
        for column in group.parquet_columns() {
            let range = column.byte_range();
            let mut bytes = vec![0u8; (range.end - range.start) as usize];
            file.seek(SeekFrom::Start(range.start))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| refuse(e.to_string()))?;
            let flat = column.descriptor().descriptor.max_rep_level == 0;
            let name = column.descriptor().path_in_schema.join(".");
            let declared = u64::try_from(column.num_values()).unwrap_or(0);
            let pages = PageSizes::of(&bytes, declared)
                .map_err(|e| refuse(format!("row group {g}, column {name}: page headers: {e}")))?;
            let mut values = 0u64;
            for page in &pages {
                let limit = |what: &str, n: u64, max: u64| {
                    if n > max {
                        Err(refuse(format!(
                            "row group {g}, column {name}: a page declares {n} {what} (more than {max}: corrupt)"
                        )))
                    } else {
                        Ok(())
                    }
                };
                limit("bytes", page.uncompressed, MAX_PAGE_BYTES)?;
                limit("values", page.values, MAX_PAGE_VALUES)?;
                if page.dictionary {
                    // A dictionary value takes at least a byte; the reader sizes a
                    // buffer by the count before it decompresses.
                    limit("dictionary values", page.values, page.uncompressed)?;
                } else {
                    values += page.values;
                }
                expanded += page.uncompressed;
                if expanded > max_decompressed {
                    return Err(SourceError::TooLarge {
                        file: source.to_string(),
                        limit: max_decompressed,
                    });
                }
            }
            if flat && values != group.num_rows() as u64 {
                return Err(refuse(format!(
                    "row group {g}, column {name}: pages hold {values} values for {} rows (corrupt)",
                    group.num_rows()
                )));
            }
        }
    }
    Ok(metadata.num_rows as u64)
}

/// What one page header declares.
struct PageSizes {
    dictionary: bool,
    uncompressed: u64,
    values: u64,
}

impl PageSizes {
    /// The headers of a column chunk's pages, read with polars' own thrift decoder
    /// (bounded by the chunk's length) without decompressing any page, until the
    /// pages hold the chunk's `num_values` (where polars stops reading too).
    fn of(chunk: &[u8], num_values: u64) -> Result<Vec<PageSizes>, String> {
        let mut pages = Vec::new();
        let (mut at, mut seen) = (0usize, 0u64);
        while seen < num_values {
            if at >= chunk.len() {
                return Err(format!(
                    "the pages end after {seen} of the column's {num_values} values"
                ));
            }
            let mut cursor = std::io::Cursor::new(&chunk[at..]);
            let header = PageHeader::read_from_in_protocol(&mut TCompactInputProtocol::new(
                &mut cursor,
                chunk.len() - at,
            ))
            .map_err(|e| e.to_string())?;
            let compressed = usize::try_from(header.compressed_page_size)
                .map_err(|_| "a negative compressed size".to_string())?;
            let uncompressed = u64::try_from(header.uncompressed_page_size)
                .map_err(|_| "a negative uncompressed size".to_string())?;
            at = at
                .checked_add(cursor.position() as usize)
                .and_then(|a| a.checked_add(compressed))
                .filter(|end| *end <= chunk.len())
                .ok_or("a page runs past its column chunk")?;
            let (dictionary, values) = match header.type_ {
                PageType::DICTIONARY_PAGE => {
                    (true, header.dictionary_page_header.map(|h| h.num_values))
                }
                PageType::DATA_PAGE => (false, header.data_page_header.map(|h| h.num_values)),
                PageType::DATA_PAGE_V2 => (false, header.data_page_header_v2.map(|h| h.num_values)),
                // Index pages hold no values; polars skips them.
                _ => (false, Some(0)),
            };
            let values = values
                .ok_or("a page header without its type's header")
                .and_then(|v| u64::try_from(v).map_err(|_| "a negative value count"))?;
            if !dictionary {
                seen = seen.saturating_add(values);
            }
            pages.push(PageSizes {
                dictionary,
                uncompressed,
                values,
            });
        }
        Ok(pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, df: &mut DataFrame) -> std::path::PathBuf {
        let path = dir.join("orders.parquet");
        std::fs::write(&path, crate::io::to_parquet(df).unwrap()).unwrap();
        path
    }

    /// Parquet is read in chunks of rows, numbered on from chunk to chunk.
    #[test]
    fn parquet_is_read_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut df = df!("order_id" => (0..25i64).collect::<Vec<_>>()).unwrap();
        let path = write(dir.path(), &mut df);
        let mut chunks = Vec::new();
        read(&path, "orders.parquet", 10, u64::MAX, &mut |t| {
            chunks.push(t.source_rows.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2], (21..=25).collect::<Vec<u64>>());
    }

    /// Pages that expand past the limit are refused by type before any is decoded.
    #[test]
    fn expansion_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        // Distinct values: repeats would be dictionary-encoded into a few bytes.
        let notes: Vec<String> = (0..10_000).map(|i| format!("{i:0100}")).collect();
        let mut df = df!("note" => notes).unwrap();
        let path = write(dir.path(), &mut df);
        assert_eq!(check(&path, "orders.parquet", 10 << 20).unwrap(), 10_000);
        let e = check(&path, "orders.parquet", 1000).unwrap_err();
        assert!(
            matches!(&e, SourceError::TooLarge { file, limit: 1000 } if file == "orders.parquet"),
            "{e}"
        );
    }

    /// A page header that claims more values than its row group has rows (the
    /// field a corrupt file inflates to make the reader allocate) is refused by name.
    #[test]
    fn an_inflated_page_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut df = df!("quantity" => (0..1000i64).collect::<Vec<_>>()).unwrap();
        let mut bytes = crate::io::to_parquet(&mut df).unwrap();
        // A page header's num_values is a zigzag varint of 1000 (0xd0 0x0f): the
        // dictionary page's comes first, the data page's second; raise that one in
        // place to 0xd2 0x0f (1001).
        let at = bytes
            .windows(2)
            .enumerate()
            .filter(|(_, w)| *w == [0xd0, 0x0f])
            .map(|(i, _)| i)
            .nth(1)
            .expect("the data page header's value count");
        bytes[at] = 0xd2;
        let path = dir.path().join("orders.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let e = check(&path, "orders.parquet", u64::MAX).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("orders.parquet: ") && text.contains("column quantity"),
            "{text}"
        );
    }
}
