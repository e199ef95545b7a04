"""The production topology for the system and browser tests: brought up once per session.

``python -m pipelines.stack up`` (what ``make up`` runs) with throwaway PostgreSQL databases,
a temporary home and free loopback ports; ``down`` at the end, which must leave no process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def drop_database(name: str) -> None:
    pg_admin(f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'")
    pg_admin(f'drop database if exists "{name}"')


class Stack:
    """What a test needs to talk to the running topology."""

    def __init__(self, info: dict, env: dict[str, str]):
        self.info = info
        self.env = env
        self.airflow_url = info["airflow_url"]
        self.mlflow_url = info["mlflow_url"]
        self.dask_scheduler = info["dask_scheduler"]
        self.api_url = info.get("api_url")
        self.logs = Path(info["logs"])
        self.mlflow_auth = (info["mlflow_username"], Path(info["mlflow_password_file"]).read_text().strip())

    def mlflow_client(self):
        """An MLflow client logged in as the stack's admin (the server has basic auth on)."""
        import mlflow

        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = self.mlflow_auth
        return mlflow.MlflowClient(self.mlflow_url)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The topology up (Airflow, MLflow server, Dask, serve when present); down afterwards."""
    try:
        pg_admin("select 1")
    except Exception as exc:  # psycopg2.OperationalError and socket errors alike
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    home = tmp_path_factory.mktemp("stack")
    suffix = uuid.uuid4().hex[:10]
    databases = {key: f"recsys_{key}_{suffix}" for key in ("af", "mlf", "mlfauth")}
    env = {
        **os.environ,
        "RECSYS_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{PG}/{databases['af']}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "RECSYS_TRAINING_SCHEDULE": "none",  # only the runs the tests trigger
        "RECSYS_MLFLOW_BACKEND_URI": f"{PG}/{databases['mlf']}",
        "RECSYS_MLFLOW_AUTH_URI": f"{PG}/{databases['mlfauth']}",
        "RECSYS_ARTIFACT_ROOT": str(home / "artifact-store"),
        "RECSYS_AIRFLOW_PORT": str(free_port()),
        "RECSYS_MLFLOW_PORT": str(free_port()),
        "RECSYS_DASK_PORT": str(free_port()),
        "RECSYS_API_PORT": str(free_port()),
        "PYTHONPATH": str(ROOT),
    }
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    command = [sys.executable, "-m", "pipelines.stack"]
    started = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, timeout=900)
    state = home / "stack"
    try:
        assert started.returncode == 0, started.stderr[-4000:]
        yield Stack(json.loads((state / "stack.json").read_text()), env)
    finally:
        stopped = subprocess.run([*command, "down"], env=env, capture_output=True, text=True, timeout=300)
        from pipelines.stack import leftover_processes

        left = leftover_processes(state)
        for name in databases.values():
            drop_database(name)
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        assert left == [], f"processes left behind by down: {left}"
