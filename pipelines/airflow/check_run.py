"""Checks what `airflow dags test sgml D` did (scripts/test-airflow): the DAG run
succeeded, every step of the graph ran once (a step fanned out: once per part, then its
merge), after the steps it reads from, each task's XCom is its step's summary, and the
store holds the champion and its predictions.

    check_run.py latest-order-date ORDERS.csv.gz
    check_run.py check --store DIR --run-date D --steps sgml_steps.json --log DAGS_TEST_LOG [--parts N]
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime as dt
import gzip
import json
import re
import sys
from pathlib import Path

# The sample has too few photos to train an image classifier: those steps record a
# skipped run (as in `sgml run all`); every other step must succeed.
MAY_SKIP = {"train-images", "predict-images"}


def latest_order_date(path: str) -> str:
    today = dt.date.today()
    latest = None
    with gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            try:
                day = dt.datetime.strptime(row["order_ts"][:10], "%Y-%m-%d").date()
            except (ValueError, TypeError):
                continue  # the sample's deliberately bad rows
            if day <= today and (latest is None or day > latest):
                latest = day
    if latest is None:
        sys.exit(f"{path}: no order has a date")
    return latest.isoformat()


def manifests(store: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(store.glob("runs/*/manifest.json"))]


def returned_values(log: str) -> list[dict]:
    """The tasks' return values (their XComs) as `airflow dags test` logs them."""
    found = []
    for m in re.finditer(r"Returned value was: (\{.*?\}) \[airflow", log):
        found.append(ast.literal_eval(m.group(1)))
    return found


def at(timestamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(timestamp)


def check(store: Path, run_date: str, steps: list[dict], log: str | None, parts: int) -> list[str]:
    """What is wrong; without the log of `airflow dags test` (a cluster run, whose
    caller checks the run's state), the DAG run's state and the XComs are not checked."""
    problems = []
    if log is not None and not re.search(r"DagRun Finished: dag_id=sgml, .*state=success", log):
        problems.append("the DAG run did not finish in state success")
    runs = manifests(store)
    xcoms = {x.get("run_id"): x for x in returned_values(log)} if log is not None else None
    by_step = {}
    for step in steps:
        name = step["name"]
        mine = [m for m in runs if m["step"] == name]
        fanout = step["fanout"] if parts > 1 else "one"
        every = [f"{k}/{parts}" for k in range(1, parts + 1)]
        stages = {"one": [], "parts": ["partition"], "map_reduce": ["partition", "reduce"]}[fanout]
        expected = sorted(
            [str({"merge": parts})] + [str({stage: k}) for stage in stages for k in every]
        ) if stages else None
        want = len(expected) if expected else 1  # the parts and their merge
        if len(mine) != want:
            problems.append(f"{name}: {len(mine)} runs, want {want}")
            continue
        if expected:
            splits = sorted(str((m["parameters"].get("split") or {})) for m in mine)
            if splits != expected:
                problems.append(f"{name}: runs {splits}, want {expected}")
                continue
            # Each stage starts after every run of the stage before it has finished.
            order = [*stages, "merge"]
            stage_of = lambda m: next(iter(m["parameters"]["split"]))  # noqa: E731
            for before, after in zip(order, order[1:]):
                done = [m for m in mine if stage_of(m) == before]
                started = [m for m in mine if stage_of(m) == after]
                if any(at(d["finished_at"]) > at(s["started_at"]) for d in done for s in started):
                    problems.append(f"{name}: a {after} started before every {before} had finished")
        by_step[name] = next(
            (m for m in mine if "merge" in (m["parameters"].get("split") or {})), mine[0]
        )
        allowed = {"succeeded", "skipped"} if name in MAY_SKIP else {"succeeded"}
        for m in mine:
            if m["status"] not in allowed:
                problems.append(f"{name}: status {m['status']} ({m.get('error')})")
            if m["run_date"] != run_date:
                problems.append(f"{name}: run date {m['run_date']}, want {run_date}")
            if xcoms is None:
                continue
            summary = xcoms.get(m["run_id"])
            if summary is None:
                problems.append(f"{name}: no task returned the summary of run {m['run_id']}")
            elif summary["step"] != name or summary["status"] != m["status"]:
                problems.append(f"{name}: XCom {summary} does not match its manifest")
    for step in steps:
        m = by_step.get(step["name"])
        for before in step["after"]:
            b = by_step.get(before)
            if m and b and at(b["finished_at"]) > at(m["started_at"]):
                problems.append(f"{step['name']} started before {before} finished")
    alias = store / "models/pricing/aliases/champion.json"
    if not alias.is_file():
        problems.append("no pricing champion")
    else:
        version = json.loads(alias.read_text())["version"]
        files = list((store / f"predictions/pricing/{version}/dt={run_date}").glob("*.parquet"))
        if not files:
            problems.append(f"no pricing predictions of champion {version} for {run_date}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    latest = sub.add_parser("latest-order-date")
    latest.add_argument("orders")
    c = sub.add_parser("check")
    c.add_argument("--store", type=Path, required=True)
    c.add_argument("--run-date", required=True)
    c.add_argument("--steps", type=Path, required=True)
    c.add_argument("--log", type=Path, help="the output of `airflow dags test`")
    c.add_argument("--parts", type=int, default=1, help="SGML_DAG_PARTS of the run")
    args = parser.parse_args()
    if args.command == "latest-order-date":
        print(latest_order_date(args.orders))
        return
    steps = json.loads(args.steps.read_text())
    log = args.log.read_text(errors="replace") if args.log else None
    problems = check(args.store, args.run_date, steps, log, args.parts)
    for p in problems:
        print(f"check: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    for summary in returned_values(log) if log is not None else []:
        print(
            f"check: {summary['step']:<26} {summary['status']:<10} "
            f"{summary['rows_written']:>8} rows written  {summary['manifest']}"
        )
    print(f"check: {len(steps)} steps ran in Airflow and the store holds their outputs")


if __name__ == "__main__":
    main()
