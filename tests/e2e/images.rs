//! Product photos end to end: `sgml images` on a generated export whose photos have
//! the defects real uploads have — measures and verdicts for the readable ones, the
//! rest quarantined under their rule, and the run going on.

use std::collections::BTreeSet;

use crate::common::*;

#[test]
fn images_checks_photos_and_quarantines_bad_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export");
    ok(sgml(&dir.path().join("unused-store"))
        .args([
            "generate",
            "--orders",
            "1500",
            "--seed",
            "11",
            "--bad-fraction",
            "0.1",
            "--photos",
            "0.4",
            "--out",
        ])
        .arg(&input));
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);

    // Without an images directory no local path may be read: nothing is, and the run
    // says where to look rather than writing an empty table.
    let err = fails(sgml(&store).args(["images", "--run-date", &run_date]), 1);
    assert!(err.contains("--images-dir"), "{err}");
    assert!(
        !store
            .join(format!("features/images/dt={run_date}"))
            .exists()
    );

    ok(sgml(&store)
        .args(["images", "--run-date", &run_date, "--images-dir"])
        .arg(&input));
    let df = read_partition(&store.join(format!("features/images/dt={run_date}")));
    let names: Vec<&str> = df.get_column_names().iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "product_id",
            "image_uri",
            "sha256",
            "width",
            "height",
            "format",
            "blur",
            "brightness",
            "contrast",
            "phash",
            "verdict"
        ]
    );
    let widths = df.column("width").unwrap().u32().unwrap();
    assert!(widths.into_no_null_iter().all(|w| w >= 64));
    assert!(strings(&df, "format").iter().all(|f| f == "jpeg"));
    assert!(
        strings(&df, "phash")
            .iter()
            .all(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()))
    );
    let verdicts: BTreeSet<String> = strings(&df, "verdict").into_iter().collect();
    assert!(verdicts.contains("ok"), "{verdicts:?}");
    assert!(
        verdicts.contains("dark") && verdicts.contains("blurry"),
        "the generator's dark and blurred photos are judged so: {verdicts:?}"
    );
    // Relistings carry edited copies of their original's photo: some photos differ
    // in bytes but not in picture.
    let hashes: Vec<u64> = strings(&df, "phash")
        .iter()
        .map(|h| u64::from_str_radix(h, 16).unwrap())
        .collect();
    let distinct_files: BTreeSet<String> = strings(&df, "sha256").into_iter().collect();
    assert_eq!(distinct_files.len(), df.height(), "each listing's own file");
    let near = hashes
        .iter()
        .enumerate()
        .flat_map(|(i, a)| hashes[i + 1..].iter().map(move |b| (a ^ b).count_ones()))
        .filter(|d| *d <= 6)
        .count();
    assert!(near > 0, "edited copies hash alike");

    let m = last_manifest(&store, "images");
    let counts = &m["counts"]["images"];
    let (rows_in, accepted, quarantined) = (
        counts["rows_in"].as_u64().unwrap(),
        counts["accepted"].as_u64().unwrap(),
        counts["quarantined"].as_u64().unwrap(),
    );
    assert_eq!(accepted, df.height() as u64);
    assert_eq!(rows_in, accepted + quarantined);
    let run_id = m["run_id"].as_str().unwrap();
    let rejects = read_partition(&store.join(format!("quarantine/images/{run_id}")));
    assert_eq!(rejects.height() as u64, quarantined);
    let rules: BTreeSet<String> = strings(&rejects, "_rule").into_iter().collect();
    assert_eq!(
        rules,
        ["images.decode", "images.read", "images.size", "images.uri"]
            .map(String::from)
            .into(),
        "truncated and non-image files, missing files, thumbnails, paths out of the export"
    );
    let outside = strings(&rejects, "image_uri");
    assert!(outside.iter().any(|u| u.starts_with("../")));
}
