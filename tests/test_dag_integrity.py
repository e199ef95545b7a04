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


def test_training_runs_on_new_data_or_a_retrain_request_with_the_cron_as_fallback(airflow_db):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.standard.triggers.file import FileDeleteTrigger
    from airflow.sdk import AssetOrTimeSchedule

    from pipelines.constants import INTERACTIONS_ASSET_URI, RETRAIN_ASSET_URI
    from pipelines.data.landing import landed_flag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "recsys_training.py")).get_dag("recsys_training")
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assets = {asset.uri: asset for asset in dag.timetable.asset_condition.objects}
    assert set(assets) == {INTERACTIONS_ASSET_URI, RETRAIN_ASSET_URI}
    assert type(dag.timetable.asset_condition).__name__ == "AssetAny"  # either one starts a run, not both
    (watcher,) = assets[INTERACTIONS_ASSET_URI].watchers
    assert isinstance(watcher.trigger, FileDeleteTrigger) and watcher.trigger.filepath == str(landed_flag())
    assert dag.timetable.timetable.expression == "0 0 * * *"
    assert "trigger_reason" in dag.params and dag.params["trigger_reason"] is None


def test_the_landing_watcher_survives_every_dag_file_being_parsed(airflow_db):
    """Airflow syncs an Asset's watchers from each parsed file that names it (schedule or outlet):
    recsys_ingest_events names the interactions Asset as an outlet, and when it named it without
    the watcher, each parse of that file removed the watcher the training DAG had added."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.asset import AssetModel
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from pipelines.constants import INTERACTIONS_ASSET_URI
    from pipelines.data.landing import landed_flag

    def parse(name: str) -> None:
        bag = DagBag(dag_folder=str(ROOT / "dags" / name))
        assert bag.import_errors == {}
        sync_bag_to_db(bag, "dags-folder", None)

    def watched() -> list[str]:
        with create_session() as session:
            asset = session.scalars(select(AssetModel).where(AssetModel.uri == INTERACTIONS_ASSET_URI)).one()
            return sorted(trigger.kwargs.get("filepath", "") for trigger in asset.triggers)

    DagBundlesManager().sync_bundles_to_db()
    parse("recsys_training.py")
    with create_session() as session:  # only an unpaused DAG's Assets are watched
        session.get(DagModel, "recsys_training").is_paused = False
    try:
        parse("recsys_training.py")
        assert watched() == [str(landed_flag())]
        for name in ("recsys_ingest_events.py", "recsys_monitoring.py", "recsys_training.py", "recsys_ingest_events.py"):
            parse(name)
            assert watched() == [str(landed_flag())], f"parsing {name} changed the interactions Asset's watchers"
    finally:
        with create_session() as session:
            session.get(DagModel, "recsys_training").is_paused = True


def test_the_schedule_override_keeps_working():
    code = ("import importlib.util, json; s = importlib.util.spec_from_file_location('d', 'dags/recsys_training.py'); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); t = m._schedule(); "
            "print(json.dumps([type(t).__name__, getattr(getattr(t, 'timetable', None), 'expression', None)]))")
    for value, expected in (("none", ["AssetAny", None]), ("@hourly", ["AssetOrTimeSchedule", "0 * * * *"]),
                            ("*/15 * * * *", ["AssetOrTimeSchedule", "*/15 * * * *"])):
        env = {**os.environ, "RECSYS_TRAINING_SCHEDULE": value}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        assert json.loads(out.stdout.strip().splitlines()[-1]) == expected, value


def test_monitoring_and_ingest_dags_emit_their_assets_and_every_dag_alerts_on_failure(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.constants import INTERACTIONS_ASSET_URI, RETRAIN_ASSET_URI
    from pipelines.monitoring.alerts import on_dag_failure
    from pipelines.monitoring.config import param_specs as check_specs

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    monitoring = bag.get_dag("recsys_monitoring")
    assert monitoring.task_dict["monitor"].downstream_task_ids == {"request_retrain"}
    assert [a.uri for a in monitoring.task_dict["request_retrain"].outlets] == [RETRAIN_ASSET_URI]
    assert set(check_specs()) | {"retrain", "retrain_params", "holdout_fraction", "alert_sinks"} == set(monitoring.params)
    ingest = bag.get_dag("recsys_ingest_events")
    assert [a.uri for a in ingest.task_dict["ingest_events"].outlets] == [INTERACTIONS_ASSET_URI]
    for dag_id in bag.dag_ids:
        callbacks = bag.get_dag(dag_id).on_failure_callback
        assert on_dag_failure in (callbacks if isinstance(callbacks, list) else [callbacks]), dag_id
    for dag in (monitoring, ingest, bag.get_dag("recsys_training")):  # the form opens with Trigger enabled
        for name, param in dag.params.items():
            kinds = param.schema.get("type")
            nullable = "null" in kinds if isinstance(kinds, list) else kinds == "null"
            assert nullable or param.value not in (None, ""), (dag.dag_id, name)
