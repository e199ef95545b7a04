"""The whole topology as ``make up`` starts it: train through Airflow's REST API, as the form does.

Airflow (LocalExecutor, metadata on PostgreSQL) runs the DAG; its tasks send the data work to
the Dask scheduler and track into the MLflow server (PostgreSQL, basic auth). Invalid run
parameters are refused with HTTP 400 by the Params schema before any run exists. The run
reads a PostgreSQL table through an Airflow connection whose password must then be found
nowhere: not in MLflow's database, Airflow's metadata (XCom, run conf), the logs or the lake.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import PG, drop_database, pg_admin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "/api/v2/dags/recsys_training"
PASSWORD = "Pw-" + uuid.uuid4().hex  # unique: any hit in a search comes from this run
CONN_ID = "recsys_events"


@pytest.fixture
def events_database(stack):
    """A throwaway database with an interactions table, readable by a role with a password."""
    import pandas as pd
    import sqlalchemy as sa

    from tests.conftest import planted_interactions

    suffix = uuid.uuid4().hex[:10]
    role, database = f"recsys_reader_{suffix}", f"recsys_events_{suffix}"
    pg_admin(f"create role {role} login password '{PASSWORD}'")
    pg_admin(f"create database {database}")
    rows = planted_interactions(n_users=300, n_items=120, per_user=20, seed=1)
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=1.0, timestamp=range(len(rows)))
    engine = sa.create_engine(f"{PG}/{database}")
    frame.to_sql("events", engine, index=False)
    with engine.begin() as conn:
        conn.execute(sa.text(f"grant select on events to {role}"))
    engine.dispose()
    try:
        yield {"role": role, "database": database}
    finally:
        drop_database(database)
        pg_admin(f"drop role if exists {role}")


def databases_containing(url: str, needle: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Tables of the database at ``url`` with a row whose text contains ``needle``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    hits = []
    try:
        with engine.connect() as conn:
            tables = conn.execute(sa.text(
                "select table_schema, table_name from information_schema.tables "
                "where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')"
            )).all()
            for schema, table in tables:
                if table in skip:
                    continue
                found = conn.execute(sa.text(f'select count(*) from "{schema}"."{table}" t where t::text like :n'),
                                     {"n": f"%{needle}%"}).scalar()
                if found:
                    hits.append(f"{schema}.{table}")
    finally:
        engine.dispose()
    return hits


def files_containing(folder: Path, needle: str) -> list[str]:
    data = needle.encode()
    return [str(p) for p in folder.rglob("*") if p.is_file() and data in p.read_bytes()]


def api(stack, method: str, path: str, **kw):
    import requests

    return requests.request(method, stack.airflow_url + path, timeout=30, **kw)


def wait_for(check, seconds: float, what: str):
    """Poll ``check`` until it returns a truthy value; a slow or busy server only means "not yet"."""
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = check()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(3)
    raise AssertionError(f"{what} not done after {seconds} s")


def wait_for_run(stack, run_id: str, seconds: float = 900) -> None:
    """Wait for a DAG run to finish; fail with each task's state when it did not succeed."""
    path = f"{DAG}/dagRuns/{run_id}"

    def finished():
        state = api(stack, "GET", path).json().get("state")
        return state if state in ("success", "failed") else None

    state = wait_for(finished, seconds, f"DAG run {run_id}")
    if state != "success":
        tasks = api(stack, "GET", path + "/taskInstances").json().get("task_instances", [])
        pytest.fail(f"DAG run {state}: {[(t['task_id'], t['state']) for t in tasks]}; logs in {stack.logs}")


def unpause(stack) -> None:
    wait_for(lambda: api(stack, "GET", DAG).status_code == 200, 180, "DAG parsed")
    resp = api(stack, "PATCH", DAG, json={"is_paused": False})
    assert resp.status_code == 200, resp.text


def test_training_through_the_rest_api_on_the_whole_topology(stack, events_database):
    import requests

    unpause(stack)
    connection = {"connection_id": CONN_ID, "conn_type": "postgres", "host": "127.0.0.1", "port": 5432,
                  "login": events_database["role"], "password": PASSWORD, "schema": events_database["database"]}
    created = api(stack, "POST", "/api/v2/connections", json=connection)
    assert created.status_code in (200, 201), created.text[:500]

    def trigger(conf):
        return api(stack, "POST", f"{DAG}/dagRuns", json={"logical_date": None, "conf": conf})

    conf = {"source": "sql", "sql_conn_id": CONN_ID, "sql_table": "events", "models": ["als"]}
    for bad in ({**conf, "k": 0}, {**conf, "models": ["no_such_model"]}, {**conf, "split": "sideways"},
                {**conf, "model_params": {"als": {"factors": -5}}}, {**conf, "model_params": {"als": {"nope": 1}}}):
        refused = trigger(bad)
        assert refused.status_code == 400, (bad, refused.status_code, refused.text[:500])

    started = trigger(conf)
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

    # The Dask scheduler ran the data work (ingest, clean, features) of the run, and every fit.
    from distributed import Client

    with Client(stack.dask_scheduler, timeout="10s") as dask:
        ran = dask.run_on_scheduler(
            lambda dask_scheduler: {name: sum(p.state_counts.values()) for name, p in dask_scheduler.task_prefixes.items()}
        )
    assert sum(ran.values()) > 0 and any("parquet" in name for name in ran), ran
    assert ran.get("fit-als") == ran.get("fit-popularity") > 0, ran  # one task each, plus their transitions

    # The password reached the database connection only: it is in none of the stores.
    mlflow_db = stack.env["RECSYS_MLFLOW_BACKEND_URI"]
    assert databases_containing(mlflow_db, PASSWORD) == []
    assert databases_containing(stack.env["RECSYS_MLFLOW_AUTH_URI"], PASSWORD) == []
    # Airflow's metadata, XCom and run conf included; its connection table is the secret store itself.
    assert databases_containing(stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], PASSWORD, skip=("connection",)) == []
    home = Path(stack.env["RECSYS_HOME"])
    assert files_containing(stack.logs, PASSWORD) == []  # every service's log and every task log
    assert files_containing(home / "lake", PASSWORD) == []
    assert files_containing(Path(stack.env["RECSYS_ARTIFACT_ROOT"]), PASSWORD) == []
    # ...and the search does find it where it is meant to be, so it can fail.
    assert databases_containing(stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], events_database["role"]) != []

    if stack.api_url:  # recsys serve follows @champion and answers with it
        ready = wait_for(lambda: requests.get(stack.api_url + "/ready", timeout=10).json().get("ready") and
                         requests.get(stack.api_url + "/ready", timeout=10).json(), 120, "recsys serve loading @champion")
        assert str(ready["model"]["version"]) == str(champion.version)
        answer = requests.get(f"{stack.api_url}/recommendations/0", timeout=10)  # user 0 of the events table
        assert answer.status_code == 200, answer.text[:500]
        assert answer.json()["source"] == "model" and answer.json()["items"]
