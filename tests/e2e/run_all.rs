use std::collections::HashSet;

use crate::common::*;

fn csv_rows(path: &std::path::Path) -> usize {
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap()
        .byte_records()
        .count()
}

#[test]
fn run_all_on_generated_data_accounts_for_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1500, 11, 0.04);
    let store = dir.path().join("store");
    let out = ok(sgml(&store)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    assert!(out.contains("sgml run all: done"), "{out}");

    // Every step of the graph `sgml steps --json` prints ran, once, and each started
    // only after every step whose output it reads had finished.
    let graph: serde_json::Value =
        serde_json::from_str(&ok(sgml(&store).args(["steps", "--json"]))).unwrap();
    let runs = manifests(&store);
    let run_of = |step: &str| {
        let mine: Vec<&serde_json::Value> = runs.iter().filter(|m| m["step"] == step).collect();
        assert_eq!(mine.len(), 1, "{step} ran {} times", mine.len());
        // This export's photos are too few to train an image classifier: its two
        // steps record a skipped run; every other step succeeds.
        let want = if ["train-images", "predict-images"].contains(&step) {
            "skipped"
        } else {
            "succeeded"
        };
        assert_eq!(mine[0]["status"], want, "{step}");
        let at = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(mine[0][field].as_str().unwrap()).unwrap()
        };
        (at("started_at"), at("finished_at"))
    };
    let steps = graph.as_array().unwrap();
    assert_eq!(runs.len(), steps.len(), "one run per step of the graph");
    for step in steps {
        let name = step["name"].as_str().unwrap();
        let (started, _) = run_of(name);
        for before in step["after"].as_array().unwrap() {
            let (_, finished) = run_of(before.as_str().unwrap());
            assert!(
                finished <= started,
                "{name} started at {started}, before {before} finished at {finished}"
            );
        }
    }

    let ingest = last_manifest(&store, "ingest");
    for field in [
        "step",
        "run_id",
        "run_date",
        "code_version",
        "parameters",
        "started_at",
        "finished_at",
        "inputs",
        "outputs",
        "counts",
    ] {
        assert!(
            !ingest[field].is_null(),
            "manifest lacks {field}: {ingest:#}"
        );
    }
    assert_eq!(ingest["status"], "succeeded");
    let run_date = ingest["run_date"].as_str().unwrap().to_string();
    for table in [
        "orders",
        "products",
        "crawled_offers",
        "fx_rates",
        "deletion_requests",
        "duplicate_groups",
    ] {
        let c = &ingest["counts"][table];
        let (rows_in, accepted, quarantined) = (
            c["rows_in"].as_u64().unwrap(),
            c["accepted"].as_u64().unwrap(),
            c["quarantined"].as_u64().unwrap(),
        );
        assert_eq!(rows_in, accepted + quarantined, "{table}: {c}");
        assert_eq!(
            rows_in as usize,
            csv_rows(&input.join(format!("{table}.csv"))),
            "{table}: every input row counted"
        );
        let mut stored =
            read_parquet(&store.join(format!("raw/{table}/dt={run_date}/part-00000.parquet")))
                .height();
        if table == "crawled_offers" {
            // Retention ran too: old crawled rows moved to the archive.
            stored +=
                read_parquet(&store.join(format!("archive/crawled/dt={run_date}/part-0.parquet")))
                    .height();
        }
        assert_eq!(stored as u64, accepted, "{table}");
    }
    assert!(
        ingest["counts"]["orders"]["quarantined"].as_u64().unwrap() > 0,
        "bad rows were generated"
    );
    for input in ingest["inputs"].as_array().unwrap() {
        assert_eq!(input["sha256"].as_str().unwrap().len(), 64);
    }

    // Quarantine holds the rejected rows with a known rule each.
    let run_id = ingest["run_id"].as_str().unwrap();
    let rejects = read_partition(&store.join(format!("quarantine/orders/{run_id}")));
    assert_eq!(
        rejects.height() as u64,
        ingest["counts"]["orders"]["quarantined"].as_u64().unwrap()
    );
    let known: HashSet<String> = sgml_features::contract::rule_names(sgml_features::Table::Orders)
        .into_iter()
        .chain(["csv.field_count".to_string()])
        .collect();
    let rules: HashSet<String> = strings(&rejects, "_rule").into_iter().collect();
    assert!(rules.is_subset(&known), "{rules:?}");
    for want in [
        "orders.key.duplicate",
        "orders.unit_price.range",
        "orders.currency.currency",
        "orders.order_ts.type",
        "orders.product_id.utf8",
        "orders.order_id.required",
    ] {
        assert!(rules.contains(want), "no {want} among {rules:?}");
    }

    // Features: one table per builder, every accepted line priced in the base currency.
    let accepted_lines = ingest["counts"]["orders"]["accepted"].as_u64().unwrap() as usize;
    let lines =
        read_parquet(&store.join(format!("features/order_lines/dt={run_date}/part-0.parquet")));
    assert_eq!(lines.height(), accepted_lines);
    assert_eq!(
        lines.column("unit_price_base").unwrap().null_count(),
        0,
        "every currency converted"
    );
    for t in sgml_features::builders::TABLES {
        let df = read_parquet(&store.join(format!("features/{t}/dt={run_date}/part-0.parquet")));
        assert!(df.height() > 0, "{t} empty");
    }
    let features = last_manifest(&store, "features");
    assert_eq!(
        features["outputs"].as_array().unwrap().len(),
        sgml_features::builders::TABLES.len()
    );
    assert!(
        !snapshot(&store).keys().any(|k| k.starts_with("_staging/")),
        "staging cleaned up"
    );
}

#[test]
fn rerunning_a_date_replaces_its_own_outputs_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 400, 3, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    let first = snapshot(&store);
    ok(sgml(&store)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    let second = snapshot(&store);
    // Same data partitions with the same rows; only new run manifests added, and a
    // new model version with its predictions (training never overwrites a version).
    let data = |s: &std::collections::BTreeMap<String, Vec<u8>>| -> Vec<String> {
        s.keys()
            .filter(|k| {
                !["runs/", "models/", "predictions/"]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .cloned()
            .collect()
    };
    assert_eq!(data(&first), data(&second));
    for k in data(&first).iter().filter(|k| k.ends_with(".parquet")) {
        let (a, b) = (parquet_bytes(&first[k]), parquet_bytes(&second[k]));
        assert_eq!(a.height(), b.height(), "{k}");
        // Deleted customers get a fresh random key on every run (nothing links them),
        // so compare the frames without customer keys.
        // (Sorted after dropping the key: rows were ordered by it.)
        let drop_key = |df: polars::prelude::DataFrame| {
            let df = df.drop("customer_key").unwrap_or(df);
            // (List columns — embeddings — cannot be sort keys; product_id orders them.)
            let names: Vec<String> = df
                .columns()
                .iter()
                .filter(|c| !matches!(c.dtype(), polars::prelude::DataType::List(_)))
                .map(|c| c.name().to_string())
                .collect();
            df.sort(names, Default::default()).unwrap()
        };
        if !k.starts_with("quarantine/") {
            assert_frames_close(&drop_key(a), &drop_key(b), k);
        }
    }
    // Nineteen steps per run: ingest, retention, features, train + predict pricing,
    // embed, images, train + predict images, categorize, similar, duplicates, product
    // and seller segments. (This export's few photos are too few to train an image
    // classifier: both image-model steps record a skipped run.)
    let all = manifests(&store);
    assert_eq!(all.len(), 38);
    for step in ["train-images", "predict-images"] {
        let skipped: Vec<&serde_json::Value> = all.iter().filter(|m| m["step"] == step).collect();
        assert_eq!(skipped.len(), 2, "{step}");
        assert!(
            skipped.iter().all(|m| m["status"] == "skipped"),
            "{step}: {skipped:?}"
        );
    }
    assert!(!store.join("models/images").exists());
    for model in [
        "pricing",
        "categorize",
        "similar",
        "duplicates",
        "product-segments",
        "seller-segments",
    ] {
        assert_eq!(
            model_versions(&store, model),
            2,
            "each run trains its own immutable {model} version"
        );
    }
}

#[test]
fn run_all_without_input_uses_the_bundled_sample_in_demo_mode() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = ok(sgml(&store).args(["run", "all"]));
    assert!(out.contains("features"), "{out}");
    let ingest = last_manifest(&store, "ingest");
    let notes = ingest["notes"].to_string();
    assert!(notes.contains("DEMO KEY"), "{notes}");
}

/// Small chunks (many part files per partition) give the same rows and counts as one chunk.
#[test]
fn chunked_ingest_matches_whole_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 600, 17, 0.05);
    let (whole, chunked) = (dir.path().join("whole"), dir.path().join("chunked"));
    ok(sgml(&whole)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    ok(sgml(&chunked)
        .env("SGML_CHUNK_ROWS", "97")
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let (a, b) = (
        last_manifest(&whole, "ingest"),
        last_manifest(&chunked, "ingest"),
    );
    assert_eq!(a["counts"], b["counts"]);
    assert_eq!(a["run_date"], b["run_date"]);
    let run_date = a["run_date"].as_str().unwrap();
    let parts = std::fs::read_dir(chunked.join(format!("raw/orders/dt={run_date}")))
        .unwrap()
        .count();
    assert!(parts > 5, "{parts} part files");
    for table in ["orders", "products", "crawled_offers"] {
        // Deleted customers' random keys differ between runs; everything else must not.
        let read = |store: &std::path::Path| {
            let df = read_partition(&store.join(format!("raw/{table}/dt={run_date}")));
            df.drop("customer_key").unwrap_or(df)
        };
        assert!(
            read(&whole).equals_missing(&read(&chunked)),
            "{table} differs"
        );
    }
    // Features read multi-part partitions like single ones.
    ok(sgml(&chunked).args(["features", "--run-date", run_date]));
    let lines = read_partition(&chunked.join(format!("features/order_lines/dt={run_date}")));
    assert_eq!(
        lines.height() as u64,
        b["counts"]["orders"]["accepted"].as_u64().unwrap()
    );
}

/// The same export as CSV, gzipped CSV, Parquet and JSON lines ingests to the same rows.
#[test]
fn every_file_format_ingests_the_same_rows() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 300, 23, 0.0);
    let orders_csv = std::fs::read(input.join("orders.csv")).unwrap();
    let df = CsvReadOptions::default()
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(std::io::Cursor::new(orders_csv.clone()))
        .finish()
        .unwrap();
    let formats = dir.path().join("formats");
    let write = |name: &str, bytes: &[u8]| {
        let d = formats.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("orders.{name}")), bytes).unwrap();
        std::fs::copy(input.join("SYNTHETIC.json"), d.join("SYNTHETIC.json")).unwrap();
        d
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &orders_csv).unwrap();
    let mut parquet = Vec::new();
    ParquetWriter::new(&mut parquet)
        .finish(&mut df.clone())
        .unwrap();
    let mut jsonl = String::new();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    for i in 0..df.height() {
        let row: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .map(|n| {
                let v = df.column(n).unwrap().str().unwrap().get(i);
                (n.clone(), v.map_or(serde_json::Value::Null, |s| s.into()))
            })
            .collect();
        jsonl.push_str(&serde_json::Value::Object(row).to_string());
        jsonl.push('\n');
    }
    let dirs = [
        write("csv", &orders_csv),
        write("csv.gz", &gz.finish().unwrap()),
        write("parquet", &parquet),
        write("jsonl", jsonl.as_bytes()),
    ];
    let mut counts = Vec::new();
    for d in &dirs {
        let store = d.join("store");
        ok(sgml(&store).args(["ingest", "--demo", "--input"]).arg(d));
        let m = last_manifest(&store, "ingest");
        let run_date = m["run_date"].as_str().unwrap().to_string();
        let rows = read_partition(&store.join(format!("raw/orders/dt={run_date}")));
        counts.push((
            m["counts"]["orders"].clone(),
            rows.drop("customer_key").unwrap(),
        ));
    }
    for (c, rows) in &counts[1..] {
        assert_eq!(c, &counts[0].0);
        assert!(rows.equals_missing(&counts[0].1));
    }
}
