use std::io::Write;

use crate::common::*;

/// Each unreadable orders file fails the run with a message naming the file and
/// what was expected, and leaves the store exactly as it was.
#[test]
fn unreadable_files_fail_cleanly_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = generate(dir.path(), 200, 9, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&good));
    let before = snapshot(&store);
    let run_date = ingested_run_date(&store);

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
        let after = snapshot(&store);
        let changed: Vec<&String> = after
            .keys()
            .filter(|k| !k.starts_with("runs/") && before.get(*k) != after.get(*k))
            .collect();
        assert!(changed.is_empty(), "{want}: outputs changed: {changed:?}");
        let failed = last_manifest(&store, "ingest");
        assert_eq!(
            failed["status"], "failed",
            "a failed run still records its manifest"
        );
    }
}
