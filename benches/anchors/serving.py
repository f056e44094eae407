#!/usr/bin/env python3
"""Anchor benchmark for issue 5: `sgml serve` vs a minimal FastAPI + LightGBM service.

Both serve the same pricing champion (trained here by `sgml run all` on a synthetic
export), on loopback, with the same number of request workers, the same JWT check and
the same strict body validation; both run LightGBM's C++ predict with one thread per
request. Before timing, the harness checks that both return the same prices for the
same 100 rows. Load comes from wrk (a second process), bounded in time, for a
single-row and a 100-row request body: requests per second, p50 and p99 latency,
non-2xx count, and each server's peak RSS.

Run it through scripts/bench-serving. Results: benches/results/serving.json and .md.
"""
import argparse
import gzip
import csv
import importlib.metadata
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import jwt
import psutil

ROOT = Path(__file__).resolve().parents[2]
# Release binaries: where scripts/cargo-env puts the target directory.
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
RESULTS = ROOT / "benches" / "results"
SGML = RELEASE / "sgml"
SECRET = "bench-serving-secret-of-at-least-32-bytes"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(url, token, body):
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait_ready(url, token, body, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            return post(url, token, body)
        except Exception:
            time.sleep(0.2)
    sys.exit(f"{what} did not answer within 60 s")


class PeakRss:
    """Samples the RSS of a process tree (uvicorn's workers included) every 50 ms."""

    def __init__(self, pid):
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                procs = [self.proc] + self.proc.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def done(self):
        self.stop = True
        self.thread.join()
        return self.peak / 2**20


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url, token, body_file, seconds, connections, threads, work):
    script = work / f"post-{body_file.stem}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(script), url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {p: float(v) * UNIT[u] for p, v, u in
           re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_second": rps, "p50_ms": pct["50"], "p99_ms": pct["99"],
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else None}


def bodies(export, rng):
    with gzip.open(export / "products.csv.gz", "rt") if (export / "products.csv.gz").exists() \
            else open(export / "products.csv") as f:
        products = list(csv.DictReader(f))
    markets = sorted({p["seller_country"] for p in products if p["seller_country"]})

    def row():
        p = rng.choice(products)
        return {"product_id": p["product_id"], "category": p["category"] or None,
                "brand": p["brand"] or None, "condition": p["condition"] or None,
                "market": rng.choice(markets), "seller_country": p["seller_country"] or None,
                "title": p["title"] or None, "month": rng.randint(1, 12),
                "quantity": rng.choice([1, 1, 1, 2, 6, 12, 24]), "guest": rng.random() < 0.3}

    return {"rows_1": {"rows": [row()]}, "rows_100": {"rows": [row() for _ in range(100)]}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per case")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2,
                    help="request workers of each server (sgml threads, uvicorn processes)")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--orders", type=int, default=20000, help="size of the synthetic export")
    args = ap.parse_args()
    if not SGML.exists():
        sys.exit(f"{SGML} missing: run scripts/bench-serving (it builds the release binary)")
    if not shutil.which("wrk"):
        sys.exit("wrk missing: run scripts/bench-serving (scripts/setup --bench installs it)")

    work = Path(tempfile.mkdtemp(prefix="sgml-bench-serving-"))
    export, store = work / "export", work / "store"
    subprocess.run([SGML, "generate", "--orders", str(args.orders), "--seed", "5",
                    "--out", export], check=True, capture_output=True)
    subprocess.run([SGML, "--store", store, "run", "all", "--input", export], check=True,
                   capture_output=True)
    champion = json.loads((store / "models/pricing/aliases/champion.json").read_text())
    bundle = store / "models/pricing" / champion["version"]
    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600,
                        "scope": "predict:pricing"}, SECRET, algorithm="HS256")
    rng = random.Random(7)
    cases = bodies(export, rng)
    files = {}
    for name, body in cases.items():
        files[name] = work / f"{name}.json"
        files[name].write_text(json.dumps(body))

    env = dict(os.environ, SGML_JWT_SECRET=SECRET, SGML_BUNDLE=str(bundle))
    sgml_port, py_port = free_port(), free_port()
    servers = {
        "sgml serve": subprocess.Popen(
            [SGML, "--store", store, "serve", "--listen", f"127.0.0.1:{sgml_port}",
             "--workers", str(args.workers)], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL),
        "FastAPI + LightGBM": subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "serving_fastapi:app", "--host", "127.0.0.1",
             "--port", str(py_port), "--workers", str(args.workers), "--log-level", "warning",
             "--no-access-log"], env=env, cwd=ROOT / "benches" / "anchors",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    urls = {"sgml serve": f"http://127.0.0.1:{sgml_port}/v1/models/pricing/predict",
            "FastAPI + LightGBM": f"http://127.0.0.1:{py_port}/v1/models/pricing/predict"}
    try:
        answers = {}
        for name, proc in servers.items():
            answers[name] = wait_ready(urls[name], token, files["rows_100"].read_bytes(), proc, name)
        a, b = (answers[n]["predictions"] for n in servers)
        max_rel = max(abs(x["price_base"] - y["price_base"]) / y["price_base"] for x, y in zip(a, b))
        if max_rel > 1e-9:
            sys.exit(f"the services disagree: max relative price difference {max_rel}")

        results = []
        for case in ["rows_1", "rows_100"]:
            for name, proc in servers.items():
                rss = PeakRss(proc.pid)
                # A short warm-up (connections, caches, Python's first calls), untimed.
                wrk(urls[name], token, files[case], 2, args.connections, args.wrk_threads, work)
                r = wrk(urls[name], token, files[case], args.seconds, args.connections,
                        args.wrk_threads, work)
                r.update({"service": name, "case": case, "peak_rss_mib": rss.done()})
                print(json.dumps(r), flush=True)
                results.append(r)
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    def get(service, case):
        return next(r for r in results if r["service"] == service and r["case"] == case)

    ratios = {}
    for case in ["rows_1", "rows_100"]:
        s, p = get("sgml serve", case), get("FastAPI + LightGBM", case)
        ratios[case] = {"throughput_x": s["requests_per_second"] / p["requests_per_second"],
                        "p99_ratio": s["p99_ms"] / p["p99_ms"]}
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "versions": {m: importlib.metadata.version(m) for m in
                     ["fastapi", "uvicorn", "pydantic", "lightgbm", "PyJWT"]},
        "wrk": f"-t{args.wrk_threads} -c{args.connections} -d{args.seconds}s (after a 2 s warm-up)",
        "workers": args.workers,
        "orders": args.orders,
        "model_version": champion["version"],
        "max_relative_price_difference": max_rel,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(
        {"meta": meta, "results": results, "ratios": ratios}, indent=2) + "\n")
    lines = [
        "# Serving: `sgml serve` vs FastAPI + LightGBM",
        "",
        f"{meta['date']}, {meta['machine']}; both servers {args.workers} workers, load from "
        f"wrk {meta['wrk']} on the same machine (loopback). Same champion "
        f"({meta['orders']} synthetic orders), same JWT check and body validation, "
        f"same prices (max relative difference {max_rel:.1e}).",
        "",
        "| case | service | req/s | p50 ms | p99 ms | non-2xx | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['case']} | {r['service']} | {r['requests_per_second']:.0f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} | "
                     f"{r['peak_rss_mib']:.0f} |")
    lines += ["", "| case | throughput sgml / Python | p99 sgml / Python | target |",
              "|---|---:|---:|---|"]
    for case, target in [("rows_1", "≥ 10× throughput, lower p99"),
                         ("rows_100", "≥ 2× throughput, lower p99")]:
        lines.append(f"| {case} | {ratios[case]['throughput_x']:.1f}× | "
                     f"{ratios[case]['p99_ratio']:.2f} | {target} |")
    lines.append("")
    (RESULTS / "serving.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
