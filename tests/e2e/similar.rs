//! The similar-products index end to end: `run all` builds, measures, promotes and
//! applies it; the filters of `predict similar` hold on every row; a rebuilt index
//! with the same parameters passes the gate; missing embeddings are a clear error.

use std::collections::HashMap;

use crate::common::*;

fn similar_partition(store: &std::path::Path, run_date: &str) -> polars::prelude::DataFrame {
    let s = sgml_registry::LocalStore::new(store).unwrap();
    let (alias, _) = sgml_registry::publish::read_alias(&s, "similar", sgml_registry::CHAMPION)
        .unwrap()
        .expect("a similar champion");
    read_partition(&store.join(format!(
        "predictions/similar/{}/dt={run_date}",
        alias.version
    )))
}

/// Each product's seller and market, from the generated input.
fn listings(input: &std::path::Path) -> HashMap<String, (String, String)> {
    let mut r = csv::Reader::from_path(input.join("products.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let at = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (id, seller, market) = (at("product_id"), at("seller_id"), at("seller_country"));
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[id].to_string(),
                (rec[seller].to_string(), rec[market].to_string()),
            )
        })
        .collect()
}

#[test]
fn run_all_indexes_and_predict_similar_filters_hold() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 800, 21, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);

    let train = last_manifest(&store, "train-similar");
    assert_eq!(train["status"], "succeeded", "{train}");
    let shown = ok(sgml(&store).args(["models", "show", "similar"]));
    assert!(
        shown.contains("ann-index") && shown.contains("recall_at_10"),
        "{shown}"
    );

    // Default: k = 10 ranked neighbours, never the product itself, best first.
    let df = similar_partition(&store, &run_date);
    let ids = strings(&df, "product_id");
    let similar = strings(&df, "similar_product_id");
    assert!(!ids.is_empty());
    assert!(
        ids.iter().zip(&similar).all(|(a, b)| a != b),
        "a product is not its own neighbour"
    );
    let sims: Vec<f32> = df
        .column("similarity")
        .unwrap()
        .f32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(sims.iter().all(|s| (-1.01..=1.01).contains(s)));
    for w in 0..ids.len() - 1 {
        if ids[w] == ids[w + 1] {
            assert!(sims[w] >= sims[w + 1] - 1e-6, "ranked best first");
        }
    }

    // Other sellers in other markets only: every pair obeys both.
    ok(sgml(&store).args([
        "predict",
        "similar",
        "--run-date",
        &run_date,
        "--k",
        "5",
        "--other-sellers",
        "--markets",
        "other",
    ]));
    let listed = listings(&input);
    let df = similar_partition(&store, &run_date);
    let (ids, similar) = (
        strings(&df, "product_id"),
        strings(&df, "similar_product_id"),
    );
    assert!(!ids.is_empty());
    for (a, b) in ids.iter().zip(&similar) {
        let (sa, ma) = &listed[a];
        let (sb, mb) = &listed[b];
        assert_ne!(sa, sb, "{a} and {b} have the same seller");
        assert_ne!(ma, mb, "{a} and {b} are in the same market");
    }
    let per_product = ids.iter().fold(HashMap::new(), |mut m, id| {
        *m.entry(id).or_insert(0) += 1;
        m
    });
    assert!(per_product.values().all(|n| *n <= 5));

    // A rebuild with the same parameters passes the gate against the champion.
    let out = ok(sgml(&store).args(["train", "similar", "--run-date", &run_date]));
    assert!(out.contains("champion"), "{out}");
    let again = last_manifest(&store, "train-similar");
    assert_eq!(again["status"], "succeeded");
}

#[test]
fn train_similar_without_embeddings_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 200, 22, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    let err = fails(
        sgml(&store).args(["train", "similar", "--run-date", &run_date]),
        1,
    );
    assert!(err.contains("sgml embed --run-date"), "{err}");
}
