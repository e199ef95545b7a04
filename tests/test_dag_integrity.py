"""Every DAG file imports cleanly, parses fast, and keeps heavy libraries out of its top level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
HEAVY = ("torch", "cupy", "dask", "mlflow", "distributed", "sklearn")

_PARSE_ONE = """
import json, sys, time, importlib.util
import airflow.sdk  # the DAG processor has Airflow loaded already; only the file's own cost counts
before = set(sys.modules)
started = time.process_time()  # CPU seconds: the work parsing costs, not the machine's load
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
elapsed = time.process_time() - started
new = sorted({name.split(".")[0] for name in set(sys.modules) - before})
print(json.dumps({"seconds": elapsed, "new_modules": new}))
"""


def test_there_are_dag_files():
    assert DAG_FILES, "no DAG files in dags/"


def test_dagbag_has_no_import_errors(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert "recsys_training" in bag.dag_ids


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_heavy_imports(path):
    out = subprocess.run(
        [sys.executable, "-c", _PARSE_ONE, str(path)], capture_output=True, text=True, env=dict(os.environ), check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = sorted(set(result["new_modules"]) & set(HEAVY))
    assert heavy == [], f"{path.name} imports {heavy} at its top level"
    assert result["seconds"] < 1.0, f"{path.name} took {result['seconds']:.2f} CPU s to parse"


def test_training_dag_shape(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("recsys_training")
    assert dag.catchup is False
    assert dag.default_args["retries"] >= 1
    assert {"plan", "ingest", "clean", "build_features", "train", "register_and_compare", "approval", "promote"} <= set(dag.task_ids)
    for name in ("source", "models", "model_params", "seed", "split", "k", "metric", "require_approval",
                 "promotion_margin", "use_gpu", "path", "synthetic_users"):
        assert name in dag.params, name


def test_pipelines_import_is_cheap():
    code = (
        "import sys, json; import pipelines, pipelines.params, pipelines.models, pipelines.steps, pipelines.cli;"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
