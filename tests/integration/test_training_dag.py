"""The whole training DAG under ``dag.test()`` on a temporary Airflow and MLflow (SQLite)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"source": "synthetic", "synthetic_users": 400, "synthetic_items": 200, "interactions_per_user": 30,
         "models": ["als"], "model_params": {"als": {"factors": 16, "iterations": 8}}}


def _run_dag(conf: dict, when: datetime):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("recsys_training")
    return dag.test(run_conf=conf, logical_date=when, run_after=when)


def test_dag_trains_registers_promotes_and_keeps_champion_on_a_worse_run(airflow_db, mlflow_home):
    client = mlflow.MlflowClient()
    first = _run_dag(SMALL, datetime(2026, 3, 1, tzinfo=timezone.utc))
    assert first.state == "success", first.state

    champion = client.get_model_version_by_alias("recsys", "champion")
    assert champion.tags["recsys.model"] == "als"
    assert champion.tags["promotion.baseline"] == "popularity"
    for tag in ("lineage.snapshot_sha256", "lineage.rows_ingested", "lineage.rows_quarantined", "lineage.rows_clean"):
        assert champion.tags.get(tag), tag

    run = client.get_run(champion.run_id)
    parent_id = run.data.tags["mlflow.parentRunId"]
    siblings = client.search_runs([run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    ndcg = {r.data.tags["recsys.model"]: r.data.metrics["ndcg_at_10"] for r in siblings}
    assert ndcg["als"] > ndcg["popularity"], ndcg
    assert float(champion.tags["promotion.candidate_value"]) == pytest.approx(ndcg["als"], abs=1e-6)

    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "plots")}
    assert {"plots/loss_curve.png", "plots/metrics_at_k.png"} <= artifacts
    assert len(client.get_metric_history(champion.run_id, "training_loss")) == SMALL["model_params"]["als"]["iterations"]
    assert {a.path for a in client.list_artifacts(parent_id, "leaderboard")} >= {"leaderboard/leaderboard.csv", "leaderboard/leaderboard.png"}
    assert run.data.params["model.factors"] == "16"

    # Recommendations through the registered pyfunc exclude each user's training items.
    model = mlflow.pyfunc.load_model("models:/recsys@champion")
    recs = model.predict(__import__("pandas").DataFrame({"user_id": ["0", "1"]}), params={"k": 5})
    assert len(recs) == 10 and list(recs.columns) == ["user_id", "rank", "item_id", "score", "source"]

    # A worse configuration registers a version but leaves the champion where it was.
    worse = {**SMALL, "model_params": {"als": {"factors": 1, "iterations": 1, "regularization": 500.0}}}
    second = _run_dag(worse, datetime(2026, 3, 2, tzinfo=timezone.utc))
    assert second.state == "success"
    assert client.get_model_version_by_alias("recsys", "champion").version == champion.version
    challenger = client.get_model_version_by_alias("recsys", "challenger")
    assert challenger.version != champion.version
    assert challenger.tags["promotion.status"] == "kept_as_challenger"
    assert challenger.tags["promotion.baseline"] == f"champion v{champion.version}"
