"""The DAG under a real Airflow (scheduler, DAG processor, API server, LocalExecutor).

Production-like: Airflow's metadata and MLflow's tracking database on the local PostgreSQL.
The run is triggered through the REST API the UI form uses: invalid values are refused with
HTTP 400 by the Params schema; a valid run trains, registers and promotes a model. This is the
path where Dask must not spawn worker processes (see STACK_NOTES), which ``dag.test()`` hides.
Everything started here is stopped by process group at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
CONF = {"source": "synthetic", "synthetic_users": 300, "synthetic_items": 150, "interactions_per_user": 25,
        "models": ["als"], "model_params": {"als": {"factors": 16, "iterations": 5}}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def postgres_databases():
    """Two throwaway databases (Airflow, MLflow) on the local PostgreSQL, dropped afterwards."""
    try:
        _pg_admin("select 1")
    except Exception as exc:  # psycopg2.OperationalError and socket errors alike
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    suffix = uuid.uuid4().hex[:10]
    names = {"airflow": f"recsys_af_{suffix}", "mlflow": f"recsys_mlf_{suffix}"}
    for name in names.values():
        _pg_admin(f"create database {name}")
    yield {role: f"{PG}/{name}" for role, name in names.items()}
    for name in names.values():
        _pg_admin(f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'")
        _pg_admin(f"drop database if exists {name}")


@pytest.fixture
def airflow_live(tmp_path, postgres_databases):
    """`airflow standalone` on loopback with LocalExecutor; yields (base_url, env)."""
    port = _free_port()
    home = tmp_path / "airflow"
    home.mkdir()
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
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
        "MLFLOW_TRACKING_URI": postgres_databases["mlflow"],
        "RECSYS_ARTIFACT_ROOT": str(tmp_path / "mlartifacts"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    migrate = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    # Create the MLflow schema once up front, before tasks log to it concurrently.
    subprocess.run([sys.executable, "-c", "from pipelines.tracking.setup import configure_mlflow; configure_mlflow()"],
                   env=env, check=True, capture_output=True, timeout=300)
    log = open(tmp_path / "standalone.log", "w")
    proc = subprocess.Popen(["airflow", "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _get(base, "/api/v2/monitor/health").status_code == 200, 180, "API server")
        yield base, env
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


def test_real_airflow_refuses_bad_conf_and_runs_the_dag(airflow_live):
    import mlflow
    import requests

    base, env = airflow_live
    _wait_for(lambda: _get(base, "/api/v2/dags/recsys_training").status_code == 200, 180, "DAG parsed")
    resp = requests.patch(base + "/api/v2/dags/recsys_training", json={"is_paused": False}, headers=_headers(base), timeout=10)
    assert resp.status_code == 200, resp.text

    def trigger(conf):
        return requests.post(base + "/api/v2/dags/recsys_training/dagRuns", json={"logical_date": None, "conf": conf},
                             headers=_headers(base), timeout=30)

    bad_confs = ({**CONF, "model_params": {"als": {"factors": -5}}}, {**CONF, "model_params": {"als": {"nope": 1}}},
                 {**CONF, "models": ["no_such_model"]}, {**CONF, "split": "sideways"})
    for bad in bad_confs:
        refused = trigger(bad)
        assert refused.status_code == 400, (bad, refused.status_code, refused.text[:500])

    started = trigger(CONF)
    assert started.status_code == 200, started.text[:1000]
    run_id = started.json()["dag_run_id"]
    path = f"/api/v2/dags/recsys_training/dagRuns/{run_id}"
    _wait_for(lambda: _get(base, path).json().get("state") in ("success", "failed"), 540, "DAG run")
    state = _get(base, path).json()["state"]
    if state != "success":
        tasks = _get(base, path + "/taskInstances").json().get("task_instances", [])
        pytest.fail(f"DAG run {state}: {[(t['task_id'], t['state']) for t in tasks]}")

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("recsys", "champion")
    assert champion.tags["recsys.model"] == "als"
    assert float(champion.tags["promotion.candidate_value"]) > float(champion.tags["promotion.baseline_value"])
