"""The whole topology as ``make up`` starts it: train through Airflow's REST API, as the form does.

Airflow (LocalExecutor, metadata on PostgreSQL) runs the DAG; its tasks send the data work to
the Dask scheduler and track into the MLflow server (PostgreSQL, basic auth). Invalid run
parameters are refused with HTTP 400 by the Params schema before any run exists.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONF = {"source": "synthetic", "synthetic_users": 300, "synthetic_items": 150, "interactions_per_user": 25,
        "models": ["als"]}
DAG = "/api/v2/dags/recsys_training"


def api(stack, method: str, path: str, **kw):
    import requests

    return requests.request(method, stack.airflow_url + path, timeout=30, **kw)


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(3)
    raise AssertionError(f"{what} not done after {seconds} s")


def wait_for_run(stack, run_id: str, seconds: float = 900) -> None:
    """Wait for a DAG run to finish; fail with each task's state when it did not succeed."""
    path = f"{DAG}/dagRuns/{run_id}"
    state = wait_for(lambda: api(stack, "GET", path).json().get("state") in ("success", "failed")
                     and api(stack, "GET", path).json()["state"], seconds, f"DAG run {run_id}")
    if state != "success":
        tasks = api(stack, "GET", path + "/taskInstances").json().get("task_instances", [])
        pytest.fail(f"DAG run {state}: {[(t['task_id'], t['state']) for t in tasks]}; logs in {stack.logs}")


def unpause(stack) -> None:
    wait_for(lambda: api(stack, "GET", DAG).status_code == 200, 180, "DAG parsed")
    resp = api(stack, "PATCH", DAG, json={"is_paused": False})
    assert resp.status_code == 200, resp.text


def test_training_through_the_rest_api_on_the_whole_topology(stack):
    import requests

    unpause(stack)

    def trigger(conf):
        return api(stack, "POST", f"{DAG}/dagRuns", json={"logical_date": None, "conf": conf})

    for bad in ({**CONF, "synthetic_users": -5}, {**CONF, "models": ["no_such_model"]}, {**CONF, "split": "sideways"}):
        refused = trigger(bad)
        assert refused.status_code == 400, (bad, refused.status_code, refused.text[:500])

    started = trigger(CONF)
    assert started.status_code == 200, started.text[:1000]
    run_id = started.json()["dag_run_id"]
    wait_for_run(stack, run_id)

    # The MLflow server holds the runs and the alias; it refuses anonymous clients.
    assert requests.get(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10).status_code == 401
    client = stack.mlflow_client()
    champion = client.get_model_version_by_alias("recsys", "champion")
    assert champion.tags["recsys.model"] == "als"
    parent_id = client.get_run(champion.run_id).data.tags["mlflow.parentRunId"]
    children = client.search_runs([client.get_run(parent_id).info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.data.tags["recsys.model"] for r in children) == ["als", "popularity"]
    # Artifacts went through the server into its artifact store, not into a client-side folder.
    assert client.get_run(champion.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    assert list(Path(stack.env["RECSYS_ARTIFACT_ROOT"]).rglob("MLmodel"))

    # The plugin links each train task instance to its MLflow run, and the DAG to the champion's page.
    links = {}
    for index in (0, 1):
        got = api(stack, "GET", f"{DAG}/dagRuns/{run_id}/taskInstances/train/links", params={"map_index": index})
        assert got.status_code == 200, got.text[:500]
        links[index] = got.json()["extra_links"]["MLflow run"]
    run_ids = {r.info.run_id for r in children}
    assert {link.rsplit("/", 1)[-1] for link in links.values()} == run_ids, links
    redirect = api(stack, "GET", "/recsys/champion", allow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.headers["location"].endswith(f"/#/models/recsys/versions/{champion.version}")

    # The Dask scheduler ran the data work (ingest, clean, features) of the run.
    from distributed import Client

    with Client(stack.dask_scheduler, timeout="10s") as dask:
        ran = dask.run_on_scheduler(
            lambda dask_scheduler: {name: sum(p.state_counts.values()) for name, p in dask_scheduler.task_prefixes.items()}
        )
    assert sum(ran.values()) > 0 and any("parquet" in name for name in ran), ran

    if stack.api_url:  # recsys serve, when this checkout has it, answers
        assert requests.get(stack.api_url + "/openapi.json", timeout=10).status_code == 200
