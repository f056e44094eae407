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

    // Every checked photo is embedded (EfficientNet-Lite0's pooled features), keyed by
    // the same file; an edited copy's features are nearer its original's than a
    // photo's are to the catalogue's at large.
    let emb = read_partition(&store.join(format!("features/image_embeddings/dt={run_date}")));
    assert_eq!(strings(&emb, "product_id"), strings(&df, "product_id"));
    assert_eq!(strings(&emb, "sha256"), strings(&df, "sha256"));
    let lists = emb.column("embedding").unwrap().list().unwrap();
    let vectors: Vec<Vec<f32>> = (0..emb.height())
        .map(|i| {
            let v = lists.get_as_series(i).unwrap();
            v.f32().unwrap().into_no_null_iter().collect()
        })
        .collect();
    assert!(vectors.iter().all(|v| v.len() == 1280));
    assert!(
        vectors.iter().flatten().all(|x| (0.0..=6.0).contains(x)),
        "pooled ReLU6 outputs"
    );
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    };
    let (mut near_cos, mut all_cos) = (Vec::new(), Vec::new());
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            let c = cosine(&vectors[i], &vectors[j]);
            all_cos.push(c);
            if (hashes[i] ^ hashes[j]).count_ones() <= 6 {
                near_cos.push(c);
            }
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(
        mean(&near_cos) > mean(&all_cos) + 0.05,
        "edited copies {} vs all pairs {}",
        mean(&near_cos),
        mean(&all_cos)
    );

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

/// The image classifier end to end: trained on the photos `sgml images` embedded,
/// batch predictions that flag listings whose photo disagrees with their category,
/// and the served model answering a posted photo as the batch did.
#[test]
fn image_classifier_trains_predicts_and_serves() {
    use base64::Engine;

    use crate::serve::{SECRET, Server, post, token};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export");
    ok(sgml(&dir.path().join("unused-store"))
        .args([
            "generate",
            "--orders",
            "2500",
            "--seed",
            "5",
            "--bad-fraction",
            "0",
            "--photos",
            "0.6",
            "--out",
        ])
        .arg(&input));
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    // Before any photo is embedded there is nothing to learn from.
    fails(
        sgml(&store).args(["train", "images", "--run-date", &run_date]),
        1,
    );
    ok(sgml(&store)
        .args(["images", "--run-date", &run_date, "--images-dir"])
        .arg(&input));
    ok(sgml(&store).args(["train", "images", "--run-date", &run_date]));
    let train = last_manifest(&store, "train-images");
    assert_eq!(train["status"], "succeeded", "{train}");
    let registry = sgml_registry::LocalStore::new(&store).unwrap();
    let version = sgml_registry::publish::read_alias(&registry, "images", sgml_registry::CHAMPION)
        .unwrap()
        .expect("the first image classifier is promoted")
        .0
        .version;
    let bundle = store.join(format!("models/images/{version}"));
    for file in [
        "weights.safetensors",
        "image-classifier.json",
        "manifest.json",
    ] {
        assert!(bundle.join(file).is_file(), "{file}");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "image-classifier");
    let metrics = &manifest["metrics"];
    let (accuracy, holdout) = (
        metrics["accuracy"].as_f64().unwrap(),
        metrics["holdout_photos"].as_f64().unwrap(),
    );
    assert!(holdout >= 50.0, "{metrics}");

    ok(sgml(&store).args(["predict", "images", "--run-date", &run_date]));
    let predictions =
        read_partition(&store.join(format!("predictions/images/{version}/dt={run_date}")));
    let embedded = read_partition(&store.join(format!("features/image_embeddings/dt={run_date}")));
    assert_eq!(predictions.height(), embedded.height());
    // Split 2 ways and merged (issue 17's scale-out), the same file.
    for extra in [
        ["--partition", "1/2"],
        ["--partition", "2/2"],
        ["--merge", "2"],
    ] {
        ok(sgml(&store)
            .args(["predict", "images", "--run-date", &run_date])
            .args(extra));
    }
    assert_eq!(
        read_partition(&store.join(format!("predictions/images/{version}/dt={run_date}"))),
        predictions,
        "predict images split 2 ways and merged"
    );
    let listed = strings(&predictions, "listed_category");
    let predicted = strings(&predictions, "category");
    // The photos show their category's shape (in a colour shared across
    // categories): the classifier beats always answering the commonest category.
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for l in &listed {
        *counts.entry(l).or_default() += 1;
    }
    let majority = *counts.values().max().unwrap() as f64 / listed.len() as f64;
    let right = listed
        .iter()
        .zip(&predicted)
        .filter(|(a, b)| a == b)
        .count() as f64
        / listed.len() as f64;
    assert!(
        right > majority + 0.1,
        "accuracy {right} (holdout {accuracy}) vs majority {majority}"
    );
    let disagrees = predictions.column("disagrees").unwrap().bool().unwrap();
    let review = predictions.column("needs_review").unwrap().bool().unwrap();
    for i in 0..predictions.height() {
        let flagged = disagrees.get(i).unwrap();
        assert_eq!(
            flagged,
            !review.get(i).unwrap() && listed[i] != predicted[i],
            "row {i}: disagrees means confident and not the listed category"
        );
    }

    // Served: a posted photo gets the batch's answer.
    let server = Server::start({
        let mut cmd = sgml(&store);
        cmd.env("SGML_JWT_SECRET", SECRET).args([
            "serve",
            "--models",
            "images",
            "--max-body-bytes",
            "4000000",
            "--images-dir",
        ]);
        cmd.arg(&input);
        cmd
    });
    let products = strings(&predictions, "product_id");
    let images = read_partition(&store.join(format!("features/images/dt={run_date}")));
    let uri_of: std::collections::HashMap<String, String> = strings(&images, "product_id")
        .into_iter()
        .zip(strings(&images, "image_uri"))
        .collect();
    let url = server.url("/v1/models/images/predict");
    let t = token("predict:images");
    for row in [0, products.len() / 2, products.len() - 1] {
        let photo = std::fs::read(input.join(&uri_of[&products[row]])).unwrap();
        let body = serde_json::json!({"rows": [{
            "image_base64": base64::engine::general_purpose::STANDARD.encode(&photo), "top": 2
        }]});
        let (status, answer) = post(&url, Some(&t), body.to_string().as_bytes());
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["version"], version.as_str());
        let first = &answer["predictions"][0];
        assert_eq!(first["categories"].as_array().unwrap().len(), 2);
        assert_eq!(first["categories"][0]["category"], predicted[row].as_str());
        let p = first["categories"][0]["probability"].as_f64().unwrap();
        let batch = predictions
            .column("probability")
            .unwrap()
            .f32()
            .unwrap()
            .get(row)
            .unwrap();
        assert!(
            (p - f64::from(batch)).abs() < 1e-4,
            "served {p}, batch {batch}"
        );
        assert_eq!(first["needs_review"], review.get(row).unwrap());

        // Named by its path in the images directory instead: the same answer.
        let body = serde_json::json!({"rows": [{"image_uri": uri_of[&products[row]], "top": 2}]});
        let (status, by_uri) = post(&url, Some(&t), body.to_string().as_bytes());
        assert_eq!(status, 200, "{by_uri}");
        assert_eq!(by_uri["predictions"], answer["predictions"]);
    }
    // A URI outside the images directory, a web address, a missing file, both fields:
    // 422 naming the row's field and the rule; nothing outside the directory is read.
    let outside = dir.path().join("secret.jpg");
    std::fs::copy(input.join(&uri_of[&products[0]]), &outside).unwrap();
    for (row, want) in [
        (
            serde_json::json!({"image_uri": "../secret.jpg"}),
            "images.uri",
        ),
        (
            serde_json::json!({"image_uri": format!("file://{}", outside.display())}),
            "images.uri",
        ),
        (
            serde_json::json!({"image_uri": "https://example.com/p.jpg"}),
            "images.uri",
        ),
        (
            serde_json::json!({"image_uri": "images/no-such-photo.jpg"}),
            "images.read",
        ),
        (
            serde_json::json!({"image_uri": "a.jpg", "image_base64": "aGVsbG8="}),
            "not both",
        ),
    ] {
        let body = serde_json::json!({"rows": [row]});
        let (status, answer) = post(&url, Some(&t), body.to_string().as_bytes());
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["field"], "rows[0].image_uri");
        assert!(answer["error"].as_str().unwrap().contains(want), "{answer}");
    }
    // Not base64, not an image: 422 naming the row's field and the rule.
    for (photo, want) in [("%%%", "not base64"), ("aGVsbG8gd29ybGQ=", "images.decode")] {
        let body = serde_json::json!({"rows": [{"image_base64": photo}]});
        let (status, answer) = post(&url, Some(&t), body.to_string().as_bytes());
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["field"], "rows[0].image_base64");
        assert!(answer["error"].as_str().unwrap().contains(want), "{answer}");
    }
}
