"""An Airflow task process SIGKILLed in the middle of ``train`` under a real scheduler.

``airflow standalone`` (LocalExecutor, PostgreSQL) as in tests/integration/test_airflow_live.py,
whose fixtures this test reuses. Once the ``train`` task of the ALS candidate is running, its
task process is killed; Airflow retries it (a transient failure keeps its retries) and the run
succeeds with metrics identical to an undisturbed run of the same steps in this process, and
with one MLflow run per candidate (the retry reuses it instead of adding another).
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.integration.test_airflow_live import _get, _headers, _wait_for, airflow_extra_env, airflow_live, postgres_databases  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONF = {"source": "synthetic", "synthetic_users": 300, "synthetic_items": 150, "interactions_per_user": 25,
        "models": ["als"], "model_params": {"als": {"factors": 16, "iterations": 40}}}
TIMING = ("fit_seconds",)  # wall-clock, not a result


def _kill_when_running(base: str, ti_path: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ti = _get(base, ti_path).json()
        if ti.get("state") == "running" and ti.get("pid"):
            os.kill(int(ti["pid"]), signal.SIGKILL)
            return int(ti["pid"])
        if ti.get("state") in ("success", "failed", "upstream_failed", "skipped"):
            break
        time.sleep(0.2)
    raise AssertionError(f"train never seen running: {_get(base, ti_path).json()}")


def test_a_killed_train_task_is_retried_to_the_same_metrics(airflow_live, tmp_path):  # noqa: F811
    import mlflow
    import requests

    from pipelines.pipeline import from_params, run_pipeline

    base, env, _ = airflow_live
    _wait_for(lambda: _get(base, "/api/v2/dags/recsys_training").status_code == 200, 180, "DAG parsed")
    resp = requests.patch(base + "/api/v2/dags/recsys_training", json={"is_paused": False}, headers=_headers(base), timeout=10)
    assert resp.status_code == 200, resp.text
    started = requests.post(base + "/api/v2/dags/recsys_training/dagRuns", json={"logical_date": None, "conf": CONF},
                            headers=_headers(base), timeout=30)
    assert started.status_code == 200, started.text[:1000]
    run_id = started.json()["dag_run_id"]
    run_path = f"/api/v2/dags/recsys_training/dagRuns/{run_id}"
    als = run_path + "/taskInstances/train/0"  # candidates in order: als, then the popularity baseline

    _kill_when_running(base, als, 420)
    _wait_for(lambda: _get(base, run_path).json().get("state") in ("success", "failed"), 420, "DAG run")
    tasks = _get(base, run_path + "/taskInstances").json().get("task_instances", [])
    assert _get(base, run_path).json()["state"] == "success", [(t["task_id"], t["state"]) for t in tasks]
    assert _get(base, als).json()["try_number"] == 2  # killed once, retried once

    xcom = _get(base, run_path + "/taskInstances/train/xcomEntries/return_value?map_index=0")
    assert xcom.status_code == 200, xcom.text[:500]
    value = xcom.json()["value"]
    retried = value if isinstance(value, dict) else json.loads(value)

    reference = run_pipeline(from_params(CONF), "undisturbed", out_root=str(tmp_path / "lake"), track=False)
    calm = next(c for c in reference["candidates"] if c["model"] == "als")
    strip = lambda metrics: {k: v for k, v in metrics.items() if k not in TIMING}  # noqa: E731
    assert strip(retried["metrics"]) == strip(calm["metrics"])

    plan = _get(base, run_path + "/taskInstances/plan/xcomEntries/return_value").json()["value"]
    plan = plan if isinstance(plan, dict) else json.loads(plan)
    client = mlflow.MlflowClient(plan["tracking_uri"])  # the store every task of the run used
    children = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`recsys.model` = 'als'",
    )
    assert len(children) == 1, [r.info.run_id for r in children]
