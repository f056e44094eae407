//! Fuzzing the input readers and the mapping loader on stable Rust: proptest feeds
//! them arbitrary bytes and structure-aware inputs (the characters that break
//! parsers: quotes, separators, newlines, NULs, bytes that are not UTF-8, U+FFFD,
//! over-long fields; mutated and truncated Parquet). Properties: no panic; every
//! error names its input; what a reader returns is consistent (each row as wide as
//! the header, rows counted once).
//!
//! Bounded for CI by `PROPTEST_CASES` (default 256 cases per property, a few seconds
//! in all); a longer run:
//! `PROPTEST_CASES=200000 cargo test --workspace --release --lib fuzz`.

use proptest::prelude::*;
use sgml_features::validate::RawTable;

use super::{CsvChunks, JsonlChunks};
use crate::mapping::Mapping;

/// Bytes made of tokens from `vocabulary` and random bytes.
fn tokens(vocabulary: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        4 => prop::sample::select(vocabulary).prop_map(<[u8]>::to_vec),
        2 => "[a-zA-Z0-9 ._-]{0,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(token, 0..120).prop_map(|t| t.concat())
}

const CSV_TOKENS: &[&[u8]] = &[
    b",",
    b",",
    b"\"",
    b"\"\"",
    b"\n",
    b"\r\n",
    b"\r",
    b";",
    b"\t",
    b"order_id",
    b"title",
    b"\xff\xfe",
    b"\x00",
    "\u{FFFD}".as_bytes(),
    b"\xef\xbb\xbf",
    b"1.5",
    b"-",
    b"\\",
];

const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\n",
    b"\r\n",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"\"order_id\"",
    b"\"a\"",
    b"\\u0000",
    b"\\ud800",
    b"\\\"",
    b"\xff",
    b"\x00",
    "\u{FFFD}".as_bytes(),
    b"{\"a\": 1}\n",
];

const TOML_TOKENS: &[&[u8]] = &[
    b"name = 'x'\n",
    b"[tables.orders.columns]\n",
    b"[tables.products]\n",
    b"[lookups.c]\n",
    b"order_id = { from = 'A' }\n",
    b"order_ts = { from = 'T', format = ['%d/%m/%Y %H:%M'] }\n",
    b"format = ['%Q']\n",
    b"values = { a = 'b' }\n",
    b"distinct_on = 'product_id'\n",
    b"lookup = 'c'\n",
    b"position_in = 'A'\n",
    b"=",
    b"[",
    b"]",
    b"{",
    b"}",
    b"'",
    b"\"",
    b"\n",
    b"%",
    b"\x00",
];

fn names(e: &impl std::fmt::Display, input: &str) -> Result<(), TestCaseError> {
    let message = e.to_string();
    prop_assert!(
        message.contains(input),
        "an error that does not name {input}: {message}"
    );
    Ok(())
}

fn consistent(t: &RawTable) -> Result<(), TestCaseError> {
    for cells in &t.cells {
        prop_assert_eq!(cells.len(), t.height());
    }
    prop_assert_eq!(t.cells.len(), t.columns.len());
    Ok(())
}

fn read_csv_chunks(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut chunks = match CsvChunks::new("fuzz.csv", bytes) {
        Ok(c) => c,
        Err(e) => return names(&e, "fuzz.csv"),
    };
    let mut rows = 0;
    loop {
        match chunks.next_chunk(7) {
            Ok(Some(t)) => {
                consistent(&t)?;
                rows += t.rows_in();
            }
            Ok(None) => break,
            Err(e) => return names(&e, "fuzz.csv"),
        }
    }
    // Never more rows than line breaks could make.
    prop_assert!(rows <= bytes.len());
    Ok(())
}

fn read_jsonl_chunks(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut chunks = JsonlChunks::new("fuzz.jsonl", bytes);
    loop {
        match chunks.next_chunk(5) {
            Ok(Some(t)) => consistent(&t)?,
            Ok(None) => return Ok(()),
            Err(e) => return names(&e, "fuzz.jsonl"),
        }
    }
}

/// Small valid Parquet files to mutate: zstd pages (as exports come) and plain
/// pages (so flipped bytes reach the value decoders, not just the decompressor),
/// with dictionary-encoded text, nulls and several pages per column.
fn parquet_samples() -> [Vec<u8>; 2] {
    use polars::prelude::*;
    let n = 300;
    let df = df!(
        "order_id" => (0..n).map(|i| format!("O{i}")).collect::<Vec<_>>(),
        "status" => (0..n).map(|i| ["paid", "cancelled", "returned"][i % 3]).collect::<Vec<_>>(),
        "quantity" => (0..n).map(|i| (i % 7 != 0).then_some(i as i64)).collect::<Vec<_>>(),
        "unit_price" => (0..n).map(|i| i as f64 * 1.5).collect::<Vec<_>>(),
    )
    .expect("a frame");
    let write = |compression| {
        let mut buf = Vec::new();
        ParquetWriter::new(&mut buf)
            .with_compression(compression)
            .with_data_page_size(Some(512))
            .finish(&mut df.clone())
            .expect("encodes");
        buf
    };
    [
        write(ParquetCompression::Zstd(None)),
        write(ParquetCompression::Uncompressed),
    ]
}

proptest! {

    #[test]
    fn fuzz_csv_reader(bytes in prop_oneof![tokens(CSV_TOKENS), prop::collection::vec(any::<u8>(), 0..600)]) {
        read_csv_chunks(&bytes)?;
    }

    #[test]
    fn fuzz_jsonl_reader(bytes in prop_oneof![tokens(JSON_TOKENS), prop::collection::vec(any::<u8>(), 0..600)]) {
        read_jsonl_chunks(&bytes)?;
    }

    /// Flipped bytes anywhere (page headers, page data, the footer) and
    /// truncations of a valid file: read or refused by name, never a crash.
    #[test]
    fn fuzz_parquet_reader(
        plain in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let [zstd, uncompressed] = parquet_samples();
        let mut bytes = if plain { uncompressed } else { zstd };
        let n = bytes.len();
        for (at, mask) in flips {
            bytes[at.index(n)] ^= mask;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let read = super::files::read_file(
            &path,
            &mut |_, t| { assert_eq!(t.cells.len(), t.columns.len()); Ok(()) },
            sgml_features::Table::Orders,
            1 << 20,
        );
        if let Err(e) = read {
            names(&e, "fuzz.parquet")?;
        }
    }

    #[test]
    fn fuzz_mapping_toml(bytes in tokens(TOML_TOKENS)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = Mapping::parse("fuzz.toml", &text) {
            names(&e, "fuzz.toml")?;
        }
    }
}
