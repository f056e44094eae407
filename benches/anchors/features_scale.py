#!/usr/bin/env python3
"""Scale benchmark for issue 17: `sgml features` on one machine and as map/reduce on a
real Airflow cluster (Celery workers, one task slot per core), on a generated export.

1. `sgml generate --orders N` (5,000,000 by default: about 10 million order lines) and
   `sgml ingest`, once (kept under --work between runs).
2. `sgml features --run-date D` alone on this machine: wall time and peak RSS (the run
   manifest's peak_rss_mib, and the child's ru_maxrss as a cross-check).
3. The same step through the sgml DAG (a step graph with only `features`) on the
   cluster of scripts/airflow-cluster with SGML_DAG_PARTS = n for each n of --parts:
   the DAG run's wall time and every task's peak RSS, from the run manifests.

The goal (issue 17): each task's peak RSS at n = 4 at most 0.35 x the single-machine
peak; the single-machine peak at most 1.5 GB.

Run it through scripts/bench-features-scale (builds the release binary). Results:
benches/results/features-scale.json and features-scale.md.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def cpu():
    model, flags = platform.processor() or "?", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ["avx2", "avx512f", "avx512bw", "fma"] if f in have)
                break
    except OSError:
        pass
    return f"{model} ({flags}), {os.cpu_count()} cores"


def run(argv, env):
    """Runs argv; returns (stdout, wall seconds, peak RSS MiB of that child alone)."""
    import tempfile

    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(argv)} failed ({os.waitstatus_to_exitcode(status)}):\n{err.read()[-3000:]}")
        return out.read(), wall, usage.ru_maxrss / 1024


def manifests(store, step, since=None):
    found = []
    for path in (store / "runs").glob(f"*{step}*/manifest.json"):
        m = json.loads(path.read_text())
        if m["step"] == step and (since is None or m["started_at"] >= since):
            found.append(m)
    return sorted(found, key=lambda m: m["started_at"])


def seconds(m):
    from datetime import datetime

    return (datetime.fromisoformat(m["finished_at"]) - datetime.fromisoformat(m["started_at"])).total_seconds()


def stage_of(m):
    split = (m["parameters"] or {}).get("split") or {}
    return next(iter(split), "whole")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=5_000_000)
    p.add_argument("--parts", default="1,2,4", help="the SGML_DAG_PARTS to run on the cluster")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="Celery workers, one slot each")
    p.add_argument("--work", type=Path, default=ROOT / "target/bench-data")
    p.add_argument("--sgml-bin", type=Path, default=RELEASE / "sgml")
    args = p.parse_args()
    sgml = str(args.sgml_bin)
    env = dict(os.environ, SGML_ANON_KEY="benchmark-anonymization-key-0001")
    for var in ["SGML_STORE", "SGML_INPUT", "SGML_MAPPING", "SGML_AMQP_URL", "SGML_DEMO"]:
        env.pop(var, None)

    gen = args.work / f"gen_{args.orders}"
    if not (gen / "orders.csv").exists():
        print(f"generating {args.orders} orders in {gen}", flush=True)
        run([sgml, "generate", "--out", str(gen), "--orders", str(args.orders), "--seed", "7"], env)
    store = args.work / f"store_scale_{args.orders}"
    ingests = manifests(store, "ingest") if store.exists() else []
    if not ingests or ingests[-1]["status"] != "succeeded":
        shutil.rmtree(store, ignore_errors=True)
        print(f"ingesting into {store}", flush=True)
        run([sgml, "--store", str(store), "--log-format", "json", "ingest", "--input", str(gen)], env)
        ingests = manifests(store, "ingest")
    run_date = ingests[-1]["run_date"]
    lines = ingests[-1]["counts"]["orders"]["rows_in"]

    print("features on one machine", flush=True)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    _, wall, child_rss = run(
        [sgml, "--store", str(store), "--log-format", "json", "features", "--run-date", run_date], env
    )
    single = manifests(store, "features", since)[-1]
    single_rss = single["peak_rss_mib"]
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": cpu(),
        "orders": args.orders,
        "order_lines": lines,
        "workers": args.workers,
        "single": {"seconds": wall, "peak_rss_mib": single_rss, "ru_maxrss_mib": child_rss},
        "cluster": [],
    }
    print(f"one machine: {wall:.1f} s, peak {single_rss} MiB (ru_maxrss {child_rss:.0f})", flush=True)

    graph = json.loads(subprocess.check_output([sgml, "steps", "--json"], env=env))
    only = [dict(s, after=[]) for s in graph if s["name"] == "features"]
    steps_file = args.work / "features-only-steps.json"
    steps_file.write_text(json.dumps(only, indent=2))
    cluster_env = dict(env, SGML_BIN=sgml, SGML_STORE=str(store), SGML_CLUSTER_TIMEOUT="3600")
    for n in [int(x) for x in args.parts.split(",")]:
        print(f"features on the cluster, n = {n}", flush=True)
        out = args.work / f"cluster-{n}"
        shutil.rmtree(out, ignore_errors=True)
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        subprocess.run(
            [str(ROOT / "scripts/airflow-cluster"), "--run-date", run_date, "--parts", str(n),
             "--workers", str(args.workers), "--steps", str(steps_file), "--out", str(out)],
            env=cluster_env, check=True,
        )
        tasks = [
            {"stage": stage_of(m), "split": (m["parameters"] or {}).get("split"), "seconds": seconds(m),
             "peak_rss_mib": m["peak_rss_mib"], "status": m["status"]}
            for m in manifests(store, "features", since)
        ]
        row = {
            "parts": n,
            "dag_seconds": int((out / "seconds").read_text()),
            "task_seconds": sum(t["seconds"] for t in tasks),
            "max_task_rss_mib": max(t["peak_rss_mib"] for t in tasks),
            "tasks": tasks,
        }
        for stage in ["whole", "partition", "reduce", "merge"]:
            mine = [t for t in tasks if t["stage"] == stage]
            if mine:
                row[f"{stage}_rss_mib"] = max(t["peak_rss_mib"] for t in mine)
                row[f"{stage}_seconds"] = max(t["seconds"] for t in mine)
        results["cluster"].append(row)
        print(f"n = {n}: DAG {row['dag_seconds']} s, largest task {row['max_task_rss_mib']} MiB", flush=True)
    write(results, ROOT / "benches/results")


def write(r, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "features-scale.json").write_text(json.dumps(r, indent=2))
    single = r["single"]["peak_rss_mib"]
    lines = [
        f"# features at scale: one machine and map/reduce on Airflow + Celery ({r['date']})",
        "",
        f"Machine: {r['machine']}. Input: {r['orders']:,} generated orders, {r['order_lines']:,} order lines, "
        f"one local store shared by {r['workers']} Celery workers (one task slot each). "
        "Peak RSS is each sgml process's own (VmHWM, from its run manifest); the Airflow worker around it is not counted.",
        "",
        f"One machine (`sgml features`, no Airflow): {r['single']['seconds']:.1f} s, peak {single} MiB "
        f"(goal ≤ 1536 MiB).",
        "",
        "| n | DAG wall s | map s (max) | reduce s (max) | merge s | map RSS MiB | reduce RSS MiB | merge RSS MiB | largest task / one machine |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in r["cluster"]:
        g = lambda k: c.get(k)  # noqa: E731
        fmt = lambda v, f="{:.1f}": "–" if v is None else f.format(v)  # noqa: E731
        if c["parts"] == 1:
            lines.append(
                f"| 1 | {c['dag_seconds']} | {fmt(g('whole_seconds'))} (whole) | – | – | "
                f"{fmt(g('whole_rss_mib'), '{}')} (whole) | – | – | {c['max_task_rss_mib'] / single:.2f}× |"
            )
        else:
            lines.append(
                f"| {c['parts']} | {c['dag_seconds']} | {fmt(g('partition_seconds'))} | {fmt(g('reduce_seconds'))} | "
                f"{fmt(g('merge_seconds'))} | {fmt(g('partition_rss_mib'), '{}')} | {fmt(g('reduce_rss_mib'), '{}')} | "
                f"{fmt(g('merge_rss_mib'), '{}')} | {c['max_task_rss_mib'] / single:.2f}× |"
            )
    lines += ["", "Goal: the largest task at n = 4 ≤ 0.35× the one-machine peak."]
    (out_dir / "features-scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
