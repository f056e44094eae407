//! `sgml serve`: the real binary on a loopback port, real JWTs, real model bundles,
//! the real RabbitMQ for hot swaps.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sgml_models::pricing::{PriceInput, PriceModel};
use sgml_registry::publish;
use sgml_registry::store::LocalStore;

use crate::common::*;
use crate::events::AMQP_URL;

pub const SECRET: &str = "e2e-serve-secret-of-at-least-32-bytes";

/// A running `sgml serve`, killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts `cmd` (an `sgml ... serve` command without `--listen`) on a free port
    /// and waits for the address line.
    pub fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            // Its logs would interleave with every test's output; the assertions say
            // what went wrong.
            .stderr(Stdio::null())
            .spawn()
            .expect("sgml serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, base: addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn hs256(scope: &str, exp: u64) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "e2e", "exp": exp, "scope": scope}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn token(scope: &str) -> String {
    hs256(scope, now() + 600)
}

/// POSTs a body; returns status and JSON (or `null` for a non-JSON body).
pub fn post(url: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut req = agent().post(url).header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send(body).expect("the server answers");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(url: &str) -> (u16, String) {
    let mut resp = agent().get(url).call().expect("the server answers");
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

pub fn rows() -> Value {
    json!({"rows": [
        {"market": "DE", "category": "home", "brand": "Acme", "condition": "new",
         "seller_country": "FR", "title": "Blue ceramic mug", "month": 3},
        {"market": "US", "category": "toys", "quantity": 12, "guest": true, "month": null},
        {"market": "JP"}
    ]})
}

fn prices(body: &Value) -> Vec<f64> {
    body["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions in {body}"))
        .iter()
        .map(|p| p["price_base"].as_f64().unwrap())
        .collect()
}

fn serve_cmd(store: &Path) -> Command {
    let mut cmd = sgml(store);
    cmd.env("SGML_JWT_SECRET", SECRET).arg("serve");
    cmd
}

/// A store with a published champion (v1) and a second version (v2) not promoted.
fn two_versions(dir: &Path, seed: u64) -> (std::path::PathBuf, String, String) {
    champion_and_challenger(dir, 1500, seed, 25, &[])
}

/// Every JWT failure is 401, a scope outside the token is 403, bad bodies 422 naming
/// the field, oversize bodies 413; a good request is scored exactly as the library
/// scores the champion in-process.
#[test]
fn auth_validation_and_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_after_run_all(dir.path(), 1500, 41);
    let champion = champion_of(&store);
    let server = Server::start({
        let mut c = serve_cmd(&store);
        c.args(["--max-body-bytes", "4096"]);
        c
    });
    let predict = server.url("/v1/models/pricing/predict");
    let body = serde_json::to_vec(&rows()).unwrap();

    // 401: none, expired, wrong secret, wrong algorithm, alg none, garbage.
    assert_eq!(post(&predict, None, &body).0, 401);
    assert_eq!(
        post(&predict, Some(&hs256("predict:*", now() - 3600)), &body).0,
        401
    );
    let wrong_secret = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "e2e", "exp": now() + 600, "scope": "predict:*"}),
        &EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap();
    assert_eq!(post(&predict, Some(&wrong_secret), &body).0, 401);
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &json!({"sub": "e2e", "exp": now() + 600, "scope": "predict:*"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(post(&predict, Some(&hs512), &body).0, 401);
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "e2e", "exp": now() + 600, "scope": "predict:*"}))
    );
    assert_eq!(post(&predict, Some(&alg_none), &body).0, 401);
    assert_eq!(post(&predict, Some("garbage"), &body).0, 401);

    // 403: a token for another model, or without admin:reload.
    let (s, b) = post(&predict, Some(&token("predict:categorize")), &body);
    assert_eq!(s, 403, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("predict:pricing"),
        "{b}"
    );
    assert_eq!(
        post(
            &server.url("/v1/admin/reload"),
            Some(&token("predict:*")),
            b""
        )
        .0,
        403
    );
    // 404: a model this server does not serve.
    assert_eq!(
        post(
            &server.url("/v1/models/nope/predict"),
            Some(&token("predict:*")),
            &body
        )
        .0,
        404
    );

    // 200: scored by the champion, the same numbers the library gives in-process.
    let t = token("predict:pricing");
    let (s, b) = post(&predict, Some(&t), &body);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["version"], champion.as_str());
    let served = prices(&b);
    assert_eq!(served.len(), 3);
    let local = LocalStore::new(&store).unwrap();
    let model = PriceModel::from_bundle(
        &publish::load_alias(&local, "pricing", "champion")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let inputs = [
        PriceInput {
            market: "DE".into(),
            category: Some("home".into()),
            brand: Some("Acme".into()),
            condition: Some("new".into()),
            seller_country: Some("FR".into()),
            title: Some("Blue ceramic mug".into()),
            month: 3,
            ..Default::default()
        },
        PriceInput {
            market: "US".into(),
            category: Some("toys".into()),
            quantity: Some(12.0),
            guest: Some(true),
            ..Default::default()
        },
        PriceInput {
            market: "JP".into(),
            ..Default::default()
        },
    ];
    let expected = model.price(&inputs).unwrap();
    for ((got, want), p) in served
        .iter()
        .zip(&expected)
        .zip(&b["predictions"].as_array().unwrap().clone())
    {
        assert!(
            (got - want.log_price.exp()).abs() < 1e-9 * got.abs(),
            "{got} vs {want:?}"
        );
        let (lo, hi) = (
            p["price_base_low"].as_f64().unwrap(),
            p["price_base_high"].as_f64().unwrap(),
        );
        assert!(lo <= *got && *got <= hi, "{p}");
    }

    // 422 naming the field.
    for (bad, field) in [
        (
            json!({"rows": [{"market": "DE", "month": "May"}]}),
            "rows[0].month",
        ),
        (
            json!({"rows": [{"market": "DE"}, {"market": "DE", "prize": 1}]}),
            "rows[1].prize",
        ),
        (
            json!({"rows": [{"market": "DE", "quantity": 0}]}),
            "rows[0].quantity",
        ),
        (json!({"rows": []}), "rows"),
        (json!({"row": []}), "row"),
    ] {
        let (s, b) = post(&predict, Some(&t), &serde_json::to_vec(&bad).unwrap());
        assert_eq!(s, 422, "{bad} → {b}");
        assert_eq!(b["field"], field, "{bad} → {b}");
    }
    assert_eq!(post(&predict, Some(&t), b"{not json").0, 422);

    // 413 over --max-body-bytes, declared length or not.
    let big = serde_json::to_vec(&json!({"rows": vec![json!({"market": "DE"}); 400]})).unwrap();
    assert!(big.len() > 4096);
    assert_eq!(post(&predict, Some(&t), &big).0, 413);

    // Names from the URL label metrics only when served: unauthenticated requests
    // for random models all count under one label.
    for i in 0..50 {
        let url = server.url(&format!("/v1/models/random-{i}/predict"));
        assert_eq!(post(&url, None, &body).0, 401);
    }
    // Probes and metrics.
    assert_eq!(get(&server.url("/healthz")).0, 200);
    let (s, ready) = get(&server.url("/readyz"));
    assert_eq!(s, 200, "{ready}");
    assert!(ready.contains(&champion), "{ready}");
    let (s, metrics) = get(&server.url("/metrics"));
    assert_eq!(s, 200);
    for needle in [
        "sgml_http_requests_total{endpoint=\"predict\",model=\"pricing\",status=\"200\"} 1",
        "status=\"401\"",
        "status=\"422\"",
        "sgml_predicted_rows_total{model=\"pricing\"} 3",
        &format!("sgml_model_serving{{model=\"pricing\",version=\"{champion}\"}} 1"),
        "sgml_http_requests_total{endpoint=\"predict\",model=\"(unknown)\",status=\"401\"} 50",
    ] {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }
    assert!(!metrics.contains("random-"), "{metrics}");
}

/// A shared secret short enough to guess offline from one token is refused at start.
#[test]
fn a_short_hs256_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        sgml(dir.path())
            .env("SGML_JWT_SECRET", "short-secret")
            .args(["serve", "--listen", "127.0.0.1:0"]),
        1,
    );
    assert!(err.contains("at least 32"), "{err}");
}

/// RS256 with a PEM public key; an HS256 token signed with that public key as its
/// secret (algorithm confusion) is refused.
#[test]
fn rs256_tokens_and_algorithm_confusion() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_after_run_all(dir.path(), 600, 42);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/fixtures");
    let public = fixtures.join("jwt-test-only.pub.pem");
    let server = Server::start({
        let mut c = sgml(&store);
        c.args(["serve", "--jwt-public-key"]).arg(&public);
        c
    });
    let predict = server.url("/v1/models/pricing/predict");
    let body = serde_json::to_vec(&rows()).unwrap();
    let claims = json!({"sub": "e2e", "exp": now() + 600, "scope": "predict:pricing"});
    let private = std::fs::read(fixtures.join("jwt-test-only.key.pem")).unwrap();
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    let (s, b) = post(&predict, Some(&rs), &body);
    assert_eq!(s, 200, "{b}");
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&std::fs::read(&public).unwrap()),
    )
    .unwrap();
    assert_eq!(post(&predict, Some(&confused), &body).0, 401);
}

/// The categorizer's champion is served beside pricing: answers equal the library's
/// on the same bundle, a pricing-only token may not use it, bad rows name the field.
#[test]
fn the_categorizer_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_after_run_all(dir.path(), 600, 44);
    let server = Server::start({
        let mut c = serve_cmd(&store);
        c.args(["--models", "pricing,categorize"]);
        c
    });
    let url = server.url("/v1/models/categorize/predict");
    let titles = [
        "Premium Wireless Headphones - Blue",
        "",
        "🎧🔥",
        "سماعات لاسلكية بلوتوث",
    ];
    let body = serde_json::to_vec(
        &json!({"rows": titles.iter().map(|t| json!({"title": t, "top": 2})).collect::<Vec<_>>()}),
    )
    .unwrap();
    assert_eq!(post(&url, Some(&token("predict:pricing")), &body).0, 403);
    let (s, b) = post(&url, Some(&token("predict:categorize")), &body);
    assert_eq!(s, 200, "{b}");

    let alias: Value = serde_json::from_slice(
        &std::fs::read(store.join("models/categorize/aliases/champion.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(b["version"], alias["version"]);
    let local = LocalStore::new(&store).unwrap();
    let bundle = sgml_registry::versions::load_version(
        &local,
        "categorize",
        alias["version"].as_str().unwrap(),
    )
    .unwrap();
    let library = sgml_models::categorize::TitleCategorizer::from_bundle(&bundle).unwrap();
    let predictions = b["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), titles.len());
    for (title, p) in titles.iter().zip(predictions) {
        let want = library.categorize(title, 2);
        let got = p["categories"].as_array().unwrap();
        assert_eq!(got.len(), 2, "{p}");
        for ((name, prob), g) in want.top.iter().zip(got) {
            assert_eq!(g["category"], name.as_str(), "{title}");
            assert!((g["probability"].as_f64().unwrap() - f64::from(*prob)).abs() < 1e-6);
        }
        assert_eq!(p["needs_review"], want.needs_review, "{title}");
    }
    let (s, b) = post(
        &url,
        Some(&token("predict:categorize")),
        br#"{"rows": [{"title": "mug", "top": 0}]}"#,
    );
    assert_eq!((s, b["field"].as_str()), (422, Some("rows[0].top")), "{b}");
}

/// The similarity index answers `/query` by product id with the same scope rules as
/// the other models: neighbours match the library's own search, the filters hold,
/// an unknown product is 404, `/predict` on it (and `/query` on pricing) is 404.
#[test]
fn the_similarity_index_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_after_run_all(dir.path(), 600, 45);
    let server = Server::start({
        let mut c = serve_cmd(&store);
        c.args(["--models", "pricing,similar"]);
        c
    });
    let url = server.url("/v1/models/similar/query");
    let local = LocalStore::new(&store).unwrap();
    let (alias, _) = publish::read_alias(&local, "similar", sgml_registry::CHAMPION)
        .unwrap()
        .unwrap();
    let bundle = sgml_registry::versions::load_version(&local, "similar", &alias.version).unwrap();
    let library = sgml_models::ann::AnnIndex::from_bundle(&bundle).unwrap();
    let rows = library.rows().clone();
    let id = rows.product_id[0].clone();

    let body = serde_json::to_vec(&json!({"product_id": id, "k": 5})).unwrap();
    assert_eq!(post(&url, None, &body).0, 401);
    assert_eq!(post(&url, Some(&token("predict:pricing")), &body).0, 403);
    let (s, b) = post(&url, Some(&token("predict:similar")), &body);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["version"], alias.version.as_str());
    let got: Vec<&str> = b["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 5, "{b}");
    assert!(!got.contains(&id.as_str()), "not its own neighbour");
    let filter = sgml_models::ann::Filter {
        not_row: Some(0),
        ..Default::default()
    };
    let want: Vec<String> = library
        .search(&library.vector(0).unwrap(), 5, &filter)
        .unwrap()
        .iter()
        .map(|n| rows.product_id[n.row].clone())
        .collect();
    assert_eq!(got, want, "the library's own answer");

    let body = serde_json::to_vec(
        &json!({"product_id": id, "k": 5, "other_sellers": true, "markets": "other"}),
    )
    .unwrap();
    let (s, b) = post(&url, Some(&token("predict:similar")), &body);
    assert_eq!(s, 200, "{b}");
    for n in b["neighbours"].as_array().unwrap() {
        assert_ne!(n["seller_id"], rows.seller_id[0].as_str(), "{n}");
        assert_ne!(n["market"], json!(rows.market[0]), "{n}");
    }

    // By title, embedded in the server with the embedder that built the index: a
    // listed product's own title finds that product first.
    let run_date = ingested_run_date(&store);
    let products = read_partition(&store.join(format!("raw/products/dt={run_date}")));
    let (ids, titles) = (
        strings(&products, "product_id"),
        strings(&products, "title"),
    );
    let title = &titles[ids.iter().position(|p| *p == id).unwrap()];
    let body = serde_json::to_vec(&json!({"title": title, "k": 3})).unwrap();
    let (s, b) = post(&url, Some(&token("predict:similar")), &body);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["neighbours"][0]["product_id"], id.as_str(), "{b}");
    assert!(
        b["neighbours"][0]["similarity"].as_f64().unwrap() > 0.99,
        "{b}"
    );
    let body = serde_json::to_vec(&json!({
        "title": title, "k": 5, "seller_id": rows.seller_id[0], "other_sellers": true,
        "market": rows.market[0], "markets": "other",
    }))
    .unwrap();
    let (s, b) = post(&url, Some(&token("predict:similar")), &body);
    assert_eq!(s, 200, "{b}");
    assert!(!b["neighbours"].as_array().unwrap().is_empty(), "{b}");
    for n in b["neighbours"].as_array().unwrap() {
        assert_ne!(n["seller_id"], rows.seller_id[0].as_str(), "{n}");
        assert_ne!(n["market"], json!(rows.market[0]), "{n}");
    }
    let (s, b) = post(
        &url,
        Some(&token("predict:similar")),
        br#"{"title": "mug", "other_sellers": true}"#,
    );
    assert_eq!((s, b["field"].as_str()), (422, Some("seller_id")), "{b}");

    let (s, b) = post(
        &url,
        Some(&token("predict:similar")),
        br#"{"product_id": "NO-SUCH-PRODUCT"}"#,
    );
    assert_eq!(s, 404, "{b}");
    let (s, b) = post(
        &url,
        Some(&token("predict:similar")),
        br#"{"product_id": "P1", "k": 0}"#,
    );
    assert_eq!((s, b["field"].as_str()), (422, Some("k")), "{b}");
    let predict = server.url("/v1/models/similar/predict");
    assert_eq!(
        post(&predict, Some(&token("predict:similar")), &body).0,
        404
    );
    let on_pricing = server.url("/v1/models/pricing/query");
    assert_eq!(
        post(&on_pricing, Some(&token("predict:pricing")), &body).0,
        404
    );
}

/// Clients hammer the server while the champion moves (publish, then rollback): the
/// server follows the model.published events without a failed request, and after the
/// rollback answers exactly what it answered before. A second server without AMQP
/// follows by polling.
#[test]
fn hot_swap_under_load_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let (store, v1, v2) = two_versions(dir.path(), 43);
    let evented = Server::start({
        let mut c = serve_cmd(&store);
        c.env("SGML_AMQP_URL", AMQP_URL)
            .args(["--poll-secs", "3600"]);
        c
    });
    let polled = Server::start({
        let mut c = serve_cmd(&store);
        c.args(["--poll-secs", "1"]);
        c
    });
    let body = Arc::new(serde_json::to_vec(&rows()).unwrap());
    let t = Arc::new(token("predict:pricing"));
    let url = evented.url("/v1/models/pricing/predict");
    let (s, before) = post(&url, Some(&t), &body);
    assert_eq!(s, 200, "{before}");
    assert_eq!(before["version"], v1.as_str());
    // Give the subscription a moment to bind its queue before the first event.
    std::thread::sleep(Duration::from_secs(1));

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
            let (url, body, t) = (url.clone(), body.clone(), t.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (s, b) = post(&url, Some(&t), &body);
                    if s == 200 && b["predictions"].as_array().is_some_and(|p| p.len() == 3) {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let wait_for = |server: &Server, version: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, b) = post(&server.url("/v1/models/pricing/predict"), Some(&t), &body);
            if b["version"] == version {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "server did not swap to {version}: {b}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    ok(sgml(&store).env("SGML_AMQP_URL", AMQP_URL).args([
        "models",
        "publish",
        "pricing",
        "--version",
        &v2,
        "--force",
    ]));
    let after = wait_for(&evented, &v2);
    assert_ne!(prices(&after), prices(&before));
    wait_for(&polled, &v2);
    ok(sgml(&store)
        .env("SGML_AMQP_URL", AMQP_URL)
        .args(["models", "rollback", "pricing"]));
    let restored = wait_for(&evented, &v1);
    assert_eq!(prices(&restored), prices(&before));
    wait_for(&polled, &v1);

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(served.load(Ordering::Relaxed) > 0);
}

/// A champion whose bytes changed after publishing is never served: a running server
/// keeps its verified model (and says why on reload), a starting one is not ready.
#[test]
fn a_tampered_champion_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (store, v1, v2) = two_versions(dir.path(), 44);
    let server = Server::start({
        let mut c = serve_cmd(&store);
        c.args(["--poll-secs", "3600"]);
        c
    });
    let predict = server.url("/v1/models/pricing/predict");
    let body = serde_json::to_vec(&rows()).unwrap();
    let t = token("predict:pricing admin:reload");
    ok(sgml(&store).args(["models", "publish", "pricing", "--version", &v2, "--force"]));
    let model = store.join("models/pricing").join(&v2).join("model.txt");
    let mut bytes = std::fs::read(&model).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    std::fs::write(&model, &bytes).unwrap();

    let (s, b) = post(&server.url("/v1/admin/reload"), Some(&t), b"");
    assert_eq!(s, 200, "{b}");
    let result = &b["models"][0]["result"];
    assert_eq!(result["outcome"], "failed", "{b}");
    assert_eq!(result["serving"], v1.as_str(), "{b}");
    assert!(result["why"].as_str().unwrap().contains("model.txt"), "{b}");
    let (s, b) = post(&predict, Some(&t), &body);
    assert_eq!(s, 200);
    assert_eq!(b["version"], v1.as_str(), "the verified model stays");
    let (_, metrics) = get(&server.url("/metrics"));
    assert!(
        metrics.contains("sgml_model_reloads_total{model=\"pricing\",outcome=\"failed\"} 1"),
        "{metrics}"
    );

    // A fresh server: the champion does not verify, so nothing is served.
    let fresh = Server::start(serve_cmd(&store));
    let (s, ready) = get(&fresh.url("/readyz"));
    assert_eq!(s, 503, "{ready}");
    assert!(ready.contains("model.txt"), "{ready}");
    let (s, b) = post(&fresh.url("/v1/models/pricing/predict"), Some(&t), &body);
    assert_eq!(s, 503, "{b}");
}

/// `cmd` run under an open-file limit of `n` (through the shell's `ulimit`).
fn with_open_file_limit(cmd: &Command, n: u32) -> Command {
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg(format!("ulimit -n {n} && exec \"$@\""))
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => limited.env(k, v),
            None => limited.env_remove(k),
        };
    }
    limited
}

/// Waits for the server to close `socket`: true when it read end-of-file (or a reset)
/// before `within`.
fn closed_by_server(socket: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response (408 or the like) before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Idle sockets, slowloris clients and idle keep-alive connections are closed after the
/// header timeout, and past the connection limit clients wait in the backlog instead of
/// taking descriptors: with 300 idle sockets against a 128-descriptor process, every
/// socket is closed in turn and `/healthz` answers.
#[test]
fn idle_and_slow_connections_are_closed_and_health_answers() {
    use std::io::Write;
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = serve_cmd(dir.path());
    cmd.args(["--header-timeout-secs", "1"]);
    let server = Server::start(with_open_file_limit(&cmd, 128));
    let addr = server.base.trim_start_matches("http://").to_string();

    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&addr).expect("the backlog takes the connection"))
        .collect();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // Slowloris: a byte every 200 ms never completes the head.
    let dribble = std::thread::spawn(move || {
        for _ in 0..15 {
            for s in &mut slow {
                let _ = s.write_all(b"a");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        slow
    });
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(30)),
            "idle socket {i} of 300 is still open"
        );
    }
    let mut slow = dribble.join().unwrap();
    for s in &mut slow {
        assert!(closed_by_server(s, Duration::from_secs(5)));
    }
    let (status, body) = get(&server.url("/healthz"));
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // A keep-alive connection that goes quiet after a response is closed too.
    let mut keep = TcpStream::connect(&addr).unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut keep, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_by_server(&mut keep, Duration::from_secs(5)));
}

/// A body that stops arriving gets 408 after the body timeout.
#[test]
fn a_stalled_body_gets_408() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = serve_cmd(dir.path());
    cmd.args(["--body-timeout-secs", "1", "--models", "pricing"]);
    let server = Server::start(cmd);
    let mut s = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    let t = token("predict:pricing");
    write!(
        s,
        "POST /v1/models/pricing/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"rows\": ["
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
}

/// Scoring runs on its own threads: while one scoring thread works through large
/// requests back to back, `/healthz` still answers at once. (A liveness check with a
/// generous bound; the soak script measures the p99.)
#[test]
fn health_answers_while_scoring_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = two_versions(dir.path(), 47);
    let mut cmd = serve_cmd(&store);
    cmd.args(["--workers", "1"]);
    let server = Server::start(cmd);
    let many: Vec<Value> = (0..4000)
        .flat_map(|_| rows()["rows"].as_array().unwrap().clone())
        .collect();
    let body = Arc::new(serde_json::to_vec(&json!({ "rows": many })).unwrap());
    assert!(body.len() < 1 << 20);
    let t = Arc::new(token("predict:pricing"));
    let url = server.url("/v1/models/pricing/predict");
    let started = Instant::now();
    let (s, b) = post(&url, Some(&t), &body);
    let one = started.elapsed();
    assert_eq!(s, 200, "{b}");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, url, body, t) = (stop.clone(), url.clone(), body.clone(), t.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(post(&url, Some(&t), &body).0, 200);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        assert_eq!(get(&server.url("/healthz")).0, 200);
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        slowest < Duration::from_millis(500),
        "/healthz took {slowest:?} behind scoring (one request scores in {one:?})"
    );
}
