"""Monitoring a real champion on MovieLens slices: drift is caught, the same distribution is not.

ml-latest-small is cut at its median timestamp. The earlier period is split at random into A (80%)
and B (20%); the champion (item-kNN, the real pipeline with registration) learns from A, landed
as a CSV file in a folder. Then:

- A + the later period (new users, new movies, another popularity) must ask for retraining,
  naming the drifted measures;
- A + B (more rows of the very same period and population) must breach nothing: no false alarm.
"""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.data.config import IngestConfig
from pipelines.monitoring.config import MonitoringConfig
from pipelines.monitoring.run import RESULT_KEYS, monitor

pytestmark = pytest.mark.slow

COLUMNS = {"userId": "user_id", "movieId": "item_id", "rating": "rating", "timestamp": "timestamp"}


@pytest.fixture(scope="module")
def landed(tmp_path_factory, movielens_dir, _mlflow_template_db):
    """Slices landed in folders, and a champion trained and registered on slice A."""
    import mlflow.tracking.fluent as fluent

    from pipelines.pipeline import from_params, run_pipeline

    root = tmp_path_factory.mktemp("monitoring")
    shutil.copy(_mlflow_template_db, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv("RECSYS_ARTIFACT_ROOT", str(root / "artifacts"))
    patch.setenv("RECSYS_HOME", str(root / "home"))
    patch.setattr(fluent, "_active_experiment_id", None, raising=False)
    mlflow.set_tracking_uri(uri)

    ratings = pd.read_csv(movielens_dir / "ratings.csv").rename(columns=COLUMNS)
    first = ratings[ratings["timestamp"] <= ratings["timestamp"].median()]
    later = ratings.drop(first.index)
    held = np.random.default_rng(7).random(len(first)) < 0.2
    parts = {"a": first[~held], "b": first[held], "later": later}
    for folder, names in {"train": ["a"], "same": ["a", "b"], "drift": ["a", "later"]}.items():
        (root / folder).mkdir()
        for name in names:
            parts[name].to_csv(root / folder / f"{name}.csv", index=False)

    config = from_params({"source": "csv", "path": str(root / "train"), "models": ["itemknn"], "seed": 0})
    trained = run_pipeline(config, "champion", out_root=str(root / "lake"), register=True, tracking_uri=uri)
    assert trained["promotion"]["status"] == "promoted", trained["promotion"]
    yield {"root": root, "uri": uri, "trained": trained, "parts": parts}
    patch.undo()


def _config(landed, folder: str) -> MonitoringConfig:
    root = landed["root"]
    return MonitoringConfig(data=IngestConfig(source="csv", path=str(root / folder)), tracking_uri=landed["uri"],
                            lake=str(root / "lake"), database_url=f"sqlite:///{root / 'serving.db'}")


def test_new_users_items_and_popularity_ask_for_retraining(landed):
    result = monitor(_config(landed, "drift"), "drift")
    assert tuple(result) == RESULT_KEYS
    json.dumps(result, allow_nan=False)  # JSON as it is, for XCom and the CLI

    trained = landed["trained"]
    champion = result["champion"]
    assert champion["version"] == trained["promotion"]["version"]
    assert champion["snapshot"]["sha256"] == trained["ingest"]["sha256"]
    assert champion["snapshot"]["rows"] == len(landed["parts"]["a"])
    assert result["new_interactions"] == len(landed["parts"]["later"])

    breached = {b["measure"] for b in result["breaches"]}
    assert {"new_user_share", "new_item_share", "popularity_js_excess", "new_interactions_ratio"} <= breached
    assert result["retrain"] is True
    for measure in ("new_user_share", "new_item_share", "popularity_js_excess"):
        assert measure in result["reason"]
    measures = result["measures"]
    assert measures["live_users"] > 0 and 0 <= measures["live_ndcg"] <= 1 and measures["recorded_ndcg"] > 0

    client = mlflow.MlflowClient(landed["uri"])
    run = client.get_run(result["mlflow_run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "monitoring"
    assert experiment.artifact_location.startswith((landed["root"] / "artifacts").as_uri())
    logged = {name: value for name, value in measures.items() if value is not None}
    assert {name: run.data.metrics[name] for name in logged} == pytest.approx(logged)
    assert run.data.metrics["retrain"] == 1.0 and run.data.tags["monitoring.champion_version"] == champion["version"]
    assert run.data.params["snapshot.sha256"] == champion["snapshot"]["sha256"]
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert {"report.html", "result.json"} <= files
    assert plots == {f"plots/{name}.png" for name in ("popularity", "distributions", "latency", "history")}
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="report.html",
                                                tracking_uri=landed["uri"])
    page = open(local, encoding="utf-8").read()
    assert "class='breach'><td>new_user_share" in page and "data:image/png;base64," in page


def test_more_of_the_same_period_raises_no_false_alarm(landed, capsys):
    """Through the command line: the same check, JSON on stdout."""
    from pipelines.cli import main

    root = landed["root"]
    code = main(["monitor", "--source", "csv", "--path", str(root / "same"), "--tracking-uri", landed["uri"],
                 "--lake", str(root / "lake"), "--database-url", f"sqlite:///{root / 'serving.db'}",
                 "--run-name", "same"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert result["new_interactions"] == len(landed["parts"]["b"])
    assert result["breaches"] == [] and result["retrain"] is False and result["reason"] == ""
    measures = result["measures"]
    assert measures["new_user_share"] < 0.05 and measures["popularity_js_excess"] < 0.05
    assert measures["live_quality_ratio"] > 0.5  # the champion still ranks as well as on its own test split

    client = mlflow.MlflowClient(landed["uri"])
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.metrics["retrain"] == 0.0 and run.data.tags["recsys.run_key"] == "same"
