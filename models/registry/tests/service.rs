//! What a scoring service does, with sgml-models and sgml-registry alone (this test's
//! only dependencies): find the champion in a store, verify it, score rows with it.
//! The bundle is trained here with the same model code the pipeline uses, written as
//! an immutable version and promoted through the registry; then a "service" loads it
//! from a local store and from S3 (moto, through scripts/test).

use std::collections::BTreeMap;

use sgml_models::BundleError;
use sgml_models::bundle::{Bundle, Direction, Field, Gate, Manifest, TrainingData, version_id};
use sgml_models::estimator::{Fit, Params};
use sgml_models::gbdt::GbdtParams;
use sgml_models::metrics::ConformalInterval;
use sgml_models::pricing::{self, KIND_GBDT, PriceInput, PriceModel};
use sgml_registry::publish::{self, Trained};
use sgml_registry::store::{Condition, Store};
use sgml_registry::{Announcer, CHAMPION, RegistryError, versions};

fn row(category: &str, market: &str, i: usize) -> PriceInput {
    PriceInput {
        product_id: Some(format!("p{}", i % 40)),
        category: Some(category.into()),
        brand: Some(["Acme", "Zenith"][i % 2].into()),
        condition: Some(["new", "used"][i % 2].into()),
        market: market.into(),
        seller_country: Some("DE".into()),
        title: Some("a sturdy steel mug ".repeat(1 + i % 3)),
        month: 1 + (i % 12) as u32,
        quantity: None,
        guest: Some(false),
    }
}

/// Mugs cost e^2, lamps e^4; the French market pays e^0.5 more.
fn data() -> (Vec<PriceInput>, Vec<f64>) {
    (0..400)
        .map(|i| {
            let (cat, base) = if i % 2 == 0 {
                ("Mugs", 2.0)
            } else {
                ("Lamps", 4.0)
            };
            let (market, extra) = if i % 3 == 0 { ("FR", 0.5) } else { ("DE", 0.0) };
            (row(cat, market, i), base + extra)
        })
        .unzip()
}

/// A pricing-gbdt bundle as `sgml train pricing` writes one.
fn trained_bundle(seconds: u32) -> Bundle {
    let (rows, y) = data();
    let (matrix, lookups) = pricing::fit_transform(&rows, &y, 5, 1).unwrap();
    let model = GbdtParams {
        trees: 40,
        learning_rate: 0.3,
        threads: 1,
        min_data_in_leaf: 5,
        ..Default::default()
    }
    .check()
    .unwrap()
    .fit(&matrix, &y)
    .unwrap();
    let files = BTreeMap::from([
        (
            "model.txt".to_string(),
            model.to_text().unwrap().into_bytes(),
        ),
        (
            "lookups.json".to_string(),
            serde_json::to_vec(&lookups).unwrap(),
        ),
        (
            "interval.json".to_string(),
            serde_json::to_vec(&ConformalInterval::calibrate(&[0.2; 30], 0.9)).unwrap(),
        ),
    ]);
    let created = format!("20261201T0000{seconds:02}Z");
    let manifest = Manifest {
        name: "pricing".into(),
        version: version_id(&created, created.as_bytes()),
        kind: KIND_GBDT.into(),
        created_at: "2026-12-01T00:00:00Z".into(),
        code_version: "test".into(),
        parameters: serde_json::json!({}),
        seed: 1,
        training_data: TrainingData::default(),
        input_schema: pricing::input_schema(),
        output_schema: vec![Field {
            name: "log_price_base".into(),
            dtype: "f64".into(),
            nullable: false,
        }],
        metrics: BTreeMap::from([("rmse_log".into(), 0.1)]),
        baseline: serde_json::json!({}),
        gate: Gate {
            metric: "rmse_log".into(),
            direction: Direction::Lower,
            tolerance: 0.005,
        },
        files: vec![],
    };
    Bundle::new(manifest, files).unwrap()
}

/// Publish (the pipeline's side), then load and score (the service's side).
fn a_service_scores_the_champion(store: &dyn Store) {
    let bundle = trained_bundle(1);
    let version = bundle.manifest().version.clone();
    versions::write_version(store, &bundle, |_, _| {}).unwrap();
    let promoted = publish::promote_trained(store, &Announcer::Off, "pricing", &version).unwrap();
    assert!(matches!(promoted, Trained::Promoted(p) if p.to == version));

    // The service: resolve the alias, verify, build the scorer, score raw attributes.
    let champion = publish::load_alias(store, "pricing", CHAMPION)
        .unwrap()
        .expect("a champion");
    assert_eq!(champion.manifest().version, version);
    let model = PriceModel::from_bundle(&champion).unwrap();
    let priced = model
        .price(&[row("Mugs", "DE", 2), row("Lamps", "FR", 3)])
        .unwrap();
    assert!((priced[0].log_price - 2.0).abs() < 0.15, "{priced:?}");
    assert!((priced[1].log_price - 4.5).abs() < 0.15, "{priced:?}");
    assert!(priced[0].low < priced[0].log_price && priced[0].log_price < priced[0].high);

    // A version never compared with this champion cannot replace it without --force.
    let challenger = trained_bundle(2);
    let v2 = challenger.manifest().version.clone();
    versions::write_version(store, &challenger, |_, _| {}).unwrap();
    assert!(matches!(
        publish::promote_trained(store, &Announcer::Off, "pricing", &v2).unwrap(),
        Trained::Kept(_)
    ));

    // Bytes changed after publishing: the service refuses to load them.
    let key = format!(
        "{}model.txt",
        sgml_registry::layout::version_prefix("pricing", &version)
    );
    let mut bytes = store.get(&key).unwrap().unwrap().bytes;
    let n = bytes.len() / 2;
    bytes[n] ^= 1;
    store.put(&key, &bytes, Condition::Always).unwrap();
    let err = publish::load_alias(store, "pricing", CHAMPION).unwrap_err();
    assert!(
        matches!(&err, RegistryError::Unverified { source: BundleError::ChecksumMismatch { path, .. }, .. } if path == "model.txt"),
        "{err}"
    );
}

#[test]
fn a_service_scores_the_champion_of_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = sgml_registry::LocalStore::new(dir.path()).unwrap();
    a_service_scores_the_champion(&store);
}

#[cfg(feature = "s3")]
#[test]
fn a_service_scores_the_champion_of_an_s3_store() {
    use sgml_registry::store::{S3Options, S3Store};
    let endpoint = std::env::var("SGML_TEST_S3_ENDPOINT").expect(
        "SGML_TEST_S3_ENDPOINT is not set: run the tests through scripts/test, which starts the S3 test server",
    );
    let options = S3Options {
        endpoint: Some(endpoint),
    };
    let bucket = format!("sgml-service-{}", std::process::id());
    let admin = S3Store::open(&format!("s3://{bucket}"), &options).unwrap();
    let (client, b) = admin.client();
    admin
        .block_on(client.create_bucket().bucket(b).send())
        .expect("create the test bucket");
    let store = S3Store::open(&format!("s3://{bucket}/svc"), &options).unwrap();
    a_service_scores_the_champion(&store);
}
