"""Promotion moves the serving alias only to a better model and records why, on the version."""

from __future__ import annotations

import mlflow
import pytest

from pipelines.errors import PromotionError
from pipelines.tracking.promotion import PromotionConfig, promote_if_better, register_version
from pipelines.tracking.setup import configure_mlflow


def _logged_version(config: PromotionConfig, run_key: str) -> str:
    _, experiment_id = configure_mlflow()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=_Echo(), pip_requirements=["mlflow"])
    return register_version(info.model_uri, run.info.run_id, config, run_key, {"recsys.model": "als"})


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def _alias(name: str, alias: str):
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def test_first_version_must_beat_popularity(mlflow_home):
    config = PromotionConfig(registered_model="m1", margin=0.01)
    v1 = _logged_version(config, "r1")
    decision = promote_if_better(config, v1, candidate_value=0.20, popularity_value=0.195, champion_value_fn=None)
    assert not decision.promoted and decision.status == "kept_as_challenger"
    assert _alias("m1", "champion") is None and _alias("m1", "challenger") == v1
    tags = mlflow.MlflowClient().get_model_version("m1", v1).tags
    assert tags["promotion.baseline"] == "popularity"
    assert "0.2000 <= popularity 0.1950 + margin 0.01" in tags["promotion.reason"]

    decision = promote_if_better(config, v1, candidate_value=0.30, popularity_value=0.20, champion_value_fn=None)
    assert decision.promoted and _alias("m1", "champion") == v1
    assert "Promoted" in mlflow.MlflowClient().get_model_version("m1", v1).description


def test_champion_is_compared_on_the_same_data_and_kept_when_better(mlflow_home):
    config = PromotionConfig(registered_model="m2")
    v1 = _logged_version(config, "r1")
    promote_if_better(config, v1, 0.30, 0.20, champion_value_fn=None)
    v2 = _logged_version(config, "r2")
    asked = []
    decision = promote_if_better(config, v2, 0.28, 0.20, champion_value_fn=lambda v: asked.append(v) or 0.31)
    assert asked == [v1]
    assert not decision.promoted and decision.baseline == f"champion v{v1}"
    assert _alias("m2", "champion") == v1 and _alias("m2", "challenger") == v2

    v3 = _logged_version(config, "r3")
    decision = promote_if_better(config, v3, 0.40, 0.20, champion_value_fn=lambda v: 0.31)
    assert decision.promoted and decision.previous_champion == v1
    assert _alias("m2", "champion") == v3
    assert mlflow.MlflowClient().get_model_version("m2", v1).tags["promotion.superseded_by"] == v3


def test_failed_champion_evaluation_leaves_champion_serving(mlflow_home):
    config = PromotionConfig(registered_model="m3")
    v1 = _logged_version(config, "r1")
    promote_if_better(config, v1, 0.30, 0.20, champion_value_fn=None)
    v2 = _logged_version(config, "r2")

    def broken(version):
        raise OSError("artifact store unreachable")

    with pytest.raises(PromotionError, match="stays on v1"):
        promote_if_better(config, v2, 0.90, 0.20, champion_value_fn=broken)
    assert _alias("m3", "champion") == v1


def test_register_is_idempotent_per_run(mlflow_home):
    config = PromotionConfig(registered_model="m4")
    _, experiment_id = configure_mlflow()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=_Echo(), pip_requirements=["mlflow"])
    first = register_version(info.model_uri, run.info.run_id, config, "r1", {})
    again = register_version(info.model_uri, run.info.run_id, config, "r1", {})
    assert first == again


@pytest.mark.parametrize("metric", ["ndcg", "ndcg@0", "auc@10", "ndcg@x"])
def test_metric_must_be_name_at_k(metric):
    with pytest.raises(ValueError, match="metric"):
        PromotionConfig(metric=metric)
