"""The sgml pipeline as an Airflow DAG: one task per step of the graph `sgml run all` runs.

The tasks and their order come from `sgml steps --json` (saved beside this file as
sgml_steps.json; a test in the workspace fails when it differs from what the binary
prints), so the DAG and `run all` cannot drift apart. Each task runs one command,

    sgml <step command> --run-date {{ ds }} --log-format json

on the worker, with sgml's settings in its environment. Every step replaces only its own
run-date partition (or writes a new model version), so retries and backfills are safe.

Settings, read when a task runs (never at parse time, never written here): an Airflow
Variable when set, else the worker's environment variable of the same meaning.

    Variable               environment             what
    sgml_bin               SGML_BIN                the sgml binary (default: sgml on PATH)
    sgml_store             SGML_STORE              the store: a directory or s3://bucket/prefix
    sgml_input             SGML_INPUT              ingest's source: a directory or postgres://...
    sgml_mapping           SGML_MAPPING            ingest's column mapping (online-retail, a TOML file)
    sgml_images_dir        SGML_IMAGES_DIR         where relative photo paths lie
    sgml_model_dir         SGML_MODEL_DIR          the title embedder's weights
    sgml_image_model_dir   SGML_IMAGE_MODEL_DIR    the image embedder's weights
    sgml_s3_endpoint       SGML_S3_ENDPOINT        an S3-compatible endpoint (not for AWS itself)
    sgml_demo              SGML_DEMO               "true": anonymize with the public demo key
                                                   (synthetic data only)
    sgml_anon_secret       SGML_ANON_KEY           the anonymization secret (Airflow masks
                                                   Variables named *secret* in logs)
    Connection sgml_amqp   SGML_AMQP_URL           RabbitMQ for model.published events

AWS credentials for s3:// stores come the standard AWS way (the worker's role or its
AWS_* environment). Heavy steps (a neural network or a training run) take a slot of the
pool `sgml_heavy`: create it with `airflow pools set sgml_heavy 1 "sgml heavy steps"`,
one slot per worker machine that can hold a training run.

Schedule: SGML_DAG_SCHEDULE (default @daily; "none": only when triggered).

Scale-out: with SGML_DAG_PARTS=n in the scheduler's and workers' environment, each step
that fans out ("fanout": "parts") becomes n mapped tasks, one per part (`sgml <step>
--partition k/n`), and a merge task (`--merge n`) that commits the run date's partition
once every part has succeeded. `features` ("map_reduce") becomes n map tasks
(`--partition k/n`), then n reduce tasks (`--reduce k/n`, one bucket of keys each), then
the merge. A failed part retries alone; the merge refuses while a part is missing.

Exit codes of sgml: 0 done (also when a step's inputs could not support it: its summary
says "skipped"), 1 failed (the reason is the last line of its stderr, repeated in the
task's error), 2 usage error, 101 a bug. A task retries failures with exponential
back-off, but not usage errors or bugs, which would fail again the same way. sgml never
exits 99 (BashOperator's skip code). The task's XCom is the summary: the last line sgml
prints on stdout, one line of JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Connection, Variable, task
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
)

DAG_ID = "sgml"
HEAVY_POOL = "sgml_heavy"
STEPS_JSON = Path(os.environ.get("SGML_STEPS_JSON", Path(__file__).with_name("sgml_steps.json")))

# How many parts the steps that fan out ("fanout": "parts" or "map_reduce" in
# sgml_steps.json) split into, each a mapped task on its own worker slot, then merged. Fixed when the DAG is
# parsed (the DAG's shape), so it is an environment variable of the scheduler and
# workers, not a Variable.
PARTS = int(os.environ.get("SGML_DAG_PARTS", "1"))

# When runs start: a cron expression or preset ("@daily", the default), or "none" for a
# DAG that only runs when triggered (by an upstream DAG, a sensor or a person). Parsed
# with the DAG, so it is an environment variable like SGML_DAG_PARTS.
SCHEDULE = os.environ.get("SGML_DAG_SCHEDULE", "@daily")

# Airflow Variable → the environment variable sgml reads.
SETTINGS = {
    "sgml_store": "SGML_STORE",
    "sgml_input": "SGML_INPUT",
    "sgml_mapping": "SGML_MAPPING",
    "sgml_images_dir": "SGML_IMAGES_DIR",
    "sgml_model_dir": "SGML_MODEL_DIR",
    "sgml_image_model_dir": "SGML_IMAGE_MODEL_DIR",
    "sgml_s3_endpoint": "SGML_S3_ENDPOINT",
    "sgml_demo": "SGML_DEMO",
    "sgml_anon_secret": "SGML_ANON_KEY",
}

# Exit codes after which a retry would fail the same way.
USAGE_ERROR, PANIC = 2, 101


def sgml_environment() -> dict[str, str]:
    """The worker's environment with the Airflow Variables and Connections laid over it."""
    env = dict(os.environ)
    for variable, name in SETTINGS.items():
        value = Variable.get(variable, default=None)
        if value is not None:
            env[name] = value
    try:
        env["SGML_AMQP_URL"] = Connection.get("sgml_amqp").get_uri()
    except AirflowNotFoundException:  # no events: services notice champions by polling
        pass
    return env


def run_sgml(command: list[str], run_date: str) -> dict:
    """Runs one sgml step; returns its summary line (the task's XCom)."""
    env = sgml_environment()
    binary = Variable.get("sgml_bin", default=None) or env.get("SGML_BIN", "sgml")
    argv = [binary, *command, "--run-date", run_date, "--log-format", "json"]
    print("running:", " ".join(argv), flush=True)
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    # sgml logs progress on stderr while it works: pass it to the task log as it comes.
    last_error: list[str] = []

    def forward_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            print(line, end="", flush=True)
            if line.strip():
                last_error[:] = [line.strip()]

    forwarder = threading.Thread(target=forward_stderr, daemon=True)
    forwarder.start()
    assert proc.stdout is not None
    lines = [line.rstrip("\n") for line in proc.stdout]
    code = proc.wait()
    forwarder.join()
    for line in lines:
        print(line)
    reason = last_error[0][:500] if last_error else "(nothing on stderr)"
    if code in (USAGE_ERROR, PANIC):
        raise AirflowFailException(f"sgml {' '.join(command)} exited {code}: {reason}")
    if code != 0:
        raise AirflowException(f"sgml {' '.join(command)} exited {code}: {reason}")
    if not lines:
        raise AirflowException(f"sgml {' '.join(command)} printed no summary line")
    return json.loads(lines[-1])


@task
def run_step(
    command: list[str], partition: str | None = None, stage: str = "--partition", ds: str | None = None
) -> dict:
    """One step, or one part of it ("k/n": a part with `--partition`, a bucket of keys
    with `--reduce`), for the run's logical date (`ds`)."""
    if partition is not None:
        command = [*command, stage, partition]
    return run_sgml(command, ds)


def load_steps(path: Path = STEPS_JSON) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def build_dag(steps: list[dict], parts: int = PARTS) -> DAG:
    with DAG(
        dag_id=DAG_ID,
        description="sellglobal-ml: ingest, features, embeddings, training, predictions",
        schedule=None if SCHEDULE.lower() == "none" else SCHEDULE,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        # Runs of different dates share the champion aliases: one at a time.
        max_active_runs=1,
        default_args={
            "retries": 3,
            "retry_delay": timedelta(minutes=2),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=30),
            "execution_timeout": timedelta(hours=6),
        },
        tags=["sgml"],
    ) as dag:
        # Each step's first task (what its upstream steps lead to) and last one (what
        # its downstream steps wait for): the same task unless the step fans out.
        first, last = {}, {}
        for step in steps:
            name, command = step["name"], list(step["command"])
            options = {"task_id": name, "doc_md": step["about"]}
            if step["heavy"]:
                options["pool"] = HEAVY_POOL
            fanout = step["fanout"] if parts > 1 else "one"
            every_part = [f"{k}/{parts}" for k in range(1, parts + 1)]
            if fanout in ("parts", "map_reduce"):
                # One mapped task per part, then the merge, which commits the partition
                # only when every part has succeeded; a failed part retries alone.
                suffix = "map" if fanout == "map_reduce" else "part"
                fan_out = run_step.override(**{**options, "task_id": f"{name}-{suffix}"})
                mapped = fan_out.partial(command=command).expand(partition=every_part)
                merge = run_step.override(**{**options, "pool": "default_pool"})(
                    [*command, "--merge", str(parts)]
                )
                if fanout == "map_reduce":
                    # Every reduce reads every map part: the reduces start when all
                    # maps have succeeded.
                    reduce = run_step.override(**{**options, "task_id": f"{name}-reduce"})
                    reduced = reduce.partial(command=command, stage="--reduce").expand(
                        partition=every_part
                    )
                    mapped >> reduced >> merge
                else:
                    mapped >> merge
                first[name], last[name] = mapped, merge
            else:
                first[name] = last[name] = run_step.override(**options)(command)
        for step in steps:
            for upstream in step["after"]:
                last[upstream] >> first[step["name"]]
    return dag


dag = build_dag(load_steps())
