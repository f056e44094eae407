//! What a service links: sgml-registry and sgml-serve must never pull in the
//! pipeline's heavy stacks (polars, postgres, the command line, candle). Checked on the
//! real dependency graph, `cargo tree -e normal`, for each crate with the features a
//! service would turn on.

use std::process::Command;

const FORBIDDEN: &[&str] = &["polars", "postgres", "clap", "candle-core", "candle-nn"];

/// The crates in `cargo tree -e normal -p PACKAGE` with `features`.
fn normal_dependencies(package: &str, features: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "tree",
        "--locked",
        "--offline",
        "-e",
        "normal",
        "--prefix",
        "none",
    ])
    .args([
        "--format",
        "{p}",
        "--manifest-path",
        manifest,
        "-p",
        package,
    ]);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn services_link_no_pipeline_stack() {
    for (package, features) in [
        ("sgml-registry", ""),
        ("sgml-registry", "s3,amqp"),
        ("sgml-serve", ""),
    ] {
        let deps = normal_dependencies(package, features);
        assert!(
            deps.iter().any(|d| d == "sgml-models"),
            "{package}: the tree is not what it seems: {deps:?}"
        );
        for bad in FORBIDDEN {
            assert!(
                !deps.iter().any(|d| d == bad),
                "{package} (features {features:?}) depends on {bad}"
            );
        }
    }
    // And the check can fail: the pipeline crate has them all.
    let pipeline = normal_dependencies("sgml-pipelines", "");
    assert!(pipeline.iter().any(|d| d == "polars"));
}
