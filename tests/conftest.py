"""Test session setup: a throwaway platform home, Airflow and MLflow on SQLite inside it.

The Airflow variables must be set before anything imports airflow, so they are set here at
import time. Fixtures give each test its own MLflow database when it needs isolation.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The real data sits beside the checkout (never in it); RECSYS_MOVIELENS_DIR points elsewhere.
MOVIELENS = Path(os.environ.get("RECSYS_MOVIELENS_DIR", ROOT.parent / "shared" / "data" / "ml-latest-small"))

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="recsys-test-"))
os.environ.update(
    {
        "RECSYS_HOME": str(_SESSION_HOME),
        "AIRFLOW_HOME": str(_SESSION_HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_SESSION_HOME / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MLFLOW_TRACKING_URI": f"sqlite:///{_SESSION_HOME / 'mlflow.db'}",
        "RECSYS_ARTIFACT_ROOT": str(_SESSION_HOME / "mlartifacts"),
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    }
)
(_SESSION_HOME / "airflow").mkdir(parents=True, exist_ok=True)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database for the session (``dag.test()`` needs one)."""
    env = dict(os.environ)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return _SESSION_HOME / "airflow" / "airflow.db"


@pytest.fixture(scope="session")
def _mlflow_template_db(tmp_path_factory) -> Path:
    """An empty, fully migrated MLflow database, created once (creation takes seconds)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_home(tmp_path, monkeypatch, _mlflow_template_db):
    """A fresh MLflow tracking database and artifact root for one test."""
    import mlflow

    import mlflow.tracking.fluent as fluent

    shutil.copy(_mlflow_template_db, tmp_path / "mlflow.db")
    # The Default experiment's artifact location was stored relative ("mlruns/0") when the
    # template was made: a test logging to it wrote into the working directory (the checkout).
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   ((tmp_path / "artifacts" / "0").as_uri(),))
    # An experiment made active by an earlier test belongs to another database.
    monkeypatch.setattr(fluent, "_active_experiment_id", None, raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RECSYS_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", uri))


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The real ml-latest-small folder; skips when it is not on this machine."""
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.skip(f"MovieLens data not found at {MOVIELENS} (it is never shipped with the repo)")
    return MOVIELENS


def planted_interactions(n_users=300, n_items=120, factors=4, per_user=20, seed=0):
    """(user, item) pairs with planted latent tastes (:func:`pipelines.data.synthetic.planted_split`,
    nothing held out): a factor model beats popularity on them."""
    from pipelines.data.synthetic import planted_split

    train = planted_split(n_users, n_items, rank=factors, per_user=per_user, test_per_user=0, seed=seed).train.tocoo()
    return list(zip(train.row.tolist(), train.col.tolist()))
