//! Duplicate listings end to end: `run all` ingests the labelled groups, calibrates
//! and measures the decision, promotes it, and `predict duplicates` writes pairs of
//! different sellers' listings that the generator's ground truth confirms.

use std::collections::HashMap;

use crate::common::*;

/// The generator's labelled groups: listing → group.
fn groups(input: &std::path::Path) -> HashMap<String, String> {
    let mut r = csv::Reader::from_path(input.join("duplicate_groups.csv")).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[1].to_string())
        })
        .collect()
}

#[test]
fn run_all_finds_labelled_duplicates_across_sellers() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 2400, 31, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);

    let train = last_manifest(&store, "train-duplicates");
    assert_eq!(train["status"], "succeeded", "{train}");
    let shown = ok(sgml(&store).args(["models", "show", "duplicates"]));
    assert!(
        shown.contains("listing_f1") && shown.contains("spelling_only_listing_f1"),
        "{shown}"
    );
    let local = sgml_registry::LocalStore::new(&store).unwrap();
    let (alias, _) =
        sgml_registry::publish::read_alias(&local, "duplicates", sgml_registry::CHAMPION)
            .unwrap()
            .expect("a duplicates champion");
    let version = alias.version;

    let df = read_partition(&store.join(format!("predictions/duplicates/{version}/dt={run_date}")));
    let listing = strings(&df, "product_id");
    let of = strings(&df, "duplicate_of");
    let reasons = strings(&df, "reason");
    let (sellers, of_sellers) = (
        strings(&df, "seller_id"),
        strings(&df, "duplicate_seller_id"),
    );
    assert!(!listing.is_empty(), "duplicates found");
    for i in 0..listing.len() {
        assert_ne!(listing[i], of[i]);
        assert_ne!(
            sellers[i], of_sellers[i],
            "{} and {} share a seller",
            listing[i], of[i]
        );
        assert!(!reasons[i].is_empty());
    }
    // Where both listings are labelled, the generator's truth agrees with most pairs.
    let truth = groups(&input);
    let judged: Vec<bool> = listing
        .iter()
        .zip(&of)
        .filter_map(|(a, b)| Some(truth.get(a)? == truth.get(b)?))
        .collect();
    let right = judged.iter().filter(|r| **r).count();
    assert!(
        judged.len() >= 10,
        "{} labelled pairs predicted",
        judged.len()
    );
    assert!(
        right as f64 >= 0.8 * judged.len() as f64,
        "{right} of {} labelled predictions right",
        judged.len()
    );
}

/// An export without reviewed duplicates (most real ones): training has nothing to
/// calibrate on and says what to ingest, as a skipped run, not a failure, so `run all`
/// goes on; predicting then skips too, having no decision to apply.
#[test]
fn without_labels_training_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 300, 32, 0.0);
    std::fs::remove_file(input.join("duplicate_groups.csv")).unwrap();
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    ok(sgml(&store).args(["embed", "--run-date", &run_date]));
    let out = ok(sgml(&store).args(["train", "duplicates", "--run-date", &run_date]));
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["status"], "skipped", "{summary}");
    assert!(
        summary["skipped"]
            .as_str()
            .unwrap()
            .contains("duplicate_groups"),
        "{summary}"
    );
    assert!(summary["version"].is_null(), "nothing trained: {summary}");
    let out = ok(sgml(&store).args(["predict", "duplicates", "--run-date", &run_date]));
    assert!(
        out.contains("no duplicates model has been trained"),
        "{out}"
    );
    assert_eq!(
        last_manifest(&store, "predict-duplicates")["status"],
        "skipped"
    );
    assert!(
        !store.join("models/duplicates").exists() && !store.join("predictions/duplicates").exists(),
        "nothing written"
    );
}
