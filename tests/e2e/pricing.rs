use crate::common::*;

/// Train on generated data: the bundle verifies, beats the category-median baseline on
/// the time holdout, and a tampered bundle is refused.
#[test]
fn train_pricing_writes_a_verified_bundle_that_beats_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 3000, 31, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    ok(sgml(&store).args([
        "train",
        "pricing",
        "--trees",
        "200",
        "--run-date",
        &run_date,
    ]));

    // `run all` trained one version, `train pricing` a second.
    assert_eq!(model_versions(&store, "pricing"), 2);
    let trained = last_manifest(&store, "train-pricing");
    let version = trained["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| {
            sgml_registry::layout::version_of_manifest(o["uri"].as_str().unwrap(), "pricing")
        })
        .unwrap();
    let versions = [store.join("models/pricing").join(&version)];
    let bundle = sgml_models::Bundle::load_dir(&versions[0]).unwrap();
    let m = bundle.manifest();
    assert_eq!(m.kind, "pricing-gbdt");
    let metric = |k: &str| m.metrics[k];
    assert!(
        metric("rmse_log") < metric("baseline_category_median_rmse_log"),
        "{:?}",
        m.metrics
    );
    assert!(metric("interval_coverage") > 0.75, "{:?}", m.metrics);
    // Lineage: the fingerprint hashes the inputs the manifest lists, and the drift
    // baseline profiles every model column.
    let fingerprint = &m.training_data.fingerprint;
    assert_eq!(fingerprint.len(), 64);
    let inputs = &m.training_data.inputs;
    assert!(
        inputs
            .iter()
            .any(|i| i.uri.contains("features/order_lines")),
        "{inputs:?}"
    );
    assert_eq!(
        m.baseline["columns"].as_array().unwrap().len(),
        sgml_models::pricing::COLUMNS.len()
    );
    assert!(m.baseline["levels"]["market"].as_object().unwrap().len() > 3);
    // The report travels in the bundle, checksummed like the model.
    let html = String::from_utf8(bundle.file("report/index.html").unwrap().to_vec()).unwrap();
    assert!(html.contains("rmse_log") && html.contains("Residuals by market"));
    for png in [
        "predicted_vs_actual",
        "residuals_by_category",
        "residuals_by_market",
        "feature_importance",
        "interval_coverage",
    ] {
        let bytes = bundle.file(&format!("report/{png}.png")).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png}");
        assert!(
            html.contains(&format!("alt=\"{png}.png\"")),
            "{png} is embedded"
        );
    }
    // The linear baseline on the same split: GBDT beats it, and it beats the category median.
    ok(sgml(&store).args([
        "train",
        "pricing",
        "--algo",
        "linear",
        "--run-date",
        &run_date,
    ]));
    let linear = last_manifest(&store, "train-pricing");
    let linear_note = linear["notes"].to_string();
    let linear_rmse: f64 = linear_note.split("rmse_log ").nth(1).unwrap()[..6]
        .parse()
        .unwrap();
    assert!(
        metric("rmse_log") < linear_rmse,
        "gbdt {} vs linear {linear_rmse}",
        metric("rmse_log")
    );
    assert!(
        linear_rmse < metric("baseline_category_median_rmse_log"),
        "linear {linear_rmse}"
    );
    let shown = ok(sgml(&store).args(["models", "show", "pricing", "--version", &m.version]));
    assert!(
        shown.contains("rmse_log") && shown.contains(&m.version),
        "{shown}"
    );

    // Batch predictions equal a freshly loaded bundle scoring the same raw attributes.
    ok(sgml(&store).args([
        "predict",
        "pricing",
        "--version",
        &m.version,
        "--run-date",
        &run_date,
    ]));
    let preds = read_parquet(&store.join(format!(
        "predictions/pricing/{}/dt={run_date}/part-0.parquet",
        m.version
    )));
    assert!(preds.height() > 100, "{}", preds.height());
    assert_eq!(preds.column("price_base").unwrap().null_count(), 0);
    let products = read_partition(&store.join(format!("raw/products/dt={run_date}")));
    let model = sgml_models::pricing::PriceModel::from_bundle(&bundle).unwrap();
    let month = chrono::NaiveDate::parse_from_str(&run_date, "%Y-%m-%d").unwrap();
    let text = |df: &polars::prelude::DataFrame, c: &str, i: usize| {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .map(String::from)
    };
    for i in (0..preds.height()).step_by(preds.height() / 20) {
        let id = text(&preds, "product_id", i).unwrap();
        let j = (0..products.height())
            .find(|&j| text(&products, "product_id", j).as_deref() == Some(id.as_str()))
            .unwrap();
        let input = sgml_models::pricing::PriceInput {
            product_id: Some(id.clone()),
            quantity: None,
            guest: Some(false),
            category: text(&products, "category", j),
            brand: text(&products, "brand", j),
            condition: text(&products, "condition", j),
            market: text(&preds, "market", i).unwrap(),
            seller_country: text(&products, "seller_country", j),
            title: text(&products, "title", j),
            month: chrono::Datelike::month(&month),
        };
        let served = model.price(&[input]).unwrap()[0].log_price.exp();
        let batch = preds
            .column("price_base")
            .unwrap()
            .f64()
            .unwrap()
            .get(i)
            .unwrap();
        assert_eq!(served, batch, "row {i}: training/serving skew");
    }

    // A bundle whose input schema differs from what this build provides is refused,
    // by the loader and by the CLI, before any scoring.
    let mismatched = store.join("models/pricing/schema-mismatch");
    std::fs::create_dir_all(&mismatched).unwrap();
    for entry in std::fs::read_dir(&versions[0]).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            let sub = mismatched.join(entry.file_name());
            std::fs::create_dir_all(&sub).unwrap();
            for f in std::fs::read_dir(entry.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), sub.join(f.file_name())).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), mismatched.join(entry.file_name())).unwrap();
        }
    }
    let manifest_path = mismatched.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for field in manifest["input_schema"].as_array_mut().unwrap() {
        if field["name"] == "month" {
            field["dtype"] = "str".into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let loaded = sgml_models::Bundle::load_dir(&mismatched).expect("checksums still verify");
    let refused = sgml_models::pricing::PriceModel::from_bundle(&loaded)
        .err()
        .expect("schema mismatch refused")
        .to_string();
    assert!(refused.contains("month"), "{refused}");
    let err = fails(
        sgml(&store).args([
            "predict",
            "pricing",
            "--version",
            "schema-mismatch",
            "--run-date",
            &run_date,
        ]),
        1,
    );
    assert!(
        err.contains("input schema") && err.contains("month"),
        "{err}"
    );

    // Flip one byte of the model: the loader names the file and refuses.
    let model = versions[0].join("model.txt");
    let mut bytes = std::fs::read(&model).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'1' { b'2' } else { b'1' };
    std::fs::write(&model, bytes).unwrap();
    let err = fails(
        sgml(&store).args(["models", "show", "pricing", "--version", &m.version]),
        1,
    );
    assert!(
        err.contains("model.txt") && err.contains("tampered"),
        "{err}"
    );
}

/// Leakage: holdout prices must not reach the model. Rewriting them wildly and
/// retraining gives the same model bytes.
#[test]
fn later_prices_never_reach_the_fitted_model() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1500, 5, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    let train = |store: &std::path::Path| {
        ok(sgml(store).args(["train", "pricing", "--trees", "50", "--run-date", &run_date]));
        let m = last_manifest(store, "train-pricing");
        let model = m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["uri"].as_str().unwrap().ends_with("model.txt"))
            .unwrap()["uri"]
            .as_str()
            .unwrap()
            .to_string();
        let notes = m["notes"].to_string();
        let fit_end = notes.split("holdout from ").nth(1).unwrap()[..10].to_string();
        (std::fs::read(model).unwrap(), fit_end)
    };
    let (before, fit_end) = train(&store);

    // Multiply every price from the first holdout day on by 50.
    let lines_path = store.join(format!("features/order_lines/dt={run_date}/part-0.parquet"));
    let lines = read_parquet(&lines_path);
    let cut = chrono::NaiveDate::parse_from_str(&fit_end, "%Y-%m-%d").unwrap();
    let cut_days = (cut - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
    let mut changed = lines
        .lazy()
        .with_column(
            when(col("order_date").cast(DataType::Int32).gt_eq(lit(cut_days)))
                .then(col("log_price_base") + lit(50f64.ln()))
                .otherwise(col("log_price_base"))
                .alias("log_price_base"),
        )
        .collect()
        .unwrap();
    let later = changed
        .column("order_date")
        .unwrap()
        .cast(&DataType::Int32)
        .unwrap()
        .i32()
        .unwrap()
        .iter()
        .filter(|d| d.unwrap() >= cut_days)
        .count();
    assert!(later > 100, "{later} later lines");
    ParquetWriter::new(std::fs::File::create(&lines_path).unwrap())
        .finish(&mut changed)
        .unwrap();
    // A deliberate rewrite: its checksum is rewritten with it, as a step would.
    let digest = sgml_registry::store::sha256_hex(&std::fs::read(&lines_path).unwrap());
    std::fs::write(
        format!("{}.sha256", lines_path.display()),
        format!("{digest}  part-0.parquet\n"),
    )
    .unwrap();
    let (after, fit_end_again) = train(&store);
    assert_eq!(fit_end, fit_end_again);
    assert!(
        before == after,
        "later prices changed the fitted model: leakage"
    );
}
