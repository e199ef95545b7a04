"""Nested MLflow runs for trials, and the run_tuning step (partition, tuning run, idempotent re-run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.training.config import TrainConfig
from pipelines.tuning.study import tune_model

pytestmark = pytest.mark.slow  # an MLflow SQLite database per test

ALS_SPACE = {
    "factors": {"type": "int", "low": 4, "high": 16},
    "regularization": {"type": "float", "low": 1.0, "high": 50.0},
}
ALS = TrainConfig(model="als", params={"factors": 8, "iterations": 5})


def _parent_run(experiment: str = "tuning-test") -> tuple[str, str]:
    import mlflow

    from pipelines.tracking.runs import open_parent_run
    from pipelines.tracking.setup import configure_mlflow

    _, experiment_id = configure_mlflow(mlflow.get_tracking_uri(), experiment)
    return open_parent_run("tune-key", experiment_id), experiment_id


def _children(experiment_id: str, parent_id: str):
    import mlflow

    return mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def test_each_trial_is_a_nested_mlflow_run(planted, mlflow_home, toy_family):
    import mlflow

    parent_id, experiment_id = _parent_run()
    tuning = {
        "n_trials": 6,
        "search_space": {"noise": {"type": "float", "low": 0.0, "high": 1.0}},
        "pruner_startup_trials": 2,
        "seed": 0,
    }
    config = TrainConfig(model=toy_family, params={"epochs": 4})
    result = tune_model(config, planted, tuning, mlflow_parent_run_id=parent_id)

    runs = _children(experiment_id, parent_id)
    assert len(runs) == 6
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs}
    for row in result.trials.to_dict("records"):
        run = by_number[row["number"]]
        assert run.data.tags["optuna.state"] == row["state"]
        assert run.data.tags["recsys.role"] == "tuning_trial" and "recsys.model" not in run.data.tags
        assert float(run.data.params["noise"]) == pytest.approx(row["params.noise"])
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[row["state"]]
        if row["state"] == "COMPLETE":
            assert run.data.metrics["ndcg_at_10"] == pytest.approx(row["value"])
    history = mlflow.MlflowClient().get_metric_history(by_number[0].info.run_id, "ndcg_at_10_per_epoch")
    assert [m.step for m in history] == [0, 1, 2, 3]

    # A retried task replaces the trial runs instead of adding to them.
    tune_model(config, planted, tuning, mlflow_parent_run_id=parent_id)
    assert len(_children(experiment_id, parent_id)) == 6


def test_run_tuning_writes_its_partition_and_a_tuning_run(planted, mlflow_home, tmp_path):
    from tuning_fixtures import write_feature_set

    from pipelines.tuning.run import run_tuning

    features_uri = write_feature_set(planted, tmp_path / "features")
    parent_id, experiment_id = _parent_run()
    tracking = {"parent_run_id": parent_id, "experiment_id": experiment_id}
    tuning = {"n_trials": 3, "search_space": ALS_SPACE}
    out = run_tuning(ALS, str(features_uri), tuning, str(tmp_path / "lake"), "run-1", tracking=tracking)

    assert out["n_trials"] == 3 and out["model"] == "als"
    assert out["train_config"]["params"] == {**ALS.params, **out["best_params"]}
    TrainConfig.model_validate(out["train_config"])
    assert json.loads(Path(out["result_uri"]).read_text()) == json.loads(json.dumps(out))
    assert Path(out["trials_uri"]).read_text().count("\n") == 4
    tuning_runs = _children(experiment_id, parent_id)
    assert [r.info.run_name for r in tuning_runs] == ["tune-als"]
    assert tuning_runs[0].info.run_id == out["run_id"] and tuning_runs[0].info.status == "FINISHED"
    assert tuning_runs[0].data.metrics["best_ndcg_at_10"] == pytest.approx(out["best_value"])
    assert len(_children(experiment_id, out["run_id"])) == 3

    again = run_tuning(ALS, str(features_uri), tuning, str(tmp_path / "lake"), "run-1", tracking=tracking)
    assert again["best_params"] == out["best_params"], "re-running the same run gives the same result"
    assert len(_children(experiment_id, parent_id)) == 1
