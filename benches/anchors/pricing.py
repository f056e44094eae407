#!/usr/bin/env python3
"""Anchor benchmark for issue 4: price models, this project vs Python peers.

(a) Diamonds (../shared/data/diamonds.csv.gz), log price, the 80/20 split of
    ../shared/NOTES.md (scikit-learn train_test_split, random_state 42). Peers:
    LightGBM (defaults; 1000 trees at 0.05, integer codes and native categoricals),
    HistGradientBoosting 1000 x 0.05, Ridge on one-hot. Rust: `anchor-pricing` trains
    sgml-models' GBDT and linear model on the same rows (the split is written to a file).
(b) UCI Online Retail, log(UnitPrice) of lines with UnitPrice > 0 and Quantity > 0,
    train before 2011-10-01, test after. Peers: the raw-column LightGBM script of
    NOTES.md end to end (read CSV -> features -> train -> predict), with StockCode and
    Country as native categoricals and, to measure the encoding choice, target-encoded
    out of fold; HistGradientBoosting; Ridge on target encoding; per-StockCode median.
    Rust: the whole `sgml` path (ingest -> features -> train pricing --holdout-from
    2011-10-01 -> predict pricing) with the release binary, timed end to end.

All peers and the Rust binaries get the same threads (--threads, default 2).
Run it through scripts/bench-pricing. Results: benches/results/pricing.json and .md.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
# Release binaries: where scripts/cargo-env puts the target directory.
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
SHARED = Path(os.environ.get("SGML_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benches" / "results"
CUT = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
COLOR = ["J", "I", "H", "G", "F", "E", "D"]
CLARITY = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]
CUTOFF = "2011-10-01"


def rmse(p, y):
    return float(np.sqrt(np.mean((np.asarray(p) - np.asarray(y)) ** 2)))


def timed_fit(name, make, x_train, y_train, x_test, y_test):
    model = make()
    t0 = time.perf_counter()
    model.fit(x_train, y_train)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    pred = model.predict(x_test)
    pred_s = time.perf_counter() - t1
    return {"model": name, "rmse": rmse(pred, y_test), "train_seconds": train_s,
            "predict_rows_per_second": len(y_test) / pred_s}


# ---------------------------------------------------------------- (a) diamonds

def diamonds(threads, work):
    import lightgbm as lgb
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split

    path = SHARED / "diamonds.csv.gz"
    df = pd.read_csv(path)
    y = np.log(df["price"].to_numpy())
    codes = df[["carat", "depth", "table", "x", "y", "z"]].copy()
    for col, levels in [("cut", CUT), ("color", COLOR), ("clarity", CLARITY)]:
        codes[col] = df[col].map({l: i for i, l in enumerate(levels)}).astype(int)
    idx_train, idx_test = train_test_split(np.arange(len(df)), test_size=0.2, random_state=42)
    split_file = work / "diamonds_test_rows.txt"
    split_file.write_text("\n".join(map(str, sorted(idx_test))) + "\n")
    xtr, xte, ytr, yte = codes.iloc[idx_train], codes.iloc[idx_test], y[idx_train], y[idx_test]
    native = codes.copy()
    for col, levels in [("cut", CUT), ("color", COLOR), ("clarity", CLARITY)]:
        native[col] = pd.Categorical(df[col], categories=levels, ordered=True)
    ntr, nte = native.iloc[idx_train], native.iloc[idx_test]
    onehot = pd.get_dummies(df[["carat", "depth", "table", "x", "y", "z", "cut", "color", "clarity"]],
                            columns=["cut", "color", "clarity"], drop_first=True, dtype=float)
    htr, hte = onehot.iloc[idx_train], onehot.iloc[idx_test]

    lgbm = lambda **kw: (lambda: lgb.LGBMRegressor(n_jobs=threads, verbose=-1, random_state=42, **kw))
    peers = [
        timed_fit("LightGBM default (100 x 0.1)", lgbm(), xtr, ytr, xte, yte),
        timed_fit("LightGBM 1000 x 0.05", lgbm(n_estimators=1000, learning_rate=0.05), xtr, ytr, xte, yte),
        timed_fit("LightGBM 1000 x 0.05, native categoricals",
                  lgbm(n_estimators=1000, learning_rate=0.05), ntr, ytr, nte, yte),
        timed_fit("HistGradientBoosting 1000 x 0.05",
                  lambda: HistGradientBoostingRegressor(max_iter=1000, learning_rate=0.05, random_state=42),
                  xtr, ytr, xte, yte),
        timed_fit("Ridge (one-hot)", lambda: Ridge(alpha=1.0), htr, ytr, hte, yte),
    ]
    out = subprocess.run([str(RELEASE / "anchor-pricing"), str(path), str(split_file), str(threads)],
                         check=True, capture_output=True, text=True)
    rust = json.loads(out.stdout)
    assert rust["test_rows"] == len(idx_test), "Rust and Python must test on the same rows"
    return {"train_rows": len(idx_train), "test_rows": len(idx_test), "python": peers, "rust": rust["models"]}


# ---------------------------------------------------------------- (b) retail

def retail_features(df):
    ts = df["InvoiceDate"]
    desc = df["Description"].fillna("")
    return pd.DataFrame({
        "StockCode": df["StockCode"], "Country": df["Country"], "Quantity": df["Quantity"],
        "month": ts.dt.month, "weekday": ts.dt.weekday, "hour": ts.dt.hour,
        "desc_len": desc.str.len(), "desc_words": desc.str.split().str.len().fillna(0),
    })


def guest_flag(df):
    """1 for lines without a CustomerID (guest checkout): the signal sgml's features add."""
    return df["CustomerID"].isna().astype(int).to_numpy()


def oof_target_encoding(train_keys, y, test_keys, folds=5, smoothing=20.0, seed=42):
    """Smoothed mean target per level, out of fold for the training rows."""
    y = pd.Series(y, index=train_keys.index)
    prior = y.mean()

    def encode(fit_keys, fit_y, keys):
        stats = fit_y.groupby(fit_keys).agg(["sum", "count"])
        enc = (stats["sum"] + smoothing * prior) / (stats["count"] + smoothing)
        return keys.map(enc).fillna(prior).to_numpy()

    fold = np.random.default_rng(seed).integers(0, folds, len(train_keys))
    train_enc = np.empty(len(train_keys))
    for f in range(folds):
        m = fold == f
        train_enc[m] = encode(train_keys[~m], y[~m], train_keys[m])
    return train_enc, encode(train_keys, y, test_keys)


def retail_python(threads):
    """The Python script end to end: each model's time includes reading the CSV."""
    import lightgbm as lgb
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    path = SHARED / "online_retail.csv.gz"
    results = []

    def load():
        t0 = time.perf_counter()
        df = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str}, parse_dates=["InvoiceDate"])
        df = df[(df["UnitPrice"] > 0) & (df["Quantity"] > 0)]
        x = retail_features(df)
        y = np.log(df["UnitPrice"].to_numpy())
        train = (df["InvoiceDate"] < CUTOFF).to_numpy()
        return time.perf_counter() - t0, x, y, train, guest_flag(df)

    load_s, x, y, train, guest = load()
    xtr, xte, ytr, yte = x[train], x[~train], y[train], y[~train]
    cat = xtr.copy(), xte.copy()
    for d in cat:
        for c in ["StockCode", "Country"]:
            d[c] = pd.Categorical(d[c], categories=sorted(xtr[c].unique()))
    guest_cat = cat[0].copy(), cat[1].copy()
    guest_cat[0]["guest"], guest_cat[1]["guest"] = guest[train], guest[~train]
    te = xtr.drop(columns=["StockCode", "Country"]).copy(), xte.drop(columns=["StockCode", "Country"]).copy()
    for c in ["StockCode", "Country"]:
        te[0][c + "_te"], te[1][c + "_te"] = oof_target_encoding(xtr[c], ytr, xte[c])

    lgbm = lambda **kw: (lambda: lgb.LGBMRegressor(n_jobs=threads, verbose=-1, random_state=42, **kw))
    for name, make, (a, b) in [
        ("LightGBM 1000 x 0.05, native categoricals (the raw-column script)",
         lgbm(n_estimators=1000, learning_rate=0.05), cat),
        ("LightGBM default (100 x 0.1), native categoricals", lgbm(), cat),
        ("LightGBM 1000 x 0.05, out-of-fold target encoding", lgbm(n_estimators=1000, learning_rate=0.05), te),
        ("LightGBM 1000 x 0.05, native categoricals + guest flag (sgml's strongest extra signal)",
         lgbm(n_estimators=1000, learning_rate=0.05), guest_cat),
        ("HistGradientBoosting 1000 x 0.05, target encoding",
         lambda: HistGradientBoostingRegressor(max_iter=1000, learning_rate=0.05, random_state=42), te),
        ("Ridge, target encoding", lambda: Ridge(alpha=1.0), te),
    ]:
        r = timed_fit(name, make, a, ytr, b, yte)
        r["end_to_end_seconds"] = load_s + r["train_seconds"] + len(yte) / r["predict_rows_per_second"]
        results.append(r)
    t0 = time.perf_counter()
    med = pd.Series(ytr).groupby(xtr["StockCode"].to_numpy()).median()
    pred = xte["StockCode"].map(med).fillna(np.median(ytr))
    results.append({"model": "per-StockCode median", "rmse": rmse(pred, yte),
                    "train_seconds": time.perf_counter() - t0})
    return {"train_rows": int(train.sum()), "test_rows": int((~train).sum()),
            "read_and_features_seconds": load_s, "python": results}


def retail_rust(threads, work, trees, learning_rate):
    sgml = str(RELEASE / "sgml")
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    env = dict(os.environ, SGML_ANON_KEY="benchmark-key-not-a-secret", RAYON_NUM_THREADS=str(threads),
               POLARS_MAX_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    steps = {}

    def run(name, *args):
        t0 = time.perf_counter()
        subprocess.run([sgml, "--store", str(store), *args], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        steps[name] = time.perf_counter() - t0

    run("ingest", "ingest", "--mapping", "online-retail", "--input", str(SHARED / "online_retail.csv.gz"), "--run-date", "2011-12-10")
    run("features", "features", "--run-date", "2011-12-10")
    run("train", "train", "pricing", "--run-date", "2011-12-10", "--holdout-from", CUTOFF,
        "--trees", str(trees), "--learning-rate", str(learning_rate))
    run("predict", "predict", "pricing", "--run-date", "2011-12-10")
    manifests = sorted((store / "models" / "pricing").glob("*/manifest.json"))
    m = json.loads(manifests[-1].read_text())
    gbdt = {"model": f"sgml GBDT {trees} x {learning_rate} (ingest -> features -> train -> predict)",
            "rmse": m["metrics"]["rmse_log"], "holdout_rows": int(m["metrics"]["holdout_rows"]),
            "rows": m["training_data"]["rows"], "split": m["training_data"]["split"],
            "interval_coverage": m["metrics"]["interval_coverage"],
            "train_seconds": steps["train"], "end_to_end_seconds": sum(steps.values()), "steps": steps}
    run("train_linear", "train", "pricing", "--run-date", "2011-12-10", "--holdout-from", CUTOFF, "--algo", "linear")
    manifests = sorted((store / "models" / "pricing").glob("*/manifest.json"))
    lin = json.loads(manifests[-1].read_text())
    linear = {"model": "sgml linear (ElasticNet)", "rmse": lin["metrics"]["rmse_log"],
              "train_seconds": steps.pop("train_linear")}
    return [gbdt, linear]


# ---------------------------------------------------------------- report

def versions():
    out = {"python": platform.python_version()}
    for p in ["lightgbm", "scikit-learn", "pandas", "numpy"]:
        out[p] = importlib.metadata.version(p)
    return out


def markdown(r):
    lines = [f"# Pricing benchmark ({r['date']}, {r['machine']}, {r['threads']} threads)", ""]
    d = r["diamonds"]
    lines += [f"## (a) Diamonds, log price ({d['train_rows']} train / {d['test_rows']} test rows)", "",
              "| model | RMSE | train s | predict rows/s |", "|---|---:|---:|---:|"]
    for m in d["rust"] + d["python"]:
        lines.append(f"| {m['model']} | {m['rmse']:.4f} | {m['train_seconds']:.2f} | {m['predict_rows_per_second']:,.0f} |")
    rust_long = next(m for m in d["rust"] if "1000" in m["model"])
    py_long = next(m for m in d["python"] if m["model"] == "LightGBM 1000 x 0.05")
    lines += ["", f"sgml GBDT 1000 x 0.05 vs LightGBM (Python) 1000 x 0.05: RMSE {rust_long['rmse']:.4f} vs "
                  f"{py_long['rmse']:.4f}, training time ratio {rust_long['train_seconds'] / py_long['train_seconds']:.2f}.", ""]
    t = r["retail"]
    rust = t["rust"][0]
    lines += [f"## (b) UCI Online Retail, log unit price, test from {CUTOFF}", "",
              f"Python: {t['train_rows']} train / {t['test_rows']} test lines. sgml: {rust['rows']['train']} train "
              f"(of which the last {rust['rows']['calibration']} calibrate the interval) / {rust['holdout_rows']} holdout lines "
              f"(split {rust['split']}).", "",
              "| model | RMSE | train s | end to end s |", "|---|---:|---:|---:|"]
    for m in t["rust"] + t["python"]:
        e2e = f"{m['end_to_end_seconds']:.1f}" if "end_to_end_seconds" in m else ""
        lines.append(f"| {m['model']} | {m['rmse']:.4f} | {m['train_seconds']:.2f} | {e2e} |")
    peer = t["python"][0]
    lines += ["", f"sgml vs the raw-column LightGBM script: RMSE {rust['rmse']:.4f} vs {peer['rmse']:.4f} "
                  f"({100 * (rust['rmse'] / peer['rmse'] - 1):+.1f}%, target -5%), end to end "
                  f"{rust['end_to_end_seconds']:.1f} s vs {peer['end_to_end_seconds']:.1f} s "
                  f"(ratio {rust['end_to_end_seconds'] / peer['end_to_end_seconds']:.2f}).",
              f"sgml steps (s): {', '.join(f'{k} {v:.1f}' for k, v in rust['steps'].items())}; "
              f"interval coverage on the holdout {rust['interval_coverage']:.3f} (target 0.90).", "",
              f"Versions: {r['versions']}", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trees", type=int, default=1000)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    ap.add_argument("--skip-retail", action="store_true")
    a = ap.parse_args()
    for var in ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]:
        os.environ.pop(var, None)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    with tempfile.TemporaryDirectory(prefix="sgml-bench-pricing-") as tmp:
        work = Path(tmp)
        r = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
             "threads": a.threads, "versions": versions(), "diamonds": diamonds(a.threads, work)}
        print(json.dumps(r["diamonds"], indent=1), file=sys.stderr)
        if not a.skip_retail:
            r["retail"] = retail_python(a.threads)
            r["retail"]["rust"] = retail_rust(a.threads, work, a.trees, a.learning_rate)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pricing.json").write_text(json.dumps(r, indent=1) + "\n")
    if "retail" in r:
        (RESULTS / "pricing.md").write_text(markdown(r))
    print(markdown(r) if "retail" in r else json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
