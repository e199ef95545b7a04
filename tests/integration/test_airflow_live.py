"""The DAG under a real Airflow (scheduler, DAG processor, API server, LocalExecutor), set up as
a team's own Airflow would be: only the dags folder and ``RECSYS_HOME`` point at the platform.

No ``MLFLOW_TRACKING_URI`` and no artifact root are set, and every process starts in a working
directory other than the checkout: the tasks (each a fresh process) must agree on one tracking
store through the run's plan, and it must be the one inside ``RECSYS_HOME``. This is also the
path where Dask must not spawn worker processes (see STACK_NOTES), which ``dag.test()`` hides.
Everything started here is stopped by process group at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import PG, free_port, pg_admin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONF = {"source": "synthetic", "synthetic_users": 300, "synthetic_items": 150, "interactions_per_user": 25,
        "models": ["als"], "model_params": {"als": {"factors": 16, "iterations": 5}}}


_free_port, _pg_admin = free_port, pg_admin  # the names the other live tests import from here


@pytest.fixture
def postgres_databases():
    """A throwaway Airflow metadata database on the local PostgreSQL, dropped afterwards."""
    try:
        _pg_admin("select 1")
    except Exception as exc:  # psycopg2.OperationalError and socket errors alike
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    suffix = uuid.uuid4().hex[:10]
    names = {"airflow": f"recsys_af_{suffix}"}
    for name in names.values():
        _pg_admin(f"create database {name}")
    yield {role: f"{PG}/{name}" for role, name in names.items()}
    for name in names.values():
        _pg_admin(f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'")
        _pg_admin(f"drop database if exists {name}")


@pytest.fixture
def airflow_extra_env() -> dict[str, str]:
    """Variables a test module adds to the Airflow environment (override this fixture there)."""
    return {}


@pytest.fixture
def airflow_live(tmp_path, postgres_databases, airflow_extra_env):
    """`airflow standalone` on loopback with LocalExecutor; yields (base_url, env, elsewhere)."""
    port = _free_port()
    home = tmp_path / "airflow"
    home.mkdir()
    venv_bin = str(Path(sys.executable).parent)
    # A clean environment, not the test session's (which sets MLFLOW_TRACKING_URI and more).
    env = {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "user-home"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_databases["airflow"],
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "RECSYS_TRAINING_SCHEDULE": "none",  # only the run this test triggers
        "RECSYS_HOME": str(tmp_path / "recsys"),
        "PYTHONPATH": str(ROOT),  # this checkout's package, not whichever one the venv has installed
        **airflow_extra_env,
    }
    elsewhere = tmp_path / "elsewhere"  # not the checkout: a relative default would land here
    (tmp_path / "user-home").mkdir()
    elsewhere.mkdir()
    migrate = subprocess.run(["airflow", "db", "migrate"], env=env, cwd=elsewhere, capture_output=True, text=True,
                             timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    log = open(tmp_path / "standalone.log", "w")
    proc = subprocess.Popen(["airflow", "standalone"], env=env, cwd=elsewhere, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _get(base, "/api/v2/monitor/health").status_code == 200, 180, "API server")
        yield base, env, elsewhere
    finally:
        _stop(proc, str(home))
        log.close()


def _get(base: str, path: str, **kw):
    import requests

    try:
        return requests.get(base + path, headers=_headers(base), timeout=10, **kw)
    except requests.RequestException:
        return _Down()


class _Down:
    status_code = 0

    def json(self):
        return {}


_TOKENS: dict[str, str] = {}


def _headers(base: str) -> dict[str, str]:
    import requests

    if base not in _TOKENS:
        try:
            resp = requests.post(base + "/auth/token", json={}, timeout=10)
            _TOKENS[base] = resp.json().get("access_token", "") if resp.ok else ""
        except (requests.RequestException, ValueError):
            return {}
    token = _TOKENS.get(base)
    return {"Authorization": f"Bearer {token}"} if token else {}


def _wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(2)
    raise AssertionError(f"{what} not ready after {seconds} s")


def _stop(proc: subprocess.Popen, airflow_home: str) -> None:
    """Stop standalone's process group, then any task process group it left behind."""
    import psutil

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    for leftover in psutil.process_iter(["pid"]):
        try:
            if leftover.environ().get("AIRFLOW_HOME") == airflow_home:
                leftover.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


def test_tasks_agree_on_the_tracking_store_from_recsys_home_alone(airflow_live):
    import mlflow
    import requests

    base, env, elsewhere = airflow_live
    _wait_for(lambda: _get(base, "/api/v2/dags/recsys_training").status_code == 200, 180, "DAG parsed")
    resp = requests.patch(base + "/api/v2/dags/recsys_training", json={"is_paused": False}, headers=_headers(base), timeout=10)
    assert resp.status_code == 200, resp.text

    started = requests.post(base + "/api/v2/dags/recsys_training/dagRuns", json={"logical_date": None, "conf": CONF},
                            headers=_headers(base), timeout=30)
    assert started.status_code == 200, started.text[:1000]
    run_id = started.json()["dag_run_id"]
    path = f"/api/v2/dags/recsys_training/dagRuns/{run_id}"
    _wait_for(lambda: _get(base, path).json().get("state") in ("success", "failed"), 540, "DAG run")
    state = _get(base, path).json()["state"]
    if state != "success":
        tasks = _get(base, path + "/taskInstances").json().get("task_instances", [])
        pytest.fail(f"DAG run {state}: {[(t['task_id'], t['state']) for t in tasks]}")

    home = Path(env["RECSYS_HOME"])
    plan = _get(base, path + "/taskInstances/plan/xcomEntries/return_value").json()["value"]
    assert plan["tracking_uri"] == f"sqlite:///{home / 'mlflow.db'}"
    assert plan["lake"] == str(home / "lake")
    assert plan["artifact_root"] == (home / "mlartifacts").as_uri()

    # Every run of the pipeline is in RECSYS_HOME's store: the parent, one child per candidate, the champion.
    client = mlflow.MlflowClient(plan["tracking_uri"])
    champion = client.get_model_version_by_alias("recsys", "champion")
    assert champion.tags["recsys.model"] == "als"
    parent = client.get_run(client.get_run(champion.run_id).data.tags["mlflow.parentRunId"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["recsys.model"] for r in children) == ["als", "popularity"]
    assert client.get_run(champion.run_id).info.artifact_uri.startswith(plan["artifact_root"])
    # ...and nothing fell back to a relative default in the working directory or MLflow's ./mlruns.
    assert sorted(p.name for p in elsewhere.iterdir()) == []
