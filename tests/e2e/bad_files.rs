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

/// A symbolic link in an input directory that leads outside it is refused, naming the
/// link, before anything is read (nothing of the target reaches stderr or the
/// manifest); a link to a file inside the directory is followed.
#[test]
fn a_link_out_of_the_input_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = generate(dir.path(), 60, 21, 0.0);
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "order_id,SECRET-LINE-MARKER\n1,2\n").unwrap();

    let linked = dir.path().join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    for f in ["orders.csv", "fx_rates.csv"] {
        std::fs::copy(good.join(f), linked.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(&secret, linked.join("products.csv")).unwrap();
    let store = dir.path().join("store");
    let out = run(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&linked));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("products.csv") && err.contains("leaves the input directory"),
        "{err}"
    );
    assert!(!err.contains("SECRET-LINE-MARKER"), "{err}");
    let manifests = snapshot(&store);
    assert!(
        manifests
            .values()
            .all(|b| !String::from_utf8_lossy(b).contains("SECRET-LINE-MARKER")),
        "the target's content reached the store"
    );

    // A link that stays inside the directory is an ordinary input.
    std::fs::remove_file(linked.join("products.csv")).unwrap();
    std::fs::copy(
        good.join("products.csv"),
        linked.join("products-export.data"),
    )
    .unwrap();
    std::os::unix::fs::symlink("products-export.data", linked.join("products.csv")).unwrap();
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&linked));
}

/// A 1 MB header line of one column is quoted briefly: stderr and the run manifest stay
/// small.
#[test]
fn a_huge_header_is_quoted_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let header = format!("{};x\n1;2\n", "h".repeat(1 << 20));
    std::fs::write(input.join("orders.csv"), header).unwrap();
    let store = dir.path().join("store");
    let out = run(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("orders.csv") && err.contains("characters)"),
        "{err}"
    );
    assert!(err.len() < 4096, "stderr is {} bytes", err.len());
    let largest = snapshot(&store).values().map(Vec::len).max().unwrap_or(0);
    assert!(largest < 16 * 1024, "a stored file of {largest} bytes");
}

/// One flipped byte in a stored raw part is caught before use: the next step fails
/// naming the part, and writes nothing.
#[test]
fn a_corrupted_raw_part_is_refused_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store, _, run_date) = ingested_export(dir.path(), 23);
    let part = std::fs::read_dir(store.join(format!("raw/orders/dt={run_date}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a part file");
    // `sha256sum -c` agrees with the checksum beside it before the flip.
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(format!(
            "{}.sha256",
            part.file_name().unwrap().to_string_lossy()
        ))
        .current_dir(part.parent().unwrap())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let mut bytes = std::fs::read(&part).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&part, &bytes).unwrap();
    let before = snapshot(&store);

    let err = fails(sgml(&store).args(["features", "--run-date", &run_date]), 1);
    let name = part.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains("does not match the checksum") && err.contains(&name),
        "{err}"
    );
    let changed = outputs_changed(&before, &store);
    assert!(changed.is_empty(), "{changed:?}");
}

/// A gzip that expands past --max-decompressed-bytes fails the run naming the file and
/// the limit; nothing is committed.
#[test]
fn a_compression_bomb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (good, store, before, run_date) = ingested_export(dir.path(), 29);
    let bomb = dir.path().join("bomb");
    std::fs::create_dir_all(&bomb).unwrap();
    for f in ["products.csv", "fx_rates.csv"] {
        std::fs::copy(good.join(f), bomb.join(f)).unwrap();
    }
    let orders = std::fs::read(good.join("orders.csv")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&orders).unwrap();
    // Zeros after the rows: a few KB compressed, megabytes expanded.
    gz.write_all(&vec![b'0'; 8 << 20]).unwrap();
    std::fs::write(bomb.join("orders.csv.gz"), gz.finish().unwrap()).unwrap();

    let err = fails(
        sgml(&store)
            .args(["ingest", "--demo", "--run-date", &run_date])
            .args(["--max-decompressed-bytes", "1000000", "--input"])
            .arg(&bomb),
        1,
    );
    assert!(
        err.contains("orders.csv.gz") && err.contains("more than 1000000 bytes"),
        "{err}"
    );
    assert!(outputs_changed(&before, &store).is_empty());
}
