//! PostgreSQL, the platform's operational database: each contract table is streamed
//! with `COPY (query) TO STDOUT` in CSV and parsed as it arrives, never fetched as
//! rows into client memory first.

use postgres::{Client, NoTls};
use sgml_features::Table;

use super::{ChunkSink, HashingReader, InputRecord, SourceError, SourceOptions};

pub fn load(
    url: &str,
    opts: &SourceOptions,
    sink: &mut ChunkSink,
) -> Result<Vec<InputRecord>, SourceError> {
    let shown = redact(url);
    let err = |message: String| SourceError::Postgres {
        uri: shown.clone(),
        message,
    };
    let mut client =
        Client::connect(url, NoTls).map_err(|e| err(format!("cannot connect: {e}")))?;
    let schema = if opts.pg_schema.is_empty() {
        "public"
    } else {
        opts.pg_schema.as_str()
    };
    for (table, _) in &opts.pg_queries {
        if Table::from_name(table).is_none() {
            return Err(err(format!(
                "--pg-query names `{table}`, which is not a contract table"
            )));
        }
    }
    let mut records = Vec::new();
    let mut tables = Table::ALL;
    tables.sort_by_key(super::ingest_order);
    for table in tables {
        let query = match opts.pg_queries.iter().find(|(t, _)| t == table.name()) {
            Some((_, sql)) => sql.clone(),
            None => {
                let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table.name()));
                let exists: Option<String> = client
                    .query_one("SELECT to_regclass($1)::text", &[&qualified])
                    .map_err(|e| err(e.to_string()))?
                    .get(0);
                if exists.is_none() {
                    continue;
                }
                format!("SELECT * FROM {qualified}")
            }
        };
        let source = format!("{shown}#{schema}.{}", table.name());
        let copy = format!("COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)");
        let reader = client
            .copy_out(copy.as_str())
            .map_err(|e| err(format!("{}: {e}", table.name())))?;
        let mut hashing = HashingReader::new(reader);
        let mut rows = 0;
        let mut chunks = super::CsvChunks::new(&source, &mut hashing)?;
        while let Some(chunk) = chunks.next_chunk(super::chunk_rows())? {
            rows += chunk.rows_in();
            sink(table, chunk).map_err(SourceError::Sink)?;
        }
        drop(chunks);
        records.push(InputRecord {
            uri: source,
            sha256: hashing.hex(),
            rows,
        });
    }
    if records.is_empty() {
        return Err(err(format!(
            "schema `{schema}` has none of the contract tables ({})",
            Table::ALL.map(|t| t.name()).join(", ")
        )));
    }
    Ok(records)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The URL without its password, for messages and manifests.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_shown() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(super::redact("postgres://h/db"), "postgres://h/db");
    }
}
