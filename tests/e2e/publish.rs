use sgml_models::BundleError;
use sgml_registry::publish::{self, Action};
use sgml_registry::store::{LocalStore, Store};
use sgml_registry::{Announcer, RegistryError, layout};

use crate::common::*;

fn trained_version(store: &std::path::Path) -> String {
    last_trained(store)
}

fn champion(store: &std::path::Path) -> String {
    champion_of(store)
}

/// `run all` publishes its model; a worse challenger is stopped by the gate unless
/// forced; rollback restores the previous champion and its predictions; the history
/// records every move; a tampered champion is never loaded.
#[test]
fn gate_force_history_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_after_run_all(dir.path(), 1500, 11);
    let run_date = ingested_run_date(&store);
    let v1 = trained_version(&store);
    assert_eq!(champion(&store), v1, "run all promotes its model");

    // A deliberately weak challenger (3 trees): measured against v1 on its holdout.
    let out = ok(sgml(&store).args([
        "train",
        "pricing",
        "--trees",
        "3",
        "--learning-rate",
        "0.05",
        "--run-date",
        &run_date,
    ]));
    let v2 = trained_version(&store);
    assert!(out.contains("not promoted (gate)"), "{out}");
    assert_eq!(champion(&store), v1);
    // The summary line says which version training wrote and that the gate kept it.
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["version"], v2.as_str(), "{summary}");
    assert!(summary["champion"].is_null(), "{summary}");
    assert!(
        summary["gate"].as_str().is_some_and(|g| !g.is_empty()),
        "{summary}"
    );
    let manifest = sgml_models::Bundle::load_dir(&store.join("models/pricing").join(&v2)).unwrap();
    assert_eq!(
        manifest
            .manifest()
            .training_data
            .champion_version
            .as_deref(),
        Some(v1.as_str())
    );
    let err = fails(
        sgml(&store).args(["models", "publish", "pricing", "--version", &v2]),
        1,
    );
    assert!(err.contains("gate") && err.contains(&v1), "{err}");

    let out = ok(sgml(&store).args([
        "models",
        "publish",
        "pricing",
        "--version",
        &v2,
        "--force",
        "--reason",
        "test",
    ]));
    assert!(out.contains(&v2), "{out}");
    assert_eq!(champion(&store), v2);
    ok(sgml(&store).args(["predict", "pricing", "--run-date", &run_date]));
    let listed = ok(sgml(&store).args(["models", "list", "pricing"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&v2) && l.contains("champion")),
        "{listed}"
    );

    // Publishing the champion again (a retried task) changes nothing: no history
    // record, and `previous` never names the version itself.
    let again =
        ok(sgml(&store).args(["models", "publish", "pricing", "--version", &v2, "--force"]));
    assert!(again.contains("already names version"), "{again}");
    ok(sgml(&store).args(["models", "rollback", "pricing"]));
    assert_eq!(
        champion(&store),
        v1,
        "rollback restores the previous champion"
    );
    // Predictions after rollback are v1's again, identical to the first run's.
    let first = read_parquet(&store.join(format!(
        "predictions/pricing/{v1}/dt={run_date}/part-0.parquet"
    )));
    ok(sgml(&store).args(["predict", "pricing", "--run-date", &run_date]));
    let again = read_parquet(&store.join(format!(
        "predictions/pricing/{v1}/dt={run_date}/part-0.parquet"
    )));
    assert!(
        first.equals_missing(&again),
        "rollback restores the predictions"
    );

    let history = ok(sgml(&store).args(["models", "history", "pricing"]));
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 3, "{history}");
    assert!(lines[0].contains("promote") && lines[0].contains(&v1));
    assert!(lines[1].contains("(forced)") && lines[1].contains(&v2));
    assert!(lines[2].contains("rollback") && lines[2].contains(&v1));
    // Nothing left to roll back to: v1 replaced no one.
    let err = fails(sgml(&store).args(["models", "rollback", "pricing"]), 1);
    assert!(err.contains("no earlier version"), "{err}");

    // An alias edited by hand to name another version (its manifest digest left as
    // published) is refused by batch prediction exactly as the server refuses it.
    let alias_path = store.join("models/pricing/aliases/champion.json");
    let published = std::fs::read(&alias_path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_slice(&published).unwrap();
    edited["version"] = v2.clone().into();
    std::fs::write(&alias_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let err = fails(
        sgml(&store).args(["predict", "pricing", "--run-date", &run_date]),
        1,
    );
    assert!(
        err.contains("not the one alias champion was published with"),
        "{err}"
    );
    std::fs::write(&alias_path, published).unwrap();

    // Tamper with the champion's model: loading the alias refuses it.
    let model = store.join("models/pricing").join(&v1).join("model.txt");
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len() - 10;
    bytes[n] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let s = LocalStore::new(&store).unwrap();
    let err =
        publish::load_alias(&s, "pricing", "champion").expect_err("tampered champion refused");
    assert!(
        matches!(&err, RegistryError::Unverified { source: BundleError::ChecksumMismatch { path, .. }, .. } if path == "model.txt"),
        "{err}"
    );
    let err = fails(
        sgml(&store).args(["predict", "pricing", "--run-date", &run_date]),
        1,
    );
    assert!(err.contains("model.txt"), "{err}");
}

/// Two publishers prepared against the same alias state: the first flip wins, the
/// second fails naming the winner, and the history records one promotion.
#[test]
fn racing_publishers_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = store_after_run_all(dir.path(), 1500, 12);
    let run_date = ingested_run_date(&store_dir);
    let mut versions = Vec::new();
    for seed in ["1", "2"] {
        ok(sgml(&store_dir).args([
            "train",
            "pricing",
            "--no-promote",
            "--trees",
            "40",
            "--seed",
            seed,
            "--run-date",
            &run_date,
        ]));
        versions.push(trained_version(&store_dir));
    }
    let store = LocalStore::new(&store_dir).unwrap();
    let before = publish::log(&store, "pricing").unwrap().len();
    let a = publish::prepare(&store, "pricing", &versions[0], "champion", true, "a").unwrap();
    let b = publish::prepare(&store, "pricing", &versions[1], "champion", true, "b").unwrap();
    publish::commit(&store, &Announcer::Off, a).unwrap();
    match publish::commit(&store, &Announcer::Off, b) {
        Err(RegistryError::LostRace { winner, .. }) => assert_eq!(winner, versions[0]),
        other => panic!("expected a lost race, got {:?}", other.map(|p| p.to)),
    }
    assert_eq!(champion(&store_dir), versions[0]);
    // Both moves were logged before their flips; only the winner's happened.
    let log = publish::log(&store, "pricing").unwrap();
    assert_eq!(log.len(), before + 2);
    let (won, lost) = (&log[before], &log[before + 1]);
    assert_eq!(
        (won.promotion.to.as_str(), won.applied),
        (versions[0].as_str(), true)
    );
    assert_eq!(
        (lost.promotion.to.as_str(), lost.applied),
        (versions[1].as_str(), false)
    );
    assert_eq!(won.promotion.action, Action::Promote);
    let shown = ok(sgml(&store_dir).args(["models", "history", "pricing"]));
    assert!(
        shown.lines().last().unwrap().contains("never applied"),
        "{shown}"
    );
    // The alias object is whole JSON naming a verified version.
    let alias = store
        .get(&layout::alias_key("pricing", "champion"))
        .unwrap()
        .unwrap();
    let parsed: publish::Alias = serde_json::from_slice(&alias.bytes).unwrap();
    assert_eq!(parsed.version, versions[0]);
}

/// Kill the publisher at each step of a publish (local store and S3): a reader always
/// loads the old champion or the new one, verified; never an error or a mix.
#[test]
fn a_publisher_killed_at_any_step_leaves_a_loadable_champion() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, old, new) = champion_and_challenger(dir.path(), 1500, 13, 30, &[]);
    let store = LocalStore::new(&store_dir).unwrap();
    assert_publish_is_crash_safe(&store, || sgml(&store_dir), &old, &new);
}

/// Kills `sgml models publish NEW` (run by `sgml`) at each crash point, starting from
/// OLD as champion each time, and loads the champion after each kill: it must verify,
/// score, and be OLD before the alias flip and NEW after it.
pub fn assert_publish_is_crash_safe(
    store: &dyn Store,
    sgml: impl Fn() -> std::process::Command,
    old: &str,
    new: &str,
) {
    let champion = || {
        publish::read_alias(store, "pricing", "champion")
            .unwrap()
            .unwrap()
            .0
            .version
    };
    for point in [
        "after-verify",
        "after-history",
        "before-alias",
        "after-alias",
    ] {
        // Start from the old champion each time (a forced publish back, if needed).
        if champion() != old {
            publish::promote(
                store,
                &Announcer::Off,
                "pricing",
                old,
                "champion",
                true,
                "reset",
            )
            .unwrap();
        }
        let out = sgml()
            .env("SGML_CRASH_AT", point)
            .args(["models", "publish", "pricing", "--version", new, "--force"])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{point}: the publisher was not killed"
        );
        let loaded = publish::load_alias(store, "pricing", "champion")
            .unwrap_or_else(|e| panic!("{point}: the champion does not load: {e}"))
            .expect("a champion");
        let moved = point == "after-alias";
        let expected = if moved { new } else { old };
        assert_eq!(loaded.manifest().version, expected, "{point}");
        // The log knows the move the alias made, and marks one it never made.
        let last = publish::log(store, "pricing").unwrap().pop().unwrap();
        if point != "after-verify" {
            assert_eq!(last.promotion.to, new, "{point}: the move was logged first");
            assert_eq!(last.applied, moved, "{point}");
        }
        // And the model it names scores.
        sgml_models::pricing::PriceModel::from_bundle(&loaded).unwrap();
    }
}
