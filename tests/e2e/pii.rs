use polars::prelude::*;

use crate::common::*;

/// Every PII value of the generated export: no output file may contain one.
fn pii_values(input: &std::path::Path) -> Vec<String> {
    let mut reader = csv::Reader::from_path(input.join("orders.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let idx: Vec<usize> = [
        "customer_name",
        "customer_email",
        "customer_phone",
        "shipping_address",
    ]
    .iter()
    .map(|c| headers.iter().position(|h| h == *c).unwrap())
    .collect();
    let mut values: Vec<String> = Vec::new();
    for r in reader.byte_records() {
        let r = r.unwrap();
        if r.len() != headers.len() {
            continue;
        }
        for &i in &idx {
            values.push(String::from_utf8_lossy(&r[i]).into_owned());
        }
    }
    // Contact details sellers typed into product descriptions.
    let products =
        String::from_utf8_lossy(&std::fs::read(input.join("products.csv")).unwrap()).into_owned();
    let email = regex_lite_emails(&products);
    assert!(
        !email.is_empty(),
        "the generator plants contacts in descriptions"
    );
    values.extend(email);
    values.sort();
    values.dedup();
    values.retain(|v| v.len() >= 6);
    values
}

fn regex_lite_emails(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .filter(|w| w.contains('@') && w.contains('.'))
        .map(String::from)
        .collect()
}

/// All text of a Parquet file: every cell rendered as a string.
fn parquet_text(bytes: &[u8]) -> String {
    let df = ParquetReader::new(std::io::Cursor::new(bytes))
        .finish()
        .unwrap();
    let mut text = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    text.push('\n');
    // Numeric lists (title embeddings) hold no text.
    for c in df
        .columns()
        .iter()
        .filter(|c| !matches!(c.dtype(), DataType::List(_)))
    {
        let s = c.cast(&DataType::String).unwrap();
        for v in s.str().unwrap().iter().flatten() {
            text.push_str(v);
            text.push('\n');
        }
    }
    text
}

#[test]
fn no_pii_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1200, 5, 0.05);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .env("SGML_ANON_KEY", TEST_KEY)
        .args(["run", "all", "--input"])
        .arg(&input));
    let pii = pii_values(&input);
    assert!(pii.len() > 100, "found {} PII values", pii.len());
    let files = snapshot(&store);
    assert!(
        files.keys().any(|k| k.starts_with("quarantine/")),
        "quarantine is scanned too"
    );
    for (key, bytes) in &files {
        let text = if key.ends_with(".parquet") {
            parquet_text(bytes)
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        };
        for column in [
            "customer_id",
            "customer_name",
            "customer_email",
            "customer_phone",
            "shipping_address",
        ] {
            assert!(
                !(key.ends_with(".parquet")
                    && text.lines().next().unwrap().split(' ').any(|c| c == column)),
                "{key} has column {column}"
            );
        }
        for value in &pii {
            assert!(
                !text.contains(value.as_str()),
                "{key} contains PII `{value}`"
            );
        }
    }
}
