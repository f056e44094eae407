#!/usr/bin/env python3
"""Peak memory of `sgml ingest` against input size and share of bad rows (issue 14).

Builds orders exports of 1 M and 10 M lines (a generated export's lines repeated under new
order ids), with 0% and 50% of the lines breaking the contract (currency `N/A`), as CSV and
as JSON lines, ingests each with the release binary and records the peak RSS (sampled every
20 ms) and the wall time. The goal: peak RSS independent of input size and of the share of
bad rows (duplicate detection keeps a million keys in memory and spills the rest to disk, with
2 bytes of Bloom filter a spilled key).

Writes benches/results/ingest_memory.{json,md}. Not part of the tests: run
scripts/bench-ingest-memory (extra arguments come here, e.g. --sizes 1000000).
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parents[2]
# Release binaries: where scripts/cargo-env puts the target directory.
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def peak_rss_mib(cmd, env):
    """Runs cmd; returns (exit code, peak RSS MiB, seconds)."""
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    _, err = proc.communicate()
    done.set()
    t.join()
    if proc.returncode != 0:
        print(err.decode(errors="replace")[-2000:], file=sys.stderr)
    return proc.returncode, peak / 1024, time.time() - started


def write_orders(seed_orders, out, lines, bad_share, fmt):
    with open(seed_orders, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    oid, cur = header.index("order_id"), header.index("currency")
    bad_every = int(round(1 / bad_share)) if bad_share else 0
    with open(out, "w", newline="") as f:
        w = csv.writer(f) if fmt == "csv" else None
        if w:
            w.writerow(header)
        for i in range(lines):
            r = list(rows[i % len(rows)])
            r[oid] = f"{r[oid]}-{i // len(rows)}"
            if bad_every and i % bad_every == 0:
                r[cur] = "N/A"
            if w:
                w.writerow(r)
            else:
                f.write(json.dumps(dict(zip(header, r))) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    ap.add_argument("--bad", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--jsonl-sizes", type=int, nargs="*", default=[1_000_000],
                    help="JSON-lines exports are larger: fewer sizes by default")
    args = ap.parse_args()
    sgml = RELEASE / "sgml"
    work = Path(tempfile.mkdtemp(prefix="sgml-ingest-memory-"))
    seed = work / "seed"
    subprocess.run([sgml, "generate", "--orders", "20000", "--seed", "3", "--out", seed],
                   check=True, capture_output=True)
    results = []
    for fmt, sizes in (("csv", args.sizes), ("jsonl", args.jsonl_sizes)):
        for size in sizes:
            for bad in args.bad:
                export = work / f"export-{fmt}-{size}-{bad}"
                export.mkdir()
                for f in ("products.csv", "fx_rates.csv"):
                    shutil.copy(seed / f, export / f)
                write_orders(seed / "orders.csv", export / f"orders.{fmt}", size, bad, fmt)
                store = work / f"store-{fmt}-{size}-{bad}"
                code, peak, secs = peak_rss_mib(
                    [sgml, "--store", store, "ingest", "--demo", "--max-reject-share", "1",
                     "--input", export], dict(os.environ))
                row = {"format": fmt, "lines": size, "bad_share": bad, "exit": code,
                       "peak_rss_mib": round(peak, 1), "seconds": round(secs, 1),
                       "input_mib": round((export / f"orders.{fmt}").stat().st_size / 2**20, 1)}
                print(json.dumps(row), file=sys.stderr)
                results.append(row)
                subprocess.run(["rm", "-rf", export, store])
    model, flags = cpu()
    out = ROOT / "benches" / "results"
    meta = {"date": time.strftime("%Y-%m-%d"), "cpu": model, "cpu_flags": flags,
            "cores": os.cpu_count(), "results": results}
    (out / "ingest_memory.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = ["# Ingest: peak memory against input size and bad rows", "",
             f"{meta['date']}, {model} ({', '.join(flags)}), {meta['cores']} cores; release build, "
             "`sgml ingest --max-reject-share 1`, chunks of 200,000 rows.", "",
             "| format | order lines | bad | input | peak RSS | time |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['format']} | {r['lines']:,} | {int(r['bad_share'] * 100)}% | "
                     f"{r['input_mib']} MiB | {r['peak_rss_mib']} MiB | {r['seconds']} s |")
    (out / "ingest_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
