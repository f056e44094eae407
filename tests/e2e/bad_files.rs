use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::*;

/// A generated export ingested into a fresh store: (export, store, the store's files
/// after it, the run date).
fn ingested_export(dir: &Path, seed: u64) -> (PathBuf, PathBuf, BTreeMap<String, Vec<u8>>, String) {
    let good = generate(dir, 200, seed, 0.0);
    let store = dir.join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&good));
    let before = snapshot(&store);
    let run_date = ingested_run_date(&store);
    (good, store, before, run_date)
}

/// The keys outside runs/ that were added, removed or rewritten since `before`.
fn outputs_changed(before: &BTreeMap<String, Vec<u8>>, store: &Path) -> Vec<String> {
    let after = snapshot(store);
    before
        .keys()
        .chain(after.keys())
        .filter(|k| !k.starts_with("runs/") && before.get(*k) != after.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Each unreadable orders file fails the run with a message naming the file and
/// what was expected, and leaves the store exactly as it was.
#[test]
fn unreadable_files_fail_cleanly_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (good, store, before, run_date) = ingested_export(dir.path(), 9);

    let orders = std::fs::read(good.join("orders.csv")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&orders).unwrap();
    let gz = gz.finish().unwrap();
    let text = String::from_utf8(orders.clone())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let header = text.lines().next().unwrap().to_string();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("orders.csv.gz", gz[..gz.len() / 2].to_vec(), "truncated"),
        (
            "orders.csv",
            text.replace(',', ";").into_bytes(),
            "`;`-delimited",
        ),
        (
            "orders.csv",
            text.replacen("unit_price", "price", 1).into_bytes(),
            "missing required column `unit_price`",
        ),
        ("orders.csv", Vec::new(), "empty"),
        (
            "orders.csv",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "orders.csv",
        ),
        (
            "orders.csv",
            format!("{header}\n")
                .into_bytes()
                .into_iter()
                .take(0)
                .collect(),
            "empty",
        ),
    ];
    for (name, bytes, want) in cases {
        let case = tempfile::tempdir().unwrap();
        for f in ["products.csv", "fx_rates.csv", "SYNTHETIC.json"] {
            std::fs::copy(good.join(f), case.path().join(f)).unwrap();
        }
        std::fs::write(case.path().join(name), &bytes).unwrap();
        let err = fails(
            sgml(&store)
                .args(["ingest", "--demo", "--run-date", &run_date, "--input"])
                .arg(case.path()),
            1,
        );
        assert!(
            err.contains(name) && err.contains(want),
            "{name}/{want}: {err}"
        );
        let changed = outputs_changed(&before, &store);
        assert!(changed.is_empty(), "{want}: outputs changed: {changed:?}");
        let failed = last_manifest(&store, "ingest");
        assert_eq!(
            failed["status"], "failed",
            "a failed run still records its manifest"
        );
    }
}

/// An export in which most rows of a table break the contract (a broken export or
/// mapping) fails ingest above --max-reject-share and commits nothing: the good
/// partition of the date stays. Asked for, a higher share lets it through.
#[test]
fn a_mostly_rejected_table_fails_and_keeps_the_good_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (good, store, before, run_date) = ingested_export(dir.path(), 19);

    // Every order in a currency that does not exist.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["products.csv", "fx_rates.csv"] {
        std::fs::copy(good.join(f), broken.join(f)).unwrap();
    }
    let mut reader = csv::Reader::from_path(good.join("orders.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let currency = headers.iter().position(|h| h == "currency").unwrap();
    let mut writer = csv::Writer::from_path(broken.join("orders.csv")).unwrap();
    writer.write_record(&headers).unwrap();
    let mut rows = 0;
    for record in reader.records() {
        let mut fields: Vec<String> = record.unwrap().iter().map(String::from).collect();
        fields[currency] = "N/A".into();
        writer.write_record(&fields).unwrap();
        rows += 1;
    }
    writer.flush().unwrap();

    let ingest = |extra: &[&str]| {
        let mut cmd = sgml(&store);
        cmd.args(["ingest", "--demo", "--run-date", &run_date])
            .args(extra)
            .arg("--input")
            .arg(&broken);
        cmd
    };
    let err = fails(&mut ingest(&[]), 1);
    assert!(
        err.contains("too many rows rejected")
            && err.contains(&format!("orders: {rows} of {rows} rows")),
        "{err}"
    );
    let changed = outputs_changed(&before, &store);
    assert!(
        changed.is_empty(),
        "nothing committed, but {changed:?} changed"
    );
    assert_eq!(last_manifest(&store, "ingest")["status"], "failed");

    fails(&mut ingest(&["--max-reject-share", "1.5"]), 2);
    ok(&mut ingest(&["--max-reject-share", "1"]));
    assert_eq!(
        last_manifest(&store, "ingest")["counts"]["orders"]["accepted"],
        0
    );
}
