//! Readers that turn CSV and JSON-lines bytes into a [`RawTable`] of text cells.
//!
//! A file that cannot be read as a table at all (empty, binary, wrong delimiter,
//! truncated compression) is an error naming the file; a single row that cannot be
//! split into the header's cells is recorded as malformed and goes to quarantine.

use std::io::Read;

use sgml_features::validate::{Malformed, RawTable};

use super::SourceError;

/// Reads a comma-separated table with a header row from any byte stream, whole.
pub fn read_csv(source: &str, reader: impl Read) -> Result<RawTable, SourceError> {
    let mut chunks = CsvChunks::new(source, reader)?;
    Ok(chunks
        .next_chunk(usize::MAX)?
        .expect("the first chunk always exists"))
}

/// A CSV stream read a bounded number of rows at a time.
pub struct CsvChunks<R: Read> {
    csv: csv::Reader<R>,
    source: String,
    columns: Vec<String>,
    row: u64,
    started: bool,
    done: bool,
}

impl<R: Read> CsvChunks<R> {
    /// Reads and checks the header.
    pub fn new(source: &str, reader: R) -> Result<CsvChunks<R>, SourceError> {
        let mut csv = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(reader);
        let header = csv
            .byte_headers()
            .map_err(|e| csv_error(source, 1, e))?
            .clone();
        let columns = header_columns(source, &header)?;
        Ok(CsvChunks {
            csv,
            source: source.to_string(),
            columns,
            row: 0,
            started: false,
            done: false,
        })
    }

    /// Up to `max_rows` rows. The first call always returns a table (maybe empty,
    /// so a header-only file still counts as the table); then `None` at the end.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<RawTable>, SourceError> {
        if self.done && self.started {
            return Ok(None);
        }
        self.started = true;
        let mut table = RawTable::new(self.source.clone(), self.columns.clone());
        let width = table.columns.len();
        let mut record = csv::ByteRecord::new();
        while table.rows_in() < max_rows {
            match self.csv.read_byte_record(&mut record) {
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Ok(true) => {
                    self.row += 1;
                    if record.len() != width {
                        table.malformed.push(Malformed {
                            source_row: self.row,
                            rule: "csv.field_count".into(),
                            detail: format!("{} fields, the header has {width}", record.len()),
                        });
                        continue;
                    }
                    table.push_row(self.row, record.iter().map(cell));
                }
                Err(e) => return Err(csv_error(&self.source, self.row + 2, e)),
            }
        }
        Ok(Some(table))
    }
}

/// Text of a cell: empty is null; bytes that are not UTF-8 become U+FFFD, which the
/// validator rejects under the column's `utf8` rule (the row is kept, not dropped).
fn cell(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

fn csv_error(source: &str, line: u64, e: csv::Error) -> SourceError {
    let message = match e.kind() {
        csv::ErrorKind::Io(io) => {
            format!("read failed near line {line}: {io} (truncated or corrupt file?)")
        }
        _ => format!("not readable as CSV near line {line}: {e}"),
    };
    SourceError::Unreadable {
        file: source.to_string(),
        message,
    }
}

fn header_columns(source: &str, header: &csv::ByteRecord) -> Result<Vec<String>, SourceError> {
    let unreadable = |message: String| SourceError::Unreadable {
        file: source.to_string(),
        message,
    };
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(unreadable(
            "the file is empty: expected a header row of column names".into(),
        ));
    }
    let mut columns = Vec::with_capacity(header.len());
    for field in header {
        let name = std::str::from_utf8(field)
            .ok()
            .filter(|s| s.chars().all(|c| !c.is_control() || c == '\t'))
            .ok_or_else(|| {
                unreadable("the header is not text (binary or compressed data?): expected comma-separated column names".into())
            })?;
        columns.push(name.trim().trim_start_matches('\u{feff}').to_string());
    }
    if columns.len() == 1 {
        let only = &columns[0];
        if let Some(sep) = [';', '\t', '|'].into_iter().find(|s| only.contains(*s)) {
            return Err(unreadable(format!(
                "the header is one column `{only}`: the file looks {}-delimited, expected comma-separated",
                match sep {
                    '\t' => "tab".to_string(),
                    s => format!("`{s}`"),
                }
            )));
        }
    }
    Ok(columns)
}

/// Reads JSON lines: one object per line; values become text (numbers as written).
pub fn read_jsonl(source: &str, reader: impl Read) -> Result<RawTable, SourceError> {
    let mut text = String::new();
    let mut bytes = Vec::new();
    let mut reader = reader;
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| SourceError::Unreadable {
            file: source.into(),
            message: format!("read failed: {e} (truncated or corrupt file?)"),
        })?;
    text.push_str(&String::from_utf8_lossy(&bytes));
    let mut columns: Vec<String> = Vec::new();
    // (source row, (column index, value)) as keys appear, filled out to full rows below.
    type SparseRow = (u64, Vec<(usize, Option<String>)>);
    let mut rows: Vec<SparseRow> = Vec::new();
    let mut malformed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line) {
            Ok(obj) => {
                let cells = obj
                    .into_iter()
                    .map(|(k, v)| {
                        let idx = columns.iter().position(|c| *c == k).unwrap_or_else(|| {
                            columns.push(k);
                            columns.len() - 1
                        });
                        let v = match v {
                            serde_json::Value::Null => None,
                            serde_json::Value::String(s) => Some(s),
                            other => Some(other.to_string()),
                        };
                        (idx, v)
                    })
                    .collect();
                rows.push((row, cells));
            }
            Err(e) => malformed.push(Malformed {
                source_row: row,
                rule: "json.parse".into(),
                detail: format!("not a JSON object: {e}"),
            }),
        }
    }
    if rows.is_empty() && malformed.is_empty() {
        return Err(SourceError::Unreadable {
            file: source.into(),
            message: "the file is empty: expected one JSON object per line".into(),
        });
    }
    if rows.is_empty() {
        return Err(SourceError::Unreadable {
            file: source.into(),
            message: "no line is a JSON object: expected one JSON object per line".into(),
        });
    }
    let mut table = RawTable::new(source, columns);
    let width = table.columns.len();
    for (row, cells) in rows {
        let mut full = vec![None; width];
        for (i, v) in cells {
            full[i] = v;
        }
        table.push_row(row, full);
    }
    table.malformed = malformed;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_rows_and_bad_utf8_are_kept_for_quarantine() {
        let data = b"a,b\n1,2\n3\n4,\xff\xfe\n";
        let t = read_csv("t.csv", &data[..]).unwrap();
        assert_eq!(t.height(), 2);
        assert_eq!(t.malformed.len(), 1);
        assert_eq!(t.malformed[0].source_row, 2);
        assert!(t.cells[1][1].as_deref().unwrap().contains('\u{FFFD}'));
        assert_eq!(t.rows_in(), 3);
    }

    #[test]
    fn unreadable_files_are_named_errors() {
        for (data, want) in [
            (&b""[..], "empty"),
            (b"a;b;c\n1;2;3\n", "`;`-delimited"),
            (b"\x1f\x8b\x08\x00\x00\x00garbage\x00\x01", "not text"),
        ] {
            let err = read_csv("orders.csv", data).unwrap_err().to_string();
            assert!(err.contains("orders.csv") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn jsonl_union_of_keys() {
        let data = b"{\"a\": 1, \"b\": \"x\"}\n{\"c\": null, \"a\": 2}\nnot json\n";
        let t = read_jsonl("t.jsonl", &data[..]).unwrap();
        assert_eq!(t.columns, vec!["a", "b", "c"]);
        assert_eq!(t.cells[0], vec![Some("1".into()), Some("2".into())]);
        assert_eq!(t.malformed.len(), 1);
    }
}
