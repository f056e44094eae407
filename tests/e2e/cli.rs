use crate::common::*;

#[test]
fn every_subcommand_has_help_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        vec!["generate"],
        vec!["ingest"],
        vec!["retention"],
        vec!["features"],
        vec!["run", "all"],
        vec!["steps"],
    ] {
        let out = ok(sgml(dir.path()).args(&sub).arg("--help"));
        assert!(out.contains("Usage:"), "{sub:?}: {out}");
    }
    fails(sgml(dir.path()).args(["retention"]), 2);
    fails(
        sgml(dir.path()).args(["features", "--run-date", "2024-02-30"]),
        2,
    );
    fails(sgml(dir.path()).args(["no-such-step"]), 2);
}

#[test]
fn steps_json_is_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(sgml(dir.path()).args(["steps", "--json"]));
    let graph: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = graph
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ingest",
            "retention",
            "features",
            "train-pricing",
            "predict-pricing",
            "embed",
            "images",
            "train-images",
            "predict-images",
            "train-categorize",
            "predict-categorize",
            "train-similar",
            "predict-similar",
            "train-duplicates",
            "predict-duplicates",
            "train-product-segments",
            "predict-product-segments",
            "train-seller-segments",
            "predict-seller-segments"
        ]
    );
    // The Airflow DAG is built from its saved copy: regenerate it with
    // `sgml steps --json > pipelines/airflow/sgml_steps.json` when the graph changes.
    let saved = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipelines/airflow/sgml_steps.json");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        saved, graph,
        "pipelines/airflow/sgml_steps.json is stale: regenerate it with `sgml steps --json`"
    );
}

#[test]
fn real_data_without_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("deletion_requests.csv"),
        "customer_id,requested_ts\n42,2024-01-01 00:00:00\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let err = fails(sgml(&store).args(["ingest", "--input"]).arg(&input), 1);
    assert!(
        err.contains("no anonymization key") && err.contains("SGML_ANON_KEY"),
        "{err}"
    );
    assert!(
        !snapshot(&store).keys().any(|k| k.starts_with("raw/")),
        "nothing ingested"
    );
    // With a key it goes through, and a short key is refused.
    ok(sgml(&store)
        .env("SGML_ANON_KEY", TEST_KEY)
        .args(["ingest", "--input"])
        .arg(&input));
    let err = fails(
        sgml(&store)
            .env("SGML_ANON_KEY", "short")
            .args(["ingest", "--input"])
            .arg(&input),
        1,
    );
    assert!(err.contains("at least 16"), "{err}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 50, 1, 0.1);
    let out = run(sgml(&dir.path().join("store"))
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

/// A marker file in an input directory does not change key policy: `sgml generate`
/// output (which carries SYNTHETIC.json) without a key is refused like any export; the
/// demo key is used only on --demo, and the run manifest records it.
#[test]
fn the_demo_key_is_used_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 50, 3, 0.0);
    assert!(
        input.join("SYNTHETIC.json").is_file(),
        "generate marks its output"
    );
    let store = dir.path().join("store");
    let err = fails(sgml(&store).args(["ingest", "--input"]).arg(&input), 1);
    assert!(
        err.contains("no anonymization key") && err.contains("--demo"),
        "{err}"
    );
    assert!(
        !snapshot(&store).keys().any(|k| k.starts_with("raw/")),
        "nothing ingested"
    );
    let err = fails(
        sgml(&store)
            .env("SGML_ANON_KEY", TEST_KEY)
            .args(["ingest", "--demo", "--input"])
            .arg(&input),
        1,
    );
    assert!(
        err.contains("--demo"),
        "a secret and --demo together: {err}"
    );

    // The way an Airflow worker passes settings: the environment, no flags.
    let out = ok(sgml(&store)
        .env("SGML_DEMO", "true")
        .env("SGML_INPUT", &input)
        .args(["ingest"]));
    let m = last_manifest(&store, "ingest");
    assert_eq!(m["parameters"]["anonymization"], "demo");
    assert!(m["notes"].to_string().contains("DEMO KEY"), "{m}");

    // The last stdout line is the run's summary in one line of JSON (the task's XCom).
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap()).expect("a JSON summary line");
    assert_eq!(summary["step"], "ingest");
    assert_eq!(summary["run_id"], m["run_id"]);
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["counts"], m["counts"]);
    assert_eq!(
        summary["outputs"].as_u64().unwrap() as usize,
        m["outputs"].as_array().unwrap().len()
    );
    assert!(summary["rows_written"].as_u64().unwrap() > 0, "{summary}");
    assert!(store.join(summary["manifest"].as_str().unwrap()).is_file());
    ok(sgml(&store)
        .env("SGML_ANON_KEY", TEST_KEY)
        .args(["ingest", "--input"])
        .arg(&input));
    assert_eq!(
        last_manifest(&store, "ingest")["parameters"]["anonymization"],
        "secret"
    );
}

/// Versions and alias names are names, not paths: nothing outside the store is listed
/// or shown, and an alias cannot be named `a b` or `team/x`.
#[test]
fn names_are_not_paths() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let err = fails(
        sgml(&store).args(["models", "show", "pricing", "--version", "../../../../etc"]),
        1,
    );
    assert!(err.contains("invalid version"), "{err}");
    for alias in ["a b", "team/x", ""] {
        let err = fails(
            sgml(&store).args([
                "models",
                "publish",
                "pricing",
                "--version",
                "v1",
                "--alias",
                alias,
            ]),
            1,
        );
        assert!(err.contains("invalid alias name"), "{alias:?}: {err}");
    }
}

/// `sgml … | head -1`: when the reader of stdout has gone, sgml ends quietly (exit 0,
/// no panic), as other command-line tools do.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sgml(dir.path())
        .args(["steps"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before sgml writes
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
