#!/usr/bin/env python3
"""Anchor benchmark for issue 3: feature computation, Rust vs pandas vs polars-Python.

(a) The reference feature set of ../shared/NOTES.md (Peer numbers) on the raw UCI CSV,
    computed by this project's Rust binary `anchor-features`, by pandas and by polars'
    Python API, each in its own process on the same file (1x and 10x with shifted
    invoice numbers). polars and Rust get the same threads (POLARS_MAX_THREADS).
(b) This project's own pipeline: `sgml ingest` (CSV -> validated Parquet) and
    `sgml features` (Parquet -> feature tables) on UCI and on a generated set, with
    wall time and peak RSS of each process.

Run it through scripts/bench-features (builds release binaries, sets up .venv).
Results: benches/results/features.json and features.md.
"""
import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Release binaries: where scripts/cargo-env puts the target directory.
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


# ---------------------------------------------------------------- peers (in-process)

def peer_pandas(path):
    import pandas as pd
    t0 = time.perf_counter()
    df = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str}, parse_dates=["InvoiceDate"])
    t_read = time.perf_counter()
    df["revenue"] = df["Quantity"] * df["UnitPrice"]
    products = df.groupby("StockCode").agg(
        lines=("Quantity", "size"), quantity=("Quantity", "sum"),
        median_price=("UnitPrice", "median"), mean_price=("UnitPrice", "mean"),
        std_price=("UnitPrice", "std"), countries=("Country", "nunique"),
        customers=("CustomerID", "nunique"))
    file_last = df["InvoiceDate"].max()
    cust = df.dropna(subset=["CustomerID"]).groupby("CustomerID").agg(
        last=("InvoiceDate", "max"), frequency=("InvoiceNo", "nunique"), monetary=("revenue", "sum"))
    cust["recency"] = (file_last - cust["last"]).dt.days
    baskets = df.groupby(["Country", "InvoiceNo"])["Quantity"].sum().groupby("Country").mean()
    countries = df.groupby("Country").agg(revenue=("revenue", "sum"), invoices=("InvoiceNo", "nunique"))
    countries["mean_basket"] = baskets
    country_month = df.groupby([df["Country"], df["InvoiceDate"].dt.month])["revenue"].sum()
    t_end = time.perf_counter()
    return {"seconds": t_end - t0, "compute_seconds": t_end - t_read,
            "rows": {"products": len(products), "customers": len(cust),
                     "countries": len(countries), "country_month": len(country_month)}}


def peer_polars(path):
    import polars as pl
    t0 = time.perf_counter()
    lines = (pl.scan_csv(path, try_parse_dates=True,
                         schema_overrides={"InvoiceNo": pl.String, "StockCode": pl.String, "CustomerID": pl.Float64})
             .with_columns((pl.col("Quantity").cast(pl.Float64) * pl.col("UnitPrice")).alias("revenue")))
    products = lines.group_by("StockCode").agg(
        pl.len().alias("lines"), pl.col("Quantity").sum().alias("quantity"),
        pl.col("UnitPrice").median().alias("median_price"), pl.col("UnitPrice").mean().alias("mean_price"),
        pl.col("UnitPrice").std().alias("std_price"), pl.col("Country").n_unique().alias("countries"),
        pl.col("CustomerID").drop_nulls().n_unique().alias("customers"))
    file_last = lines.select(pl.col("InvoiceDate").max().alias("file_last"))
    customers = (lines.filter(pl.col("CustomerID").is_not_null()).group_by("CustomerID")
                 .agg(pl.col("InvoiceDate").max().alias("last"), pl.col("InvoiceNo").n_unique().alias("frequency"),
                      pl.col("revenue").sum().alias("monetary"))
                 .join(file_last, how="cross")
                 .select("CustomerID", (pl.col("file_last") - pl.col("last")).dt.total_days().alias("recency"),
                         "frequency", "monetary"))
    baskets = (lines.group_by("Country", "InvoiceNo").agg(pl.col("Quantity").sum().alias("basket"))
               .group_by("Country").agg(pl.col("basket").mean().alias("mean_basket")))
    countries = (lines.group_by("Country").agg(pl.col("revenue").sum(), pl.col("InvoiceNo").n_unique().alias("invoices"))
                 .join(baskets, on="Country", how="left"))
    country_month = lines.group_by("Country", pl.col("InvoiceDate").dt.month().alias("month")).agg(pl.col("revenue").sum())
    frames = pl.collect_all([products, customers, countries, country_month])
    t_end = time.perf_counter()
    return {"seconds": t_end - t0,
            "rows": dict(zip(["products", "customers", "countries", "country_month"], [len(f) for f in frames]))}


# ---------------------------------------------------------------- harness

def run(cmd, env=None):
    """Runs a command; returns (stdout, wall seconds, peak RSS in MB) of that process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{err.decode(errors='replace')[-2000:]}")
    return out.decode(), wall, usage.ru_maxrss / 1024.0


def best_of(n, fn):
    results = [fn() for _ in range(n)]
    return min(results, key=lambda r: r["seconds"])


def prepare(uci_gz, work, copies):
    work.mkdir(parents=True, exist_ok=True)
    one = work / "uci.csv"
    if not one.exists():
        with open(one, "wb") as f:
            subprocess.run(["gzip", "-dc", str(uci_gz)], stdout=f, check=True)
    ten = work / f"uci_x{copies}.csv"
    if not ten.exists():
        # Streamed copy by copy, so this process stays small: children forked from it
        # would otherwise report its memory as their peak RSS.
        import csv
        with open(ten, "w", newline="", encoding="utf-8") as dst:
            writer = csv.writer(dst)
            for k in range(copies):
                with open(one, newline="", encoding="utf-8") as src:
                    reader = csv.reader(src)
                    header = next(reader)
                    if k == 0:
                        writer.writerow(header)
                    for r in reader:
                        inv = r[0]
                        prefix = inv.rstrip("0123456789")
                        digits = inv[len(prefix):]
                        if digits:
                            r[0] = prefix + str(int(digits) + k * 1_000_000)
                        writer.writerow(r)
    return one, ten


def anchor(args, env, files):
    rows = []
    for label, path in files:
        for peer in ["rust", "polars", "pandas"]:
            def once():
                if peer == "rust":
                    out, wall, rss = run([str(args.anchor_bin), str(path)], env)
                else:
                    out, wall, rss = run([sys.executable, __file__, "--peer", peer, str(path)], env)
                r = json.loads(out.strip().splitlines()[-1])
                r.update(wall=wall, rss_mb=rss)
                return r
            r = best_of(args.repeat, once)
            rows.append({"input": label, "engine": peer, **r})
            print(f"(a) {label:>8} {peer:>7}: {r['seconds']:.3f} s, {r['rss_mb']:.0f} MB", flush=True)
    return rows


def pipeline(args, env, work):
    """(b): sgml ingest + features, on UCI and on a generated set."""
    sgml = str(args.sgml_bin)
    rows = []
    env = dict(env, SGML_ANON_KEY="benchmark-anonymization-key-0001")
    sets = [("uci", ["--mapping", "online-retail", "--input", str(args.uci)])]
    gen = work / f"gen_{args.orders}"
    if not (gen / "orders.csv").exists():
        print(f"generating {args.orders} orders in {gen}", flush=True)
        run([sgml, "generate", "--out", str(gen), "--orders", str(args.orders), "--seed", "7"], env)
    sets.append((f"gen-{args.orders // 1000}k-orders", ["--input", str(gen)]))
    for label, source in sets:
        store = work / f"store_{label}"
        shutil.rmtree(store, ignore_errors=True)
        out, wall_i, rss_i = run([sgml, "--store", str(store), "--log-format", "json", "ingest", *source], env)
        manifest = sorted((store / "runs").glob("*ingest*/manifest.json"))[-1]
        m = json.loads(manifest.read_text())
        run_date, lines_in = m["run_date"], m["counts"]["orders"]["rows_in"]
        out, wall_f, rss_f = run([sgml, "--store", str(store), "--log-format", "json", "features", "--run-date", run_date], env)
        rows.append({"input": label, "order_lines": lines_in, "ingest_s": wall_i, "ingest_rss_mb": rss_i,
                     "features_s": wall_f, "features_rss_mb": rss_f, "csv_to_features_s": wall_i + wall_f})
        print(f"(b) {label}: ingest {wall_i:.2f} s / {rss_i:.0f} MB, features {wall_f:.2f} s / {rss_f:.0f} MB", flush=True)
    return rows


def write(results, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "features.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Feature benchmarks ({results['date']}, {results['machine']})", "",
             f"Threads: {results['threads']} for polars and Rust; pandas is single-threaded. Best of {results['repeat']}. "
             f"Peers: " + ", ".join(f"{k} {v}" for k, v in results["peers"].items()) + ".", "",
             "## (a) Reference feature set on the raw UCI CSV (read + compute)", "",
             "| input | engine | seconds | peak RSS MB | vs Rust |", "|---|---|---:|---:|---:|"]
    for label in sorted({r["input"] for r in results["anchor"]}, key=lambda s: len(s)):
        group = [r for r in results["anchor"] if r["input"] == label]
        rust = next(r for r in group if r["engine"] == "rust")["seconds"]
        for r in group:
            lines.append(f"| {label} | {r['engine']} | {r['seconds']:.3f} | {r['rss_mb']:.0f} | {r['seconds'] / rust:.2f}x |")
    lines += ["", "## (b) sgml pipeline: ingest (CSV → validated Parquet) and features (Parquet → feature tables)", "",
              "| input | order lines | ingest s | ingest RSS MB | features s | features RSS MB | CSV → features s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results["pipeline"]:
        lines.append(f"| {r['input']} | {r['order_lines']:,} | {r['ingest_s']:.2f} | {r['ingest_rss_mb']:.0f} | "
                     f"{r['features_s']:.2f} | {r['features_rss_mb']:.0f} | {r['csv_to_features_s']:.2f} |")
    (out_dir / "features.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        fn = {"pandas": peer_pandas, "polars": peer_polars}[sys.argv[2]]
        print(json.dumps(fn(sys.argv[3])))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--uci", type=Path, default=ROOT.parent / "shared/data/online_retail.csv.gz")
    p.add_argument("--work", type=Path, default=ROOT / "target/bench-data")
    p.add_argument("--sgml-bin", type=Path, default=RELEASE / "sgml")
    p.add_argument("--anchor-bin", type=Path, default=RELEASE / "anchor-features")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--orders", type=int, default=5_000_000)
    p.add_argument("--skip", choices=["a", "b"], default=None)
    args = p.parse_args()
    env = dict(os.environ, POLARS_MAX_THREADS=str(args.threads), RAYON_NUM_THREADS=str(args.threads))
    for var in ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]:
        env.pop(var, None)
    one, ten = prepare(args.uci, args.work, args.copies)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, {os.uname().machine}",
               "threads": args.threads, "repeat": args.repeat, "anchor": [], "pipeline": [],
               # Versions from metadata: importing the libraries here would inflate the
               # peak RSS that forked children report.
               "peers": {name: importlib.metadata.version(name) for name in ["pandas", "polars"]}}
    if args.skip != "a":
        results["anchor"] = anchor(args, env, [("uci", one), (f"uci x{args.copies}", ten)])
    if args.skip != "b":
        results["pipeline"] = pipeline(args, env, args.work)
    write(results, ROOT / "benches/results")


if __name__ == "__main__":
    main()
