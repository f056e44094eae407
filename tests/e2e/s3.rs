//! Against a real S3 protocol server on loopback: moto's standalone server, which
//! `scripts/test` starts and names in SGML_TEST_S3_ENDPOINT. The code under test is
//! the same that talks to AWS; only the endpoint differs.

use std::process::Command;

use sgml_pipelines::store::{
    Condition, MULTIPART_THRESHOLD, S3Options, S3Store, Store, StoreError,
};

use crate::common::*;

fn endpoint() -> String {
    std::env::var("SGML_TEST_S3_ENDPOINT").expect(
        "SGML_TEST_S3_ENDPOINT is not set: run the tests through scripts/test, which starts the S3 test server",
    )
}

/// A fresh bucket per test, so tests can run in parallel.
fn bucket(name: &str) -> String {
    let bucket = format!("sgml-{name}-{}", rand_suffix());
    let store = S3Store::open(
        &format!("s3://{bucket}"),
        &S3Options {
            endpoint: Some(endpoint()),
        },
    )
    .unwrap();
    let (client, b) = store.client();
    store
        .block_on(client.create_bucket().bucket(b).send())
        .expect("create the test bucket");
    bucket
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}", nanos ^ u128::from(std::process::id()))
}

fn open(uri: &str) -> S3Store {
    S3Store::open(
        uri,
        &S3Options {
            endpoint: Some(endpoint()),
        },
    )
    .unwrap()
}

fn sgml_s3(uri: &str) -> Command {
    sgml_s3_at(uri, &endpoint())
}

fn sgml_s3_at(uri: &str, endpoint: &str) -> Command {
    let mut cmd = sgml_bare();
    cmd.args(["--store", uri, "--s3-endpoint", endpoint]);
    cmd
}

/// The store contract on S3: whole-object puts, create-only, compare-and-swap,
/// sorted listing under the prefix only, rename, multipart for large objects.
#[test]
fn s3_store_keeps_the_store_contract() {
    let bucket = bucket("contract");
    let s = open(&format!("s3://{bucket}/team/a"));
    let other = open(&format!("s3://{bucket}/team/b"));
    other
        .put("x/1.json", b"other prefix", Condition::Always)
        .unwrap();

    assert!(s.get("x/1.json").unwrap().is_none());
    let e1 = s.put("x/1.json", b"one", Condition::IfAbsent).unwrap();
    match s.put("x/1.json", b"again", Condition::IfAbsent) {
        Err(StoreError::PreconditionFailed { uri, .. }) => {
            assert_eq!(uri, format!("s3://{bucket}/team/a/x/1.json"))
        }
        other => panic!("create-only overwrote: {other:?}"),
    }
    let e2 = s
        .put("x/1.json", b"two", Condition::IfMatch(e1.clone()))
        .unwrap();
    assert_ne!(e1, e2);
    assert!(matches!(
        s.put("x/1.json", b"stale", Condition::IfMatch(e1)),
        Err(StoreError::PreconditionFailed { .. })
    ));
    let got = s.get("x/1.json").unwrap().unwrap();
    assert_eq!(
        (got.bytes.as_slice(), got.etag.as_str()),
        (&b"two"[..], e2.as_str())
    );

    s.put("x/0.json", b"zero", Condition::Always).unwrap();
    s.rename("x/0.json", "y/moved=1 (a).json").unwrap();
    assert_eq!(s.list("").unwrap(), ["x/1.json", "y/moved=1 (a).json"]);
    assert_eq!(s.get("y/moved=1 (a).json").unwrap().unwrap().bytes, b"zero");
    s.delete("y/moved=1 (a).json").unwrap();
    s.delete("never/existed").unwrap();
    assert_eq!(s.list("x/").unwrap(), ["x/1.json"]);

    // Large objects go up in parts and keep the create-only condition.
    let big: Vec<u8> = (0..MULTIPART_THRESHOLD + 3 * 1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect();
    s.put("big.bin", &big, Condition::IfAbsent).unwrap();
    assert_eq!(s.get("big.bin").unwrap().unwrap().bytes, big);
    assert!(matches!(
        s.put("big.bin", &big, Condition::IfAbsent),
        Err(StoreError::PreconditionFailed { .. })
    ));
}

/// `sgml run all` with an s3:// store: every area lands in the bucket, the champion
/// is published there, and a tampered object is refused.
#[test]
fn run_all_against_s3() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1500, 21, 0.0);
    let bucket = bucket("runall");
    let uri = format!("s3://{bucket}/sgml");
    ok(sgml_s3(&uri).args(["run", "all", "--input"]).arg(&input));
    let s = open(&uri);
    let keys = s.list("").unwrap();
    for area in [
        "raw/orders/",
        "features/order_lines/",
        "models/pricing/",
        "predictions/pricing/",
        "runs/",
    ] {
        assert!(
            keys.iter().any(|k| k.starts_with(area)),
            "no {area} in {keys:?}"
        );
    }
    assert!(
        !keys.iter().any(|k| k.starts_with("_staging/")),
        "staging left behind"
    );
    let alias = sgml_pipelines::publish::read_alias(&s, "pricing", "champion")
        .unwrap()
        .expect("run all published a champion");
    let shown = ok(sgml_s3(&uri).args(["models", "show", "pricing"]));
    assert!(
        shown.contains(&alias.0.version) && shown.contains("rmse_log"),
        "{shown}"
    );

    // Change one byte of the published model in the bucket: refused, naming the file.
    let key = format!("models/pricing/{}/model.txt", alias.0.version);
    let mut bytes = s.get(&key).unwrap().unwrap().bytes;
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    s.put(&key, &bytes, Condition::Always).unwrap();
    let err = fails(sgml_s3(&uri).args(["models", "show", "pricing"]), 1);
    assert!(err.contains("model.txt"), "{err}");
}

/// An S3 endpoint that does not answer: retried, then a clear error naming the
/// object, and nothing written.
#[test]
fn unreachable_s3_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 200, 22, 0.0);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = sgml_s3_at("s3://nowhere/sgml", &format!("http://127.0.0.1:{port}"));
    let err = fails(cmd.args(["ingest", "--input"]).arg(&input), 1);
    assert!(err.contains("s3://nowhere/sgml/"), "{err}");
    assert!(err.contains("attempts") || err.contains("connect"), "{err}");
}

/// The publisher killed between the protocol's steps on S3 (see publish.rs for the
/// local store): the champion always loads verified, the old one or the new one.
#[test]
fn a_publisher_killed_on_s3_leaves_a_loadable_champion() {
    use sgml_pipelines::publish;
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1500, 23, 0.0);
    let bucket = bucket("crash");
    let uri = format!("s3://{bucket}/sgml");
    ok(sgml_s3(&uri).args(["run", "all", "--input"]).arg(&input));
    let s = open(&uri);
    let champion = |s: &S3Store| {
        publish::read_alias(s, "pricing", "champion")
            .unwrap()
            .unwrap()
            .0
            .version
    };
    let old = champion(&s);
    let run_date = s
        .list("features/order_lines/")
        .unwrap()
        .iter()
        .find_map(|k| k.split("dt=").nth(1).map(|d| d[..10].to_string()))
        .unwrap();
    let out = ok(sgml_s3(&uri).args([
        "train",
        "pricing",
        "--no-promote",
        "--trees",
        "30",
        "--seed",
        "9",
        "--run-date",
        &run_date,
    ]));
    let new = out
        .lines()
        .find_map(|l| {
            sgml_pipelines::steps::train_pricing::version_of(l.split_whitespace().nth(1)?)
        })
        .expect("train printed its bundle");
    crate::publish::assert_publish_is_crash_safe(&s, || sgml_s3(&uri), &old, &new);
}
