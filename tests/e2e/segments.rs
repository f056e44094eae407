//! Product and seller segments end to end: `run all` trains, reports, promotes and
//! applies both k-means models; a fixed k is honoured and gated against the champion;
//! a catalogue too small to segment and missing features are clear errors.

use std::collections::HashSet;

use sgml_registry::Store;

use crate::common::*;

fn champion_bundle(store: &std::path::Path, model: &str) -> sgml_models::Bundle {
    let s = sgml_registry::LocalStore::new(store).unwrap();
    sgml_registry::publish::load_alias(&s as &dyn Store, model, sgml_registry::CHAMPION)
        .unwrap()
        .expect("a champion")
}

fn segments_partition(
    store: &std::path::Path,
    model: &str,
    version: &str,
    run_date: &str,
) -> polars::prelude::DataFrame {
    read_partition(&store.join(format!("predictions/{model}/{version}/dt={run_date}")))
}

#[test]
fn run_all_segments_products_and_sellers() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_after_run_all(dir.path(), 600, 23);
    let run_date = ingested_run_date(&store);

    for (model, key) in [
        ("product-segments", "product_id"),
        ("seller-segments", "seller_id"),
    ] {
        let bundle = champion_bundle(&store, model);
        let m = bundle.manifest();
        assert_eq!(m.kind, "kmeans");
        let k = m.metrics["k"] as usize;
        assert!((2..=12).contains(&k), "{model}: k {k}");
        let silhouette = m.metrics["silhouette"];
        assert!(
            silhouette > 0.0 && silhouette <= 1.0,
            "{model}: silhouette {silhouette}"
        );
        // The report a data scientist names segments from, and the selection it shows.
        let html = String::from_utf8(bundle.file("report/index.html").unwrap().to_vec()).unwrap();
        assert!(
            html.contains("Choosing k") && html.matches("data:image/png;base64,").count() == 4,
            "{model}"
        );
        let selection: serde_json::Value =
            serde_json::from_slice(bundle.file("selection.json").unwrap()).unwrap();
        let scores = selection["scores"].as_array().unwrap();
        assert!(scores.len() >= 2, "{model}: a sweep over k");
        let best = scores
            .iter()
            .filter_map(|s| s["silhouette"].as_f64())
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(
            best, silhouette,
            "{model}: the chosen k has the best silhouette"
        );

        let df = segments_partition(&store, model, &m.version, &run_date);
        let keys = strings(&df, key);
        assert!(!keys.is_empty());
        assert_eq!(
            keys.iter().collect::<HashSet<_>>().len(),
            keys.len(),
            "one row per {key}"
        );
        let segments: Vec<u32> = df
            .column("segment")
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert!(segments.iter().all(|&s| (s as usize) < k));
        assert!(
            segments.iter().collect::<HashSet<_>>().len() >= 2,
            "{model}: rows spread over segments"
        );
        let distances = df.column("distance").unwrap().f32().unwrap();
        assert!(
            distances
                .into_no_null_iter()
                .all(|d| d.is_finite() && d >= 0.0)
        );
    }
    let shown = ok(sgml(&store).args(["models", "show", "product-segments"]));
    assert!(
        shown.contains("kmeans") && shown.contains("silhouette"),
        "{shown}"
    );

    // A fixed k is honoured, and the gate compares it with the champion on this
    // run's sample.
    ok(sgml(&store).args([
        "train",
        "segments",
        "--of",
        "products",
        "--k",
        "3",
        "--run-date",
        &run_date,
    ]));
    let m = last_manifest(&store, "train-product-segments");
    assert_eq!(m["status"], "succeeded", "{m}");
    let notes = m["notes"].to_string();
    assert!(
        notes.contains("in 3 segments") && notes.contains("champion"),
        "{notes}"
    );
}

#[test]
fn too_few_rows_and_missing_features_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 200, 24, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    let err = fails(
        sgml(&store).args([
            "train",
            "segments",
            "--of",
            "sellers",
            "--run-date",
            &run_date,
        ]),
        1,
    );
    assert!(err.contains("sgml features --run-date"), "{err}");
    ok(sgml(&store).args(["features", "--run-date", &run_date]));
    let err = fails(
        sgml(&store).args([
            "train",
            "segments",
            "--of",
            "products",
            "--run-date",
            &run_date,
        ]),
        1,
    );
    assert!(err.contains("sgml embed --run-date"), "{err}");
    // 200 orders make at most 12 sellers: 12 segments of them is refused with the counts.
    let err = fails(
        sgml(&store).args([
            "train",
            "segments",
            "--of",
            "sellers",
            "--k",
            "12",
            "--run-date",
            &run_date,
        ]),
        1,
    );
    assert!(
        err.contains("sellers for") && err.contains("at least 13 rows"),
        "{err}"
    );
    let err = fails(
        sgml(&store).args([
            "train",
            "segments",
            "--of",
            "sellers",
            "--k",
            "1",
            "--run-date",
            &run_date,
        ]),
        1,
    );
    assert!(err.contains("between 2 and 100"), "{err}");
}
