use crate::common::*;

/// The UCI export through the built-in mapping: all 541,909 lines accounted for.
#[test]
fn uci_online_retail_with_mapping() {
    let file = shared_data("online_retail.csv.gz");
    assert!(
        file.exists(),
        "{} missing: CI lays shared/ beside the clone",
        file.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = ok(sgml(&store)
        .env("SGML_ANON_KEY", TEST_KEY)
        .args(["ingest", "--mapping", "online-retail", "--input"])
        .arg(&file));
    let m = last_manifest(&store, "ingest");
    assert_eq!(m["run_date"], "2011-12-09", "latest invoice date");
    let orders = &m["counts"]["orders"];
    assert_eq!(orders["rows_in"], 541_909);
    assert_eq!(
        orders["accepted"].as_u64().unwrap() + orders["quarantined"].as_u64().unwrap(),
        541_909,
        "{out}"
    );
    // The only lines refused are the ones that break a rule: non-cancelled negative
    // quantities (stock adjustments) and negative prices (bad-debt adjustments).
    let q = orders["quarantined"].as_u64().unwrap();
    assert!(q > 0 && q < 5_000, "{orders}");
    let products = &m["counts"]["products"];
    assert_eq!(products["rows_in"], 4_070, "distinct stock codes");
    let notes = m["notes"].to_string();
    assert!(
        notes.contains("products: the input lacks"),
        "missing contract columns are reported: {notes}"
    );

    // Features over a single currency without fx rates: GBP is the base.
    ok(sgml(&store).args(["features", "--run-date", "2011-12-09"]));
    assert!(
        last_manifest(&store, "features")["notes"]
            .to_string()
            .contains("base currency GBP")
    );
    let lines = read_parquet(&store.join("features/order_lines/dt=2011-12-09/part-0.parquet"));
    assert_eq!(lines.height() as u64, orders["accepted"].as_u64().unwrap());
}
