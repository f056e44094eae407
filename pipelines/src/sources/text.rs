//! Readers that turn CSV and JSON-lines bytes into a [`RawTable`] of text cells.
//!
//! A file that cannot be read as a table at all (empty, binary, wrong delimiter,
//! truncated compression) is an error naming the file; a single row that cannot be
//! split into the header's cells is recorded as malformed and goes to quarantine.

use std::io::{BufRead, Read};

use sgml_features::quote;
use sgml_features::validate::{Malformed, NotUtf8, RawTable};

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
                    for (bytes, column) in record.iter().zip(&self.columns) {
                        if std::str::from_utf8(bytes).is_err() {
                            table.not_utf8.push(NotUtf8 {
                                source_row: self.row,
                                column: column.clone(),
                            });
                        }
                    }
                    table.push_row(self.row, record.iter().map(cell));
                }
                Err(e) => return Err(csv_error(&self.source, self.row + 2, e)),
            }
        }
        Ok(Some(table))
    }
}

/// Text of a cell: empty is null; bytes that are not UTF-8 become U+FFFD (the reader
/// lists the cell in `not_utf8`: the validator rejects the row under the column's
/// `utf8` rule, and quarantine keeps it whole).
fn cell(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

fn csv_error(source: &str, line: u64, e: csv::Error) -> SourceError {
    let message = match e.kind() {
        csv::ErrorKind::Io(io) => match super::over_limit(io) {
            Some(limit) => {
                return SourceError::TooLarge {
                    file: source.to_string(),
                    limit,
                };
            }
            None => format!("read failed near line {line}: {io} (truncated or corrupt file?)"),
        },
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
                "the header is one column `{}`: the file looks {}-delimited, expected comma-separated",
                quote::brief(only),
                match sep {
                    '\t' => "tab".to_string(),
                    s => format!("`{s}`"),
                }
            )));
        }
    }
    Ok(columns)
}

/// Reads a JSON-lines stream whole (tests and small inputs; ingest streams with
/// [`JsonlChunks`]).
pub fn read_jsonl(source: &str, reader: impl Read) -> Result<RawTable, SourceError> {
    let mut chunks = JsonlChunks::new(source, std::io::BufReader::new(reader));
    let mut table = chunks
        .next_chunk(usize::MAX)?
        .expect("the first chunk always exists");
    while let Some(more) = chunks.next_chunk(usize::MAX)? {
        table.append(more);
    }
    Ok(table)
}

/// The longest JSON line read; a longer one is quarantined as malformed without
/// being held whole.
pub const MAX_JSON_LINE_BYTES: usize = 4 << 20;

/// A JSON-lines stream read a bounded number of lines at a time: one object per line,
/// values as text (numbers as written). A chunk's columns are the keys its lines use.
pub struct JsonlChunks<R: BufRead> {
    reader: R,
    source: String,
    line: u64,
    objects: usize,
    /// Whether a chunk has been returned (the first call always returns one).
    returned: bool,
    started: bool,
    done: bool,
}

impl<R: BufRead> JsonlChunks<R> {
    pub fn new(source: &str, reader: R) -> JsonlChunks<R> {
        JsonlChunks {
            reader,
            source: source.to_string(),
            line: 0,
            objects: 0,
            returned: false,
            started: false,
            done: false,
        }
    }

    fn unreadable(&self, message: String) -> SourceError {
        SourceError::Unreadable {
            file: self.source.clone(),
            message,
        }
    }

    /// Up to `max_rows` lines. The first call always returns a table; then `None` at
    /// the end. A stream with no JSON object at all is an error.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<RawTable>, SourceError> {
        if self.done && self.started {
            return Ok(None);
        }
        self.started = true;
        let mut columns: Vec<String> = Vec::new();
        // (source row, (column index, value)) as keys appear, filled out to full rows below.
        type SparseRow = (u64, Vec<(usize, Option<String>)>);
        let mut rows: Vec<SparseRow> = Vec::new();
        let mut malformed = Vec::new();
        let mut not_utf8 = Vec::new();
        let mut buf = Vec::new();
        while rows.len() + malformed.len() < max_rows {
            buf.clear();
            let complete = match read_line(&mut self.reader, &mut buf, MAX_JSON_LINE_BYTES) {
                Ok(Some(complete)) => complete,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => return Err(io_error(&self.source, self.line + 1, e)),
            };
            self.line += 1;
            let row = self.line;
            if !complete {
                malformed.push(Malformed {
                    source_row: row,
                    rule: "json.length".into(),
                    detail: format!("a line longer than {MAX_JSON_LINE_BYTES} bytes"),
                });
                continue;
            }
            let (text, valid) = match std::str::from_utf8(&buf) {
                Ok(t) => (std::borrow::Cow::Borrowed(t), true),
                Err(_) => (String::from_utf8_lossy(&buf), false),
            };
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text) {
                Ok(obj) => {
                    let cells = obj
                        .into_iter()
                        .map(|(k, v)| {
                            let v = match v {
                                serde_json::Value::Null => None,
                                serde_json::Value::String(s) => Some(s),
                                other => Some(other.to_string()),
                            };
                            // Which value held the bytes is lost with them: every value
                            // with a U+FFFD on a line that was not UTF-8 is suspect.
                            if !valid && v.as_deref().is_some_and(|v| v.contains('\u{FFFD}')) {
                                not_utf8.push(NotUtf8 {
                                    source_row: row,
                                    column: k.clone(),
                                });
                            }
                            let idx = columns.iter().position(|c| *c == k).unwrap_or_else(|| {
                                columns.push(k);
                                columns.len() - 1
                            });
                            (idx, v)
                        })
                        .collect();
                    rows.push((row, cells));
                }
                Err(e) => malformed.push(Malformed {
                    source_row: row,
                    rule: "json.parse".into(),
                    detail: quote::brief(&format!("not a JSON object: {e}")),
                }),
            }
        }
        // A stream that ends right at a chunk boundary leaves nothing for this call.
        if self.done && self.returned && rows.is_empty() && malformed.is_empty() {
            return Ok(None);
        }
        self.returned = true;
        self.objects += rows.len();
        if self.done && self.objects == 0 {
            return Err(self.unreadable(if malformed.is_empty() && self.line == 0 {
                "the file is empty: expected one JSON object per line".into()
            } else {
                "no line is a JSON object: expected one JSON object per line".into()
            }));
        }
        let mut table = RawTable::new(self.source.clone(), columns);
        let width = table.columns.len();
        for (row, cells) in rows {
            let mut full = vec![None; width];
            for (i, v) in cells {
                full[i] = v;
            }
            table.push_row(row, full);
        }
        table.malformed = malformed;
        table.not_utf8 = not_utf8;
        Ok(Some(table))
    }
}

/// Reads one line (without its newline) into `buf`, holding at most `max` bytes:
/// `Some(true)` a whole line, `Some(false)` a longer line (skipped to its end),
/// `None` at the end of the stream.
fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    let n = reader
        .by_ref()
        .take(max as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(true));
    }
    if buf.len() <= max {
        return Ok(Some(true)); // the last line, without a newline
    }
    // Too long: drop the rest of the line without holding it.
    buf.clear();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(Some(false));
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(Some(false));
            }
            None => {
                let len = available.len();
                reader.consume(len);
            }
        }
    }
}

fn io_error(source: &str, line: u64, e: std::io::Error) -> SourceError {
    match super::over_limit(&e) {
        Some(limit) => SourceError::TooLarge {
            file: source.to_string(),
            limit,
        },
        None => SourceError::Unreadable {
            file: source.to_string(),
            message: format!("read failed near line {line}: {e} (truncated or corrupt file?)"),
        },
    }
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

    /// JSON lines stream in chunks; keys differ between chunks and the union comes
    /// out of `append`; an over-long line is malformed, never held; a line that is not
    /// UTF-8 marks its damaged values, a literal U+FFFD on a valid line marks nothing.
    #[test]
    fn jsonl_streams_in_chunks_and_bounds_lines() {
        let long = format!("{{\"a\": \"{}\"}}\n", "x".repeat(MAX_JSON_LINE_BYTES + 10));
        let mut data = Vec::new();
        data.extend_from_slice(b"{\"a\": 1}\n{\"a\": 2}\n");
        data.extend_from_slice(long.as_bytes());
        data.extend_from_slice(b"{\"b\": \"bad \xff bytes\", \"a\": 4}\r\n");
        data.extend_from_slice("{\"b\": \"literal \u{FFFD}\"}".as_bytes());
        let mut chunks = JsonlChunks::new("t.jsonl", std::io::BufReader::new(&data[..]));
        let first = chunks.next_chunk(2).unwrap().unwrap();
        assert_eq!(first.columns, vec!["a"]);
        assert_eq!(first.height(), 2);
        let second = chunks.next_chunk(2).unwrap().unwrap();
        assert_eq!(second.malformed.len(), 1);
        assert_eq!(second.malformed[0].rule, "json.length");
        assert_eq!(second.malformed[0].source_row, 3);
        assert_eq!(second.columns, vec!["a", "b"]);
        assert_eq!(
            second.not_utf8,
            vec![NotUtf8 {
                source_row: 4,
                column: "b".into()
            }]
        );
        let third = chunks.next_chunk(2).unwrap().unwrap();
        // A stream that ends on a chunk boundary ends there: no empty table after it.
        let mut even = JsonlChunks::new("e.jsonl", &b"{\"a\": 1}\n{\"a\": 2}\n"[..]);
        assert_eq!(even.next_chunk(2).unwrap().unwrap().height(), 2);
        assert!(even.next_chunk(2).unwrap().is_none());
        assert_eq!(third.source_rows, vec![5]);
        assert!(third.not_utf8.is_empty());
        assert!(chunks.next_chunk(2).unwrap().is_none());

        let whole = read_jsonl("t.jsonl", &data[..]).unwrap();
        assert_eq!(whole.columns, vec!["a", "b"]);
        assert_eq!(whole.rows_in(), 5);
        assert_eq!(
            whole.cells[0],
            vec![Some("1".into()), Some("2".into()), Some("4".into()), None]
        );
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
