#!/usr/bin/env python3
"""ANN anchor (issue 15): the similar-products index against hnswlib, faiss HNSW and
usearch-python on fashion-mnist (60,000 x 784 base, 10,000 queries, L2; Debian's
dataset-fashion-mnist), all with M=16, ef_construction=200, on the same thread count.

Every library answers every query at each ef of a sweep; recall@10 is scored against
exact neighbours computed here with numpy, the same truth for all. Reported per
library: build seconds and, per ef, recall@10 and queries per second; then at the
smallest ef reaching recall@10 >= 0.995, our queries/s over hnswlib's (goal >= 1.3)
and our build time over hnswlib's (goal <= 0.75).

Writes benches/results/ann.{json,md}. Not part of the tests: run scripts/bench-ann.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import cpu

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
DATA = Path("/usr/share/datasets/fashion-mnist")
K = 10
M, EFC = 16, 200
EFS = [10, 16, 32, 64, 128, 256, 512]
TARGET_RECALL = 0.995


def idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, rows * cols).astype(np.float32)


def exact(base, queries, k):
    norms = (base * base).sum(axis=1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 500):
        q = queries[s : s + 500]
        d = norms[None, :] - 2.0 * q @ base.T
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, part, axis=1).argsort(axis=1)
        out[s : s + 500] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found, truth):
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth))
    return hits / truth.size


def run_ours(base, queries, threads, truth):
    with tempfile.TemporaryDirectory() as tmp:
        b, q, out = (Path(tmp) / n for n in ("base.f32", "q.f32", "out.u32"))
        base.astype("<f4").tofile(b)
        queries.astype("<f4").tofile(q)
        cmd = [str(RELEASE / "anchor-ann"), str(b), str(q), str(base.shape[1]), "l2",
               str(threads), str(M), str(EFC), ",".join(map(str, EFS)), str(K), str(out)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        ids = np.fromfile(out, dtype="<u4").astype(np.int64).reshape(len(EFS), len(queries), K)
    ids[ids == 0xFFFFFFFF] = -1
    runs = [{"ef": r["ef"], "qps": r["qps"], "recall": recall(ids[i], truth)}
            for i, r in enumerate(res["runs"])]
    return {"library": f"{res['library']} [{res['acceleration']}]",
            "build_seconds": res["build_seconds"], "runs": runs}


def run_hnswlib(base, queries, threads, truth):
    import hnswlib
    index = hnswlib.Index(space="l2", dim=base.shape[1])
    started = time.perf_counter()
    index.init_index(max_elements=len(base), M=M, ef_construction=EFC)
    index.set_num_threads(threads)
    index.add_items(base, np.arange(len(base)))
    build = time.perf_counter() - started
    runs = []
    for ef in EFS:
        index.set_ef(max(ef, K))
        started = time.perf_counter()
        ids, _ = index.knn_query(queries, k=K, num_threads=threads)
        secs = time.perf_counter() - started
        runs.append({"ef": ef, "qps": len(queries) / secs, "recall": recall(ids.astype(np.int64), truth)})
    return {"library": f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}".strip(),
            "build_seconds": build, "runs": runs}


def run_faiss(base, queries, threads, truth):
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(base.shape[1], M)
    index.hnsw.efConstruction = EFC
    started = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - started
    runs = []
    for ef in EFS:
        index.hnsw.efSearch = max(ef, K)
        started = time.perf_counter()
        _, ids = index.search(queries, K)
        secs = time.perf_counter() - started
        runs.append({"ef": ef, "qps": len(queries) / secs, "recall": recall(ids, truth)})
    return {"library": f"faiss {faiss.__version__} HNSWFlat", "build_seconds": build, "runs": runs}


def run_usearch(base, queries, threads, truth):
    import usearch
    from usearch.index import Index
    index = Index(ndim=base.shape[1], metric="l2sq", dtype="f32", connectivity=M,
                  expansion_add=EFC)
    started = time.perf_counter()
    index.add(np.arange(len(base)), base, threads=threads)
    build = time.perf_counter() - started
    runs = []
    for ef in EFS:
        index.expansion_search = ef
        started = time.perf_counter()
        matches = index.search(queries, K, threads=threads)
        secs = time.perf_counter() - started
        ids = np.asarray(matches.keys, dtype=np.int64)
        runs.append({"ef": ef, "qps": len(queries) / secs, "recall": recall(ids, truth)})
    return {"library": f"usearch-python {usearch.__version__}", "build_seconds": build, "runs": runs}


def at_target(result):
    for r in result["runs"]:
        if r["recall"] >= TARGET_RECALL:
            return r
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base", type=int, default=60000, help="base vectors to use (a prefix)")
    ap.add_argument("--queries", type=int, default=10000)
    args = ap.parse_args()
    base = idx_images(DATA / "train-images-idx3-ubyte.gz")[: args.base]
    queries = idx_images(DATA / "t10k-images-idx3-ubyte.gz")[: args.queries]
    print(f"exact neighbours of {len(queries)} queries in {len(base)} vectors ...", file=sys.stderr)
    truth = exact(base, queries, K)
    results = {}
    for name, fn in [("sgml", run_ours), ("hnswlib", run_hnswlib), ("faiss", run_faiss),
                     ("usearch-python", run_usearch)]:
        print(f"{name} ...", file=sys.stderr)
        results[name] = fn(base, queries, args.threads, truth)
    model, flags = cpu()
    ours, peer = at_target(results["sgml"]), at_target(results["hnswlib"])
    summary = {
        "qps_ratio_vs_hnswlib_at_target": (ours["qps"] / peer["qps"]) if ours and peer else None,
        "build_ratio_vs_hnswlib": results["sgml"]["build_seconds"] / results["hnswlib"]["build_seconds"],
    }
    report = {
        "date": time.strftime("%Y-%m-%d"), "cpu": model, "flags": flags, "threads": args.threads,
        "dataset": f"fashion-mnist {len(base)} x {base.shape[1]}, {len(queries)} queries, L2",
        "params": {"M": M, "ef_construction": EFC, "k": K, "target_recall": TARGET_RECALL},
        "results": results, "summary": summary,
    }
    out = ROOT / "benches" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ann.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# ANN: similar-products index against hnswlib, faiss and usearch-python", "",
        f"{report['date']}, {model} ({', '.join(flags)}), {args.threads} threads; {report['dataset']}; "
        f"M={M}, ef_construction={EFC}, recall@{K} against exact search.", "",
        "| library | build s | ef | recall@10 | queries/s |", "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for run in r["runs"]:
            lines.append(f"| {r['library']} | {r['build_seconds']:.1f} | {run['ef']} | "
                         f"{run['recall']:.4f} | {run['qps']:.0f} |")
    lines += ["", "At the smallest ef reaching recall@10 >= 0.995:", ""]
    for name, r in results.items():
        t = at_target(r)
        lines.append(f"- {r['library']}: " + (f"ef {t['ef']}, recall {t['recall']:.4f}, {t['qps']:.0f} queries/s"
                                              if t else "not reached in the sweep"))
    q = summary["qps_ratio_vs_hnswlib_at_target"]
    lines += ["", f"Queries/s over hnswlib's at the target: {q:.2f}x (goal >= 1.3)" if q else
              "Queries/s ratio: not computed (target recall not reached)",
              f"Build time over hnswlib's: {summary['build_ratio_vs_hnswlib']:.2f}x (goal <= 0.75)", ""]
    (out / "ann.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
