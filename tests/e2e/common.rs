use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

pub const TEST_KEY: &str = "e2e-test-anonymization-secret";

/// The binary under test, with a clean environment (no store, key, broker or S3
/// endpoint from the caller) and JSON logs.
pub fn sgml_bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sgml"));
    for var in [
        "SGML_STORE",
        "SGML_ANON_KEY",
        "SGML_ANON_KEY_FILE",
        "SGML_AMQP_URL",
        "SGML_S3_ENDPOINT",
        "SGML_INPUT",
        "SGML_MAPPING",
        "SGML_DEMO",
        "SGML_IMAGES_DIR",
        "SGML_LOG",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--log-format").arg("json");
    cmd
}

/// [`sgml_bare`] on a local store.
pub fn sgml(store: &Path) -> Command {
    let mut cmd = sgml_bare();
    cmd.arg("--store").arg(store);
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("sgml runs")
}

pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "sgml failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and expects failure with `code`; returns stderr.
pub fn fails(cmd: &mut Command, code: i32) -> String {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Generates a synthetic export and returns its directory.
pub fn generate(dir: &Path, orders: usize, seed: u64, bad: f64) -> PathBuf {
    let out = dir.join(format!("gen-{orders}-{seed}-{bad}"));
    ok(sgml(&dir.join("unused-store"))
        .args([
            "generate",
            "--orders",
            &orders.to_string(),
            "--seed",
            &seed.to_string(),
            "--bad-fraction",
            &bad.to_string(),
            "--out",
        ])
        .arg(&out));
    out
}

/// A local store after `run all` on a fresh generated export (no bad rows): pricing
/// and categorize champions, predictions, features and embeddings.
pub fn store_after_run_all(dir: &Path, orders: usize, seed: u64) -> PathBuf {
    store_after_run_all_with(dir, orders, seed, &[])
}

/// [`store_after_run_all`] with extra environment for `sgml` (a broker URL, say).
pub fn store_after_run_all_with(
    dir: &Path,
    orders: usize,
    seed: u64,
    env: &[(&str, &str)],
) -> PathBuf {
    let input = generate(dir, orders, seed, 0.0);
    let store = dir.join("store");
    ok(sgml(&store)
        .envs(env.iter().copied())
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    store
}

/// The store after `run all` (its pricing champion `v1`) plus a second pricing
/// version `v2` trained with `trees` trees and not promoted: the set-up of the
/// publishing, serving and event tests. Returns (store, v1, v2).
pub fn champion_and_challenger(
    dir: &Path,
    orders: usize,
    seed: u64,
    trees: usize,
    env: &[(&str, &str)],
) -> (PathBuf, String, String) {
    let store = store_after_run_all_with(dir, orders, seed, env);
    let v1 = champion_of(&store);
    let run_date = ingested_run_date(&store);
    ok(sgml(&store).envs(env.iter().copied()).args([
        "train",
        "pricing",
        "--no-promote",
        "--trees",
        &trees.to_string(),
        "--seed",
        "9",
        "--run-date",
        &run_date,
    ]));
    let v2 = last_trained(&store);
    assert_ne!(v1, v2);
    (store, v1, v2)
}

/// The pricing version the latest `train pricing` wrote.
pub fn last_trained(store: &Path) -> String {
    last_manifest(store, "train-pricing")["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| {
            sgml_registry::layout::version_of_manifest(o["uri"].as_str().unwrap(), "pricing")
        })
        .unwrap()
}

/// The version the pricing champion names.
pub fn champion_of(store: &Path) -> String {
    let s = sgml_registry::LocalStore::new(store).unwrap();
    sgml_registry::publish::read_alias(&s, "pricing", sgml_registry::CHAMPION)
        .unwrap()
        .expect("a pricing champion")
        .0
        .version
}

/// Every file in a store: key → bytes.
pub fn snapshot(store: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                // Dot files are the local store's own (temporary files, the CAS lock),
                // never objects: the store does not list them either.
                let key = p
                    .strip_prefix(store)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(key, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Versions of a model in a local store (directories with a manifest; not aliases/
/// or history/).
pub fn model_versions(store: &Path, model: &str) -> usize {
    std::fs::read_dir(store.join("models").join(model))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("manifest.json").exists())
        .count()
}

pub fn parquet_bytes(bytes: &[u8]) -> DataFrame {
    ParquetReader::new(std::io::Cursor::new(bytes.to_vec()))
        .finish()
        .unwrap()
}

/// Every part file of a partition directory, concatenated.
pub fn read_partition(dir: &Path) -> DataFrame {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    parts.sort();
    let mut frames = parts.iter().map(|p| read_parquet(p));
    let mut acc = frames.next().expect("at least one part");
    for df in frames {
        acc.vstack_mut(&df).unwrap();
    }
    acc
}

pub fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

/// All run manifests of a store, oldest first.
pub fn manifests(store: &Path) -> Vec<serde_json::Value> {
    snapshot(store)
        .into_iter()
        .filter(|(k, _)| k.starts_with("runs/") && k.ends_with("manifest.json"))
        .map(|(_, v)| serde_json::from_slice(&v).unwrap())
        .collect()
}

/// The latest run of a step (by start time: run ids of one second sort at random).
pub fn last_manifest(store: &Path, step: &str) -> serde_json::Value {
    let mut runs: Vec<serde_json::Value> = manifests(store)
        .into_iter()
        .filter(|m| m["step"] == step)
        .collect();
    runs.sort_by_key(|m| m["started_at"].as_str().unwrap().to_string());
    runs.pop().expect("a manifest for the step")
}

/// The run date the latest ingest chose.
pub fn ingested_run_date(store: &Path) -> String {
    last_manifest(store, "ingest")["run_date"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn shared_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name)
}

/// Column of strings from a frame, nulls skipped.
pub fn strings(df: &DataFrame, column: &str) -> Vec<String> {
    df.column(column)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(String::from)
        .collect()
}

/// Same columns and rows; floats may differ in the last bits (parallel sums add in
/// varying order), everything else must be equal.
pub fn assert_frames_close(a: &DataFrame, b: &DataFrame, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (x, y) in a.columns().iter().zip(b.columns()) {
        assert_eq!(x.name(), y.name(), "{what}");
        if x.dtype() == &DataType::Float64 {
            let (x, y) = (x.f64().unwrap(), y.f64().unwrap());
            for (i, (p, q)) in x.iter().zip(y.iter()).enumerate() {
                let close = match (p, q) {
                    (Some(p), Some(q)) => {
                        (p - q).abs() <= 1e-9 * p.abs().max(1.0) || (p.is_nan() && q.is_nan())
                    }
                    (None, None) => true,
                    _ => false,
                };
                assert!(close, "{what}: {} row {i}: {p:?} vs {q:?}", x.name());
            }
        } else {
            assert!(
                x.as_materialized_series()
                    .equals_missing(y.as_materialized_series()),
                "{what}: column {}",
                x.name()
            );
        }
    }
}
