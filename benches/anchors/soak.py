#!/usr/bin/env python3
"""Soak test of `sgml serve` (issue 14): minutes of mixed traffic at saturation.

Valid, invalid and unauthenticated requests from many clients at once, hot swaps of the
champion (publish --force and rollback, announced over RabbitMQ when it runs), idle
sockets and slowloris clients, while a prober times /healthz and a sampler reads the
server's RSS and the size of /metrics. Passes when:

- no valid request got a 5xx (or a connection error);
- /healthz p99 <= 100 ms;
- RSS at the end is at most 10% above RSS after the warm-up (shrinking is no leak);
- /metrics is no larger at the end than after the warm-up (+10%: histograms fill).

Writes benches/results/soak.{json,md}. Not part of the tests: run scripts/soak.
"""

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Release binaries: where scripts/cargo-env puts the target directory.
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
SECRET = "soak-secret-of-at-least-thirty-two-bytes"
AMQP = "amqp://guest:guest@127.0.0.1:5672/%2f"


def token(scope, secret=SECRET):
    import jwt  # PyJWT, installed by scripts/setup --bench

    return jwt.encode({"sub": "soak", "exp": int(time.time()) + 7200, "scope": scope},
                      secret, algorithm="HS256")


def request(method, url, body=None, headers=None, timeout=30):
    """(status, bytes); status 0 for a connection error."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.valid_failures = []

    def add(self, kind, status):
        with self.lock:
            self.counts.setdefault(kind, {}).setdefault(status, 0)
            self.counts[kind][status] += 1
            if kind == "valid" and (status == 0 or status >= 500):
                self.valid_failures.append(status)


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def cpu_flags():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return [f for f in ("avx2", "avx512f", "fma") if f in flags]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline")
    ap.add_argument("--clients", type=int, default=8, help="valid-request threads")
    ap.add_argument("--workers", type=int, default=2, help="sgml serve scoring threads")
    ap.add_argument("--orders", type=int, default=3000)
    args = ap.parse_args()
    sgml = RELEASE / "sgml"
    if not sgml.exists():
        sys.exit(f"{sgml} missing: run scripts/soak (it builds the release binary)")

    work = Path(tempfile.mkdtemp(prefix="sgml-soak-"))
    export, store = work / "export", work / "store"
    env = dict(os.environ, SGML_JWT_SECRET=SECRET, SGML_AMQP_URL=AMQP)
    print("soak: training two pricing versions", file=sys.stderr)
    subprocess.run([sgml, "generate", "--orders", str(args.orders), "--seed", "5", "--out", export],
                   check=True, capture_output=True)
    subprocess.run([sgml, "--store", store, "run", "all", "--demo", "--input", export],
                   check=True, capture_output=True, env=env)
    champion = json.loads((store / "models/pricing/aliases/champion.json").read_text())
    run_date = max(p.name[3:] for p in (store / "features/order_lines").iterdir())
    subprocess.run([sgml, "--store", store, "train", "pricing", "--run-date", run_date,
                    "--seed", "7", "--trees", "200", "--no-promote"],
                   check=True, capture_output=True, env=env)
    versions = sorted(p.name for p in (store / "models/pricing").iterdir()
                      if p.is_dir() and p.name not in ("aliases", "history"))
    other = next(v for v in versions if v != champion["version"])

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sgml, "--store", store, "serve", "--listen", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--poll-secs", "5"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    good = token("predict:pricing")
    forged = token("predict:pricing", secret="x" * 40)
    rng = random.Random(11)
    markets = ["DE", "FR", "US", "JP", "GB", "ES", "IT", "NL"]

    def valid_body(n):
        return json.dumps({"rows": [{
            "market": rng.choice(markets), "category": rng.choice(["home", "toys", None]),
            "month": rng.randint(1, 12), "quantity": rng.choice([1, 2, 12]),
            "title": "Blue ceramic mug"} for _ in range(n)]}).encode()

    bodies = [valid_body(n) for n in (1, 10, 100, 1000)]
    deadline = time.time() + 60
    while request("GET", base + "/readyz")[0] != 200:
        if time.time() > deadline or server.poll() is not None:
            sys.exit("sgml serve did not become ready")
        time.sleep(0.2)

    stats = Stats()
    stop = threading.Event()
    predict = base + "/v1/models/pricing/predict"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {good}"}

    def valid_client():
        while not stop.is_set():
            status, _ = request("POST", predict, rng.choice(bodies), headers)
            stats.add("valid", status)

    def invalid_client():
        cases = [
            (predict, b'{"rows": [{"market": "DE", "month": 13}]}', headers),
            (predict, b"not json", headers),
            (predict, b"{" * (2 << 20), headers),
            (predict, bodies[0], {"Authorization": f"Bearer {forged}"}),
            (predict, bodies[0], {}),
            (base + "/v1/models/nope/predict", bodies[0], headers),
        ]
        while not stop.is_set():
            url, body, h = rng.choice(cases)
            stats.add("invalid", request("POST", url, body, h)[0])

    def unauthenticated_client():
        while not stop.is_set():
            name = "".join(rng.choice("abcdefghij") for _ in range(12))
            stats.add("unauthenticated",
                      request("POST", f"{base}/v1/models/{name}/predict", b"{}", {})[0])

    def idle_and_slow():
        while not stop.is_set():
            socks = []
            for i in range(60):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    if i % 3 == 0:
                        s.sendall(b"POST /v1/models/pricing/predict HTTP/1.1\r\nHost: x\r\n")
                    socks.append(s)
                except OSError:
                    pass
            for _ in range(30):
                if stop.is_set():
                    break
                for s in socks[::3]:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        pass
                time.sleep(0.5)
            for s in socks:
                s.close()

    health = []

    def prober():
        while not stop.is_set():
            t0 = time.perf_counter()
            status, _ = request("GET", base + "/healthz", timeout=10)
            health.append(((time.perf_counter() - t0) * 1000, status))
            time.sleep(0.05)

    swaps = []

    def swapper():
        flip = True
        while not stop.wait(20):
            cmd = ([sgml, "--store", store, "models", "publish", "pricing", "--version", other, "--force"]
                   if flip else [sgml, "--store", store, "models", "rollback", "pricing"])
            swaps.append(subprocess.run(cmd, env=env, capture_output=True).returncode)
            flip = not flip

    samples = []

    def sampler():
        while not stop.wait(5):
            _, text = request("GET", base + "/metrics")
            samples.append((time.time(), rss_mib(server.pid), len(text)))

    threads = ([threading.Thread(target=valid_client) for _ in range(args.clients)]
               + [threading.Thread(target=invalid_client) for _ in range(2)]
               + [threading.Thread(target=unauthenticated_client) for _ in range(2)]
               + [threading.Thread(target=f) for f in (idle_and_slow, prober, swapper, sampler)])
    started = time.time()
    for t in threads:
        t.start()
    print(f"soak: {args.minutes} minutes of traffic on {base}", file=sys.stderr)
    time.sleep(args.minutes * 60)
    stop.set()
    for t in threads:
        t.join()
    server.terminate()
    server.wait(timeout=60)

    warm = [s for s in samples if s[0] - started >= args.warmup]
    base_rss, end_rss = warm[0][1], warm[-1][1]
    base_metrics, end_metrics = warm[0][2], warm[-1][2]
    latencies = [ms for ms, _ in health]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
        "minutes": args.minutes, "clients": args.clients, "workers": args.workers,
        "requests": stats.counts,
        "valid_5xx_or_errors": len(stats.valid_failures),
        "healthz": {"probes": len(latencies), "failed": sum(1 for _, s in health if s != 200),
                    "p50_ms": round(statistics.median(latencies), 2),
                    "p99_ms": round(percentile(latencies, 99), 2),
                    "max_ms": round(max(latencies), 2)},
        "rss_mib": {"after_warmup": round(base_rss, 1), "end": round(end_rss, 1),
                    "change_pct": round(100 * (end_rss - base_rss) / base_rss, 1)},
        "metrics_bytes": {"after_warmup": base_metrics, "end": end_metrics},
        "swaps": {"done": len(swaps), "failed": sum(1 for r in swaps if r != 0)},
    }
    checks = {
        "zero 5xx on valid requests": result["valid_5xx_or_errors"] == 0,
        "/healthz p99 <= 100 ms": result["healthz"]["p99_ms"] <= 100,
        # Growth is what a leak looks like; the allocator handing memory back is not.
        "RSS within 10% of after warm-up": result["rss_mib"]["change_pct"] <= 10,
        "/metrics size flat": end_metrics <= base_metrics * 1.1,
    }
    result["checks"] = checks
    out = ROOT / "benches" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Soak: `sgml serve` under mixed traffic",
        "",
        f"{result['date']}, {result['cpu']} ({', '.join(result['cpu_flags'])}), {result['cores']} cores; "
        f"{args.minutes} min, {args.clients} valid clients, {args.workers} scoring threads, "
        "2 invalid + 2 unauthenticated clients, 60 idle/slowloris sockets, a swap every 20 s.",
        "",
        "| check | measured | pass |",
        "|---|---|---|",
        f"| zero 5xx on valid requests | {result['valid_5xx_or_errors']} of "
        f"{sum(stats.counts.get('valid', {}).values())} | {checks['zero 5xx on valid requests']} |",
        f"| /healthz p99 <= 100 ms | p50 {result['healthz']['p50_ms']} ms, p99 {result['healthz']['p99_ms']} ms, "
        f"max {result['healthz']['max_ms']} ms | {checks['/healthz p99 <= 100 ms']} |",
        f"| RSS within 10% of after warm-up | {base_rss:.1f} → {end_rss:.1f} MiB "
        f"({result['rss_mib']['change_pct']}%) | {checks['RSS within 10% of after warm-up']} |",
        f"| /metrics size flat | {base_metrics} → {end_metrics} bytes | {checks['/metrics size flat']} |",
        "",
        f"Swaps: {result['swaps']['done']} ({result['swaps']['failed']} failed). "
        f"Requests by status: `{json.dumps(stats.counts)}`",
    ]
    (out / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
