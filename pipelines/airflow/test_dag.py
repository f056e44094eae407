"""Checks of sgml_dag.py that need no scheduler (scripts/test-airflow runs them with the
real sgml binary before `airflow dags test`): the DAG's shape with and without fan-out,
and how a task reports sgml's failures.

    python test_dag.py SGML_BINARY STORE_DIR

Airflow Variables and Connections are read through the task SDK, which needs a running
task; here they are replaced by "not set" (the worker's environment applies), the one
stand-in in these checks.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def load(parts: int):
    os.environ["SGML_DAG_PARTS"] = str(parts)
    import sgml_dag

    return importlib.reload(sgml_dag)


def check_shape() -> None:
    steps = load(1).load_steps()
    whole = load(1).dag
    assert set(whole.task_ids) == {s["name"] for s in steps}, whole.task_ids
    for s in steps:
        task = whole.get_task(s["name"])
        assert {u for u in task.upstream_task_ids} == set(s["after"]), (s["name"], task.upstream_task_ids)
        assert (task.pool == "sgml_heavy") == s["heavy"], (s["name"], task.pool)
    split = [s["name"] for s in steps if s["fanout"] == "parts"]
    map_reduce = [s["name"] for s in steps if s["fanout"] == "map_reduce"]
    assert split and map_reduce == ["features"], (split, map_reduce)
    fanned = load(3).dag
    for name in split + map_reduce:
        first = f"{name}-part" if name in split else f"{name}-map"
        parts, merge = fanned.get_task(first), fanned.get_task(name)
        assert merge.op_args[0][-2:] == ["--merge", "3"], merge.op_args
        # The part (map) tasks are mapped over the three partitions.
        mapped = parts.op_kwargs_expand_input.value
        assert mapped["partition"] == ["1/3", "2/3", "3/3"], mapped
        if name in split:
            assert parts.task_id in merge.upstream_task_ids
            continue
        # map → reduce → merge: the reduces are mapped over the three buckets.
        reduce = fanned.get_task(f"{name}-reduce")
        assert parts.task_id in reduce.upstream_task_ids, reduce.upstream_task_ids
        assert reduce.task_id in merge.upstream_task_ids, merge.upstream_task_ids
        assert reduce.partial_kwargs["op_kwargs"]["stage"] == "--reduce", reduce.partial_kwargs
        assert reduce.op_kwargs_expand_input.value["partition"] == ["1/3", "2/3", "3/3"]
        # Downstream steps (their first task: the parts, when they fan out too) wait
        # for the merge.
        first_task = {"one": "{}", "parts": "{}-part", "map_reduce": "{}-map"}
        for s in steps:
            if name in s["after"]:
                downstream = fanned.get_task(first_task[s["fanout"]].format(s["name"]))
                assert merge.task_id in downstream.upstream_task_ids, (s["name"], downstream.upstream_task_ids)
    print(f"test_dag: shape ok ({len(steps)} steps, {len(split)} split, {len(map_reduce)} map/reduce)")


def check_failures(sgml: str, store: str) -> None:
    dag_module = load(1)
    # No Variables or Connections outside a running task: "not set".
    dag_module.Variable.get = staticmethod(lambda key, default=None: default)

    def no_connection(conn_id):
        raise AirflowNotFoundException(conn_id)

    dag_module.Connection.get = staticmethod(no_connection)
    os.environ.update(SGML_BIN=sgml, SGML_STORE=store)
    # A step whose input is missing fails with sgml's reason, and may be retried.
    try:
        dag_module.run_sgml(["features"], "2024-05-01")
        raise AssertionError("features without ingested orders succeeded")
    except AirflowFailException:
        raise AssertionError("a data failure must be retryable")
    except AirflowException as e:
        assert "exited 1" in str(e) and "run `sgml ingest` first" in str(e), e
    # A usage error fails at once: a retry would fail the same way.
    try:
        dag_module.run_sgml(["features", "--no-such-flag"], "2024-05-01")
        raise AssertionError("a bad flag succeeded")
    except AirflowFailException as e:
        assert "exited 2" in str(e), e
    # A step that succeeds returns its summary line.
    summary = dag_module.run_sgml(["retention"], "2024-05-01")
    assert summary["step"] == "retention" and summary["status"] == "succeeded", summary
    print("test_dag: failures ok (exit 1 retried with its reason, exit 2 failed at once, summary returned)")


if __name__ == "__main__":
    check_shape()
    check_failures(sys.argv[1], sys.argv[2])
