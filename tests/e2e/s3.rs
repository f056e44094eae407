//! Against a real S3 protocol server on loopback: moto's standalone server, which
//! `scripts/test` starts and names in SGML_TEST_S3_ENDPOINT. The code under test is
//! the same that talks to AWS; only the endpoint differs.

use std::process::Command;

use polars::prelude::DataFrame;
use sgml_registry::store::{
    Bounded, Condition, MULTIPART_THRESHOLD, S3Options, S3Store, Store, StoreError,
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
    // A server-side copy leaves the source, and outlives it.
    s.copy("y/moved=1 (a).json", "z/copy.json").unwrap();
    s.delete("y/moved=1 (a).json").unwrap();
    assert_eq!(s.get("z/copy.json").unwrap().unwrap().bytes, b"zero");
    s.delete("z/copy.json").unwrap();
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

    // Bounded reads: the whole object when it fits, its size (bytes unread) when not.
    match s.get_bounded("big.bin", big.len() as u64).unwrap() {
        Some(Bounded::Object(o)) => assert_eq!(o.bytes, big),
        other => panic!("{:?}", other.map(|_| "not the object")),
    }
    assert!(matches!(
        s.get_bounded("big.bin", 1024).unwrap(),
        Some(Bounded::TooLarge { bytes }) if bytes == big.len() as u64
    ));
    assert!(s.get_bounded("absent.bin", 1024).unwrap().is_none());
}

/// `sgml run all` with an s3:// store: every area lands in the bucket, the champion
/// is published there, and a tampered object is refused.
#[test]
fn run_all_against_s3() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1500, 21, 0.0);
    let bucket = bucket("runall");
    let uri = format!("s3://{bucket}/sgml");
    ok(sgml_s3(&uri)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
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
    let alias = sgml_registry::publish::read_alias(&s, "pricing", "champion")
        .unwrap()
        .expect("run all published a champion");
    let shown = ok(sgml_s3(&uri).args(["models", "show", "pricing"]));
    assert!(
        shown.contains(&alias.0.version) && shown.contains("rmse_log"),
        "{shown}"
    );

    // `sgml serve` loads the champion from the bucket.
    {
        use crate::serve::{SECRET, Server, post, rows, token};
        let server = Server::start({
            let mut c = sgml_s3(&uri);
            c.env("SGML_JWT_SECRET", SECRET).arg("serve");
            c
        });
        let (status, body) = post(
            &server.url("/v1/models/pricing/predict"),
            Some(&token("predict:pricing")),
            &serde_json::to_vec(&rows()).unwrap(),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["version"], alias.0.version.as_str());
    }

    // Change one byte of the published model in the bucket: refused, naming the file.
    let key = format!("models/pricing/{}/model.txt", alias.0.version);
    let mut bytes = s.get(&key).unwrap().unwrap().bytes;
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    s.put(&key, &bytes, Condition::Always).unwrap();
    let err = fails(sgml_s3(&uri).args(["models", "show", "pricing"]), 1);
    assert!(err.contains("model.txt"), "{err}");
}

/// `ingest` split two ways on S3 and merged (the parts' files copied server-side)
/// stores the orders one local run stores, and leaves no part, salt or staging
/// behind.
#[test]
fn split_ingest_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 400, 59, 0.05);
    let run_date = "2026-03-01";
    let local = dir.path().join("local");
    ok(sgml(&local)
        .args(["ingest", "--demo", "--run-date", run_date, "--input"])
        .arg(&input));
    let bucket = bucket("ingest-parts");
    let uri = format!("s3://{bucket}/sgml");
    for extra in [
        ["--partition", "1/2"],
        ["--partition", "2/2"],
        ["--merge", "2"],
    ] {
        ok(sgml_s3(&uri)
            .args(["ingest", "--demo", "--run-date", run_date])
            .args(extra)
            .arg("--input")
            .arg(&input));
    }
    let s = open(&uri);
    let keys = s.list("").unwrap();
    let left: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("parts/") || k.starts_with("_staging/"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let prefix = format!("raw/orders/dt={run_date}/");
    let mut merged: Option<DataFrame> = None;
    for key in keys
        .iter()
        .filter(|k| k.starts_with(&prefix) && k.ends_with(".parquet"))
    {
        let df = parquet_bytes(&s.get(key).unwrap().unwrap().bytes);
        match &mut merged {
            Some(acc) => {
                acc.vstack_mut(&df).unwrap();
            }
            None => merged = Some(df),
        }
    }
    // Customer keys aside: a deleted customer's unlinked key differs between any
    // two ingests (partition.rs checks the split keeps one per customer).
    let by_key = |df: DataFrame| {
        df.sort(["order_id", "line_no"], Default::default())
            .unwrap()
            .drop("customer_key")
            .unwrap()
    };
    let whole = read_partition(&local.join(prefix));
    assert!(whole.height() > 100);
    assert_eq!(by_key(merged.expect("merged orders")), by_key(whole));
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
    let err = fails(cmd.args(["ingest", "--demo", "--input"]).arg(&input), 1);
    assert!(err.contains("s3://nowhere/sgml/"), "{err}");
    assert!(err.contains("attempts") || err.contains("connect"), "{err}");
}

/// The publisher killed between the protocol's steps on S3 (see publish.rs for the
/// local store): the champion always loads verified, the old one or the new one.
#[test]
fn a_publisher_killed_on_s3_leaves_a_loadable_champion() {
    use sgml_registry::publish;
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1500, 23, 0.0);
    let bucket = bucket("crash");
    let uri = format!("s3://{bucket}/sgml");
    ok(sgml_s3(&uri)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
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
            sgml_registry::layout::version_of_manifest(l.split_whitespace().nth(1)?, "pricing")
        })
        .expect("train printed its bundle");
    crate::publish::assert_publish_is_crash_safe(&s, || sgml_s3(&uri), &old, &new);
}

/// A TCP proxy in front of the S3 test server that can be made to fail the ways a
/// real S3 endpoint fails: answer `503 SlowDown`, or stop (connections refused or
/// cut). moto cannot be told to do either on demand, so this is the one mock in these
/// tests, and it only ever fails requests: everything it forwards is moto's.
struct FaultyProxy {
    pub endpoint: String,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// Answer this many new connections with 503 SlowDown.
    slow_downs: std::sync::atomic::AtomicUsize,
    slow_downs_sent: std::sync::atomic::AtomicUsize,
    /// Stop the server at the first PUT (the run's first write).
    stop_at_first_put: std::sync::atomic::AtomicBool,
    down: std::sync::atomic::AtomicBool,
}

impl FaultyProxy {
    fn start(upstream: &str) -> FaultyProxy {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering::SeqCst;
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = std::sync::Arc::new(ProxyState::default());
        let s = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if s.down.load(SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                if s.slow_downs
                    .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    s.slow_downs_sent.fetch_add(1, SeqCst);
                    std::thread::spawn(move || slow_down(client));
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let s2 = s.clone();
                let (c2, s2_stream) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let s3 = s.clone();
                std::thread::spawn(move || pipe(client, server, &s2, true));
                std::thread::spawn(move || pipe(s2_stream, c2, &s3, false));
            }
        });
        FaultyProxy { endpoint, state }
    }
}

/// Reads one request head and answers 503 SlowDown, as S3 does when throttling.
fn slow_down(mut client: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let _ = write!(
        client,
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// Copies one direction of a connection until either side closes or the proxy goes
/// down; the client-to-server side watches for the first PUT when asked to.
fn pipe(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    state: &ProxyState,
    client_side: bool,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering::SeqCst;
    let _ = from.set_read_timeout(Some(std::time::Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    // Requests start a stream or follow the end of the previous one (a newline).
    let mut after_newline = true;
    loop {
        if state.down.load(SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(_) => break,
        };
        let chunk = &buf[..n];
        if client_side && state.stop_at_first_put.load(SeqCst) {
            let put = (after_newline && chunk.starts_with(b"PUT /"))
                || chunk.windows(6).any(|w| w == b"\nPUT /");
            if put {
                state.down.store(true, SeqCst);
                break;
            }
        }
        after_newline = chunk.ends_with(b"\n");
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// S3 throttling (503 SlowDown) is retried with backoff and the run succeeds.
#[test]
fn throttled_s3_requests_are_retried() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 200, 24, 0.0);
    let bucket = bucket("throttle");
    let uri = format!("s3://{bucket}/sgml");
    let proxy = FaultyProxy::start(&endpoint());
    proxy.state.slow_downs.store(3, SeqCst);
    ok(sgml_s3_at(&uri, &proxy.endpoint)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    assert_eq!(proxy.state.slow_downs_sent.load(SeqCst), 3);
    assert!(
        open(&uri)
            .list("raw/orders/")
            .unwrap()
            .iter()
            .any(|k| k.ends_with(".parquet")),
        "ingest wrote through the retries"
    );
}

/// The S3 server stops mid-run (at the run's first write): retries, then a clear
/// error naming the object; every object written before is intact and the champion
/// still loads, verified.
#[test]
fn s3_stopping_mid_run_leaves_earlier_outputs_intact() {
    use sgml_registry::publish;
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 1500, 25, 0.0);
    let bucket = bucket("stopped");
    let uri = format!("s3://{bucket}/sgml");
    ok(sgml_s3(&uri)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    let s = open(&uri);
    let before: Vec<(String, Vec<u8>)> = s
        .list("")
        .unwrap()
        .into_iter()
        .map(|k| {
            let b = s.get(&k).unwrap().unwrap().bytes;
            (k, b)
        })
        .collect();
    let champion = publish::read_alias(&s, "pricing", "champion")
        .unwrap()
        .unwrap()
        .0
        .version;
    let run_date = before
        .iter()
        .find_map(|(k, _)| {
            k.strip_prefix("features/order_lines/dt=")
                .map(|r| r[..10].to_string())
        })
        .unwrap();

    let proxy = FaultyProxy::start(&endpoint());
    proxy.state.stop_at_first_put.store(true, SeqCst);
    let err = fails(
        sgml_s3_at(&uri, &proxy.endpoint).args([
            "train",
            "pricing",
            "--trees",
            "20",
            "--run-date",
            &run_date,
        ]),
        1,
    );
    assert!(
        proxy.state.down.load(SeqCst),
        "the server was stopped mid-run"
    );
    assert!(err.contains(&format!("s3://{bucket}/sgml/")), "{err}");
    assert!(
        err.contains("attempts") || err.contains("connect") || err.contains("dispatch"),
        "{err}"
    );
    for (key, bytes) in &before {
        let now = s.get(key).unwrap().unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(&now.bytes, bytes, "{key} changed");
    }
    let loaded = publish::load_alias(&s, "pricing", "champion")
        .unwrap()
        .unwrap();
    assert_eq!(loaded.manifest().version, champion);
}
