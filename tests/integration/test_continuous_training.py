"""Continuous training under a real scheduler: ml-latest-small replayed in time order.

`airflow standalone` (LocalExecutor, as in test_airflow_live). The ratings sorted by timestamp
are cut into three slices; the third is never used (it stands for the future):

1. slice 1 is landed (``recsys land``) and a champion is trained on the landing folder outside
   Airflow (the CLI's path), to keep the test short; ``recsys serve`` serves it and users click;
2. ``recsys_monitoring`` runs: nothing new yet, no retrain asked;
3. slice 2 is landed; ``recsys_ingest_events`` moves the clicks into the lake and records an
   event of the interactions Asset with its rows;
4. ``recsys_monitoring`` runs again: drift and staleness are up (both checks compared in
   MLflow), the check asks for a retrain through the retrain Asset, and ``recsys_training``
   runs on the landed data, with the reason on its MLflow run, holding out the newest
   interactions: the new version's metric and the champion's come from that same held-out data
   (both recomputed here from the run's feature partition);
5. a small file lands with the flag: the Asset watcher (in the triggerer) records an event and
   a training run starts on the landing folder.

Then the MLflow UI's page of the ``monitoring`` experiment is opened in headless chromium and a
screenshot is kept (``$RECSYS_TEST_ARTIFACTS``, default ``<tmp>/recsys-test-artifacts``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipelines.constants import INTERACTIONS_ASSET_URI, RETRAIN_ASSET_URI
from tests.integration.test_airflow_live import (  # noqa: F401  (fixtures)
    _free_port,
    _get,
    _wait_for,
    airflow_live,
    postgres_databases,
)
from tests.integration.test_serving_e2e import _api, _recsys_serve, _run_dag, _wait_until_done

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL_ALS = {"models": ["als"], "model_params": {"als": {"factors": 16, "iterations": 5}}}
SEED_CHAMPION = """
import json, sys
from pipelines.pipeline import from_params, run_pipeline
params = {**json.loads(sys.argv[1]), "source": "parquet", "path": sys.argv[2]}
out = run_pipeline(from_params(params), "seed-champion", register=True)
print(json.dumps(out["promotion"]["status"]))
"""
RECOMPUTE = """
import json, sys
import mlflow
from pipelines.evaluation.bundle_eval import evaluate_bundle
from pipelines.features.store import load_feature_set
from pipelines.serving.registry import load_version
uri, features_uri, versions = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
features = load_feature_set(features_uri)
out = {v: evaluate_bundle(load_version(uri, "recsys", v), features, k=10)["ndcg@10"] for v in versions}
print(json.dumps(out))
"""


@pytest.fixture
def airflow_extra_env() -> dict[str, str]:
    # Only the runs the test starts: no cron run of any DAG when it is unpaused.
    return {"RECSYS_MONITORING_SCHEDULE": "none", "RECSYS_INGEST_EVENTS_SCHEDULE": "none"}


@pytest.fixture
def slices(movielens_dir, tmp_path):
    import pandas as pd

    ratings = pd.read_csv(movielens_dir / "ratings.csv").sort_values(["timestamp", "userId", "movieId"], kind="stable")
    third = len(ratings) // 3
    paths = []
    for index in range(2):
        path = tmp_path / f"slice{index + 1}.csv"
        ratings.iloc[index * third:(index + 1) * third].to_csv(path, index=False)
        paths.append(path)
    return paths, int(ratings.iloc[third - 1]["timestamp"])


def _recsys(env, *args):
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _xcom(base, dag_id, run_id, task_id):
    return _get(base, f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value").json()["value"]


def _asset_events(base, uri, **filters):
    assets = _get(base, "/api/v2/assets", params={"uri_pattern": uri}).json().get("assets", [])
    asset = next((a for a in assets if a["uri"] == uri), None)
    if asset is None:
        return []
    events = _get(base, "/api/v2/assets/events", params={"asset_id": asset["id"], **filters}).json()
    return events.get("asset_events", [])


def test_new_data_drifts_monitoring_retrains_and_compares_on_the_newest_data(airflow_live, slices, tmp_path):
    import mlflow

    started = time.monotonic()
    base, env, _ = airflow_live
    (slice1, slice2), slice1_end = slices
    home = Path(env["RECSYS_HOME"])
    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
    landing = str(home / "lake" / "interactions")

    # 1. Slice 1 in the lake, a champion trained on it (meanwhile Airflow parses the DAGs).
    first = _recsys(env, "land", str(slice1), "--no-signal")
    assert first["path"] == landing and first["rows"] == len(__import__("pandas").read_csv(slice1))
    seeding = subprocess.Popen([sys.executable, "-c", SEED_CHAMPION, json.dumps(SMALL_ALS), landing], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for dag_id in ("recsys_training", "recsys_monitoring", "recsys_ingest_events"):
        _wait_for(lambda d=dag_id: _get(base, f"/api/v2/dags/{d}").status_code == 200, 180, f"{dag_id} parsed")
    for dag_id in ("recsys_monitoring", "recsys_ingest_events"):  # training stays paused until step 4
        _api(base, "PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    out, err = seeding.communicate(timeout=300)
    assert seeding.returncode == 0 and '"promoted"' in out, err[-3000:]
    client = mlflow.MlflowClient(tracking_uri)
    old = str(client.get_model_version_by_alias("recsys", "champion").version)

    # Users of slice 1 are served and click on what they were shown.
    with _recsys_serve(env, tmp_path) as api:
        _impressions_and_clicks(api, users=[str(u) for u in range(1, 21)])
        time.sleep(1.5)  # the recorder writes every 0.5 s

    # 2. A check before new data arrives: nothing to retrain for.
    monitor_conf = {"retrain_params": SMALL_ALS}
    before = _run_dag(base, "recsys_monitoring", monitor_conf, seconds=300)
    quiet = _xcom(base, "recsys_monitoring", before, "monitor")
    assert quiet["retrain"] is False and quiet["new_interactions"] == 0, quiet["reason"]
    assert _task_state(base, "recsys_monitoring", before, "request_retrain") == "skipped"

    # 3. Slice 2 lands (quietly: a landing would start training at once, and this test wants the
    #    check to decide; step 5 shows the watcher). The clicks are moved into the lake.
    second = _recsys(env, "land", str(slice2), "--no-signal")
    ingest = _run_dag(base, "recsys_ingest_events", {})
    moved = _xcom(base, "recsys_ingest_events", ingest, "ingest_events")
    assert moved["rows"] == 20 and moved["path"] == landing  # one click per user
    (event,) = _asset_events(base, INTERACTIONS_ASSET_URI, source_dag_id="recsys_ingest_events")
    assert event["extra"]["rows"] == 20 and event["extra"]["path"] == landing

    # 4. A check after it: drift and staleness are up, a retrain is requested through the Asset.
    _api(base, "PATCH", "/api/v2/dags/recsys_training", json={"is_paused": False})
    after = _run_dag(base, "recsys_monitoring", monitor_conf, seconds=300)
    drifted = _xcom(base, "recsys_monitoring", after, "monitor")
    assert drifted["retrain"] is True and drifted["new_interactions"] >= second["rows"]
    request = _xcom(base, "recsys_monitoring", after, "request_retrain")
    assert request["conf"]["split"] == "temporal_cutoff" and int(request["conf"]["split_cutoff"]) > slice1_end
    metrics = {run: client.get_run(result["mlflow_run_id"]).data.metrics
               for run, result in (("before", quiet), ("after", drifted))}
    assert metrics["after"]["new_interactions_ratio"] > metrics["before"].get("new_interactions_ratio", 0.0)
    assert metrics["after"]["champion_age_days"] > metrics["before"]["champion_age_days"]
    assert metrics["after"]["new_user_share"] > 0.5
    assert client.get_run(drifted["mlflow_run_id"]).data.tags["retrain.requested"] == "true"
    (retrain_event,) = _asset_events(base, RETRAIN_ASSET_URI, source_run_id=after)

    training = _wait_for_asset_run(base, "recsys_training")
    _wait_until_done(base, "recsys_training", training, seconds=400)
    plan = _xcom(base, "recsys_training", training, "plan")
    assert plan["trigger"]["kind"] == "asset_triggered" and plan["trigger"]["reason"] == request["reason"]
    assert plan["config"]["ingest"]["path"] == landing
    assert plan["config"]["features"]["cutoff"] == retrain_event["extra"]["conf"]["split_cutoff"]
    tracking = _xcom(base, "recsys_training", training, "open_tracking_run")
    assert client.get_run(tracking["parent_run_id"]).data.tags["trigger_reason"].startswith("monitoring: retrain")

    # The new version and the old champion were scored on the same held-out newest data.
    compared = _xcom(base, "recsys_training", training, "register_and_compare")
    features = _xcom(base, "recsys_training", training, "build_features")
    new = compared["version"]
    assert compared["champion_at_comparison"] == old and compared["baseline"] == f"champion v{old}"
    recomputed = json.loads(subprocess.run(
        [sys.executable, "-c", RECOMPUTE, tracking_uri, features["features_uri"], f"{new},{old}"], env=env,
        capture_output=True, text=True, check=True, timeout=300).stdout)
    assert recomputed[new] == pytest.approx(compared["candidate_value"], abs=1e-9)
    assert recomputed[old] == pytest.approx(compared["baseline_value"], abs=1e-9)
    test_start = _held_out_start(features["features_uri"])
    assert test_start >= int(request["conf"]["split_cutoff"]) > slice1_end

    # 5. A file landed with the flag: the triggerer's watcher records an event, and training runs
    #    on the landing folder (its plan is enough here).
    newest = tmp_path / "newest.csv"
    __import__("pandas").read_csv(slice2).tail(50).to_csv(newest, index=False)
    _recsys(env, "land", str(newest))
    try:
        _wait_for(lambda: any(e["extra"].get("from_trigger") for e in _asset_events(base, INTERACTIONS_ASSET_URI)),
                  120, "the Asset watcher's event for the landed file")
    except AssertionError as exc:  # say what the triggerer did
        lines = (tmp_path / "standalone.log").read_text(errors="replace").splitlines()
        raise AssertionError(f"{exc}; the triggerer's last lines:\n" + "\n".join(
            [line for line in lines if "triggerer" in line.lower() or "trigger" in line.lower()][-30:])) from None
    landed_run = _wait_for_asset_run(base, "recsys_training", exclude={training})
    _wait_for(lambda: _task_state(base, "recsys_training", landed_run, "plan") == "success", 180, "its plan")
    landed_plan = _xcom(base, "recsys_training", landed_run, "plan")
    assert (landed_plan["config"]["ingest"]["source"], landed_plan["config"]["ingest"]["path"]) == ("parquet", landing)
    assert "file landed" in landed_plan["trigger"]["reason"]
    _api(base, "PATCH", "/api/v2/dags/recsys_training", json={"is_paused": True})
    print(f"\ncontinuous training e2e: {time.monotonic() - started:.0f} s after Airflow was up")

    _screenshot_monitoring_experiment(env, tracking_uri, home, tmp_path)


def _task_state(base, dag_id, run_id, task_id):
    return _get(base, f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json().get("state")


def _wait_for_asset_run(base, dag_id, exclude=frozenset()) -> str:
    def found():
        runs = _get(base, f"/api/v2/dags/{dag_id}/dagRuns").json().get("dag_runs", [])
        return next((r["dag_run_id"] for r in runs if r["run_type"] == "asset_triggered"
                     and r["dag_run_id"] not in exclude), None)

    _wait_for(found, 120, f"an Asset-triggered run of {dag_id}")
    return found()


def _impressions_and_clicks(api: str, users: list[str]) -> None:
    import requests

    events = []
    for user in users:
        answer = requests.get(f"{api}/recommendations/{user}", params={"k": 5}, timeout=30).json()
        for item in answer["items"]:
            events.append({"event_type": "impression", "user_id": user, "item_id": item["item_id"],
                           "request_id": answer["request_id"], "position": item["rank"]})
        top = answer["items"][0]
        events.append({"event_type": "click", "user_id": user, "item_id": top["item_id"],
                       "request_id": answer["request_id"], "position": 1})
    posted = requests.post(f"{api}/events", json={"events": events}, timeout=30)
    assert posted.status_code == 202 and posted.json()["accepted"] == len(events), posted.text


def _held_out_start(features_uri: str) -> int:
    """The earliest timestamp among the run's held-out rows (its feature partition's test.parquet)."""
    import pandas as pd

    return int(pd.read_parquet(Path(features_uri) / "test.parquet", columns=["timestamp"])["timestamp"].min())


def _screenshot_monitoring_experiment(env, tracking_uri, home, tmp_path):
    """The MLflow UI's page of the monitoring experiment in headless chromium; the PNG is kept."""
    from tests.integration.test_trigger_form_browser import _chromium

    executable = _chromium()
    from playwright.sync_api import expect, sync_playwright

    import mlflow

    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name("monitoring")
    folder = Path(os.environ.get("RECSYS_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "recsys-test-artifacts")
    folder = folder / "monitoring"
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = open(tmp_path / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", tracking_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**env, "MLFLOW_TRACKING_URI": tracking_uri}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _get(url, "/health").status_code == 200, 90, "mlflow server")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                # The experiment's runs as metric charts (one per measure, a bar per check).
                page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs?compareRunsMode=CHART",
                          wait_until="domcontentloaded", timeout=90_000)
                body = page.locator("body")
                expect(body).to_contain_text("Model metrics", timeout=120_000)
                page.get_by_placeholder("Search metric charts").fill("new_user_share")
                expect(body).to_contain_text("new_user_share", timeout=30_000)
                page.wait_for_timeout(1500)  # the chart draws after its frame
                shot = folder / "monitoring-experiment.png"
                page.screenshot(path=str(shot), full_page=True)
                text = page.inner_text("body")
                assert "monitoring" in text and "Training runs" in text and "new_user_share" in text
                assert shot.stat().st_size > 10_000
                print(f"screenshot of the monitoring experiment: {shot}")
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
