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


# -- trust in the registry, compare-and-set, approval ------------------------------------------

from pipelines.tracking.promotion import Approval, apply_proposal, champion_history, compare  # noqa: E402
from pipelines.training.promote import approval_from_review  # noqa: E402
from tests.tracking.registry_faults import FailingCalls  # noqa: E402


def _bare_version(client, name: str) -> str:
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass
    return str(client.create_model_version(name, source="file:///nowhere").version)


def test_a_registry_error_reading_the_champion_fails_instead_of_promoting(mlflow_home):
    """The reported bug: one 'database is locked' let a 0.20 candidate replace a 0.90 champion."""
    client = mlflow.MlflowClient(mlflow_home)
    config = PromotionConfig(registered_model="locked")
    v1 = _bare_version(client, "locked")
    promote_if_better(config, v1, 0.90, 0.10, champion_value_fn=None, client=client)
    v2 = _bare_version(client, "locked")

    flaky = FailingCalls(client, {"get_registered_model": {1}})
    with pytest.raises(mlflow.exceptions.MlflowException, match="database is locked"):
        compare(config, v2, 0.20, 0.10, champion_value_fn=lambda v: 0.90, client=flaky)
    assert _alias("locked", "champion") == v1
    # Retried (as Airflow retries the task), it compares with the real champion and keeps it.
    proposal = compare(config, v2, 0.20, 0.10, champion_value_fn=lambda v: 0.90, client=flaky)
    assert proposal.champion_at_comparison == v1 and not proposal.better
    assert apply_proposal(proposal, client=flaky).status == "kept_as_challenger"
    assert _alias("locked", "champion") == v1


def test_the_alias_is_not_moved_if_it_changed_since_the_comparison(mlflow_home):
    client = mlflow.MlflowClient(mlflow_home)
    config = PromotionConfig(registered_model="cas")
    v1, v2, v3 = (_bare_version(client, "cas") for _ in range(3))
    promote_if_better(config, v1, 0.40, 0.10, None, client=client)
    slow = compare(config, v2, 0.50, 0.10, champion_value_fn=lambda v: 0.40, client=client)  # e.g. under review
    promote_if_better(config, v3, 0.60, 0.10, champion_value_fn=lambda v: 0.40, client=client)

    decision = apply_proposal(slow, client=client)
    assert decision.status == "refused_champion_moved" and not decision.alias_moved
    assert _alias("cas", "champion") == v3 and _alias("cas", "challenger") == v2
    tags = client.get_model_version("cas", v2).tags
    assert "moved from v1 to v3" in tags["promotion.reason"]
    assert champion_history(client, "cas") == [v1, v3]


def test_the_decision_is_recorded_after_the_move_and_completed_by_a_retry(mlflow_home):
    client = mlflow.MlflowClient(mlflow_home)
    config = PromotionConfig(registered_model="partial")
    v1, v2 = _bare_version(client, "partial"), _bare_version(client, "partial")
    promote_if_better(config, v1, 0.40, 0.10, None, client=client)
    proposal = compare(config, v2, 0.50, 0.10, champion_value_fn=lambda v: 0.40, client=client)

    failing_move = FailingCalls(client, {"set_registered_model_alias": {1}})
    with pytest.raises(mlflow.exceptions.MlflowException):
        apply_proposal(proposal, client=failing_move)
    assert _alias("partial", "champion") == v1
    assert "promotion.status" not in client.get_model_version("partial", v2).tags  # claims nothing

    failing_record = FailingCalls(client, {"set_model_version_tag": {2}})
    with pytest.raises(mlflow.exceptions.MlflowException):
        apply_proposal(proposal, client=failing_record)
    assert _alias("partial", "champion") == v2  # moved; its record is incomplete

    decision = apply_proposal(proposal, client=client)  # the task's retry
    assert decision.status == "promoted" and decision.previous_champion == v1
    assert client.get_model_version("partial", v2).tags["promotion.status"] == "promoted"
    assert champion_history(client, "partial") == [v1, v2]


def test_approval_moves_the_champion_and_rejection_keeps_the_challenger(mlflow_home):
    client = mlflow.MlflowClient(mlflow_home)
    config = PromotionConfig(registered_model="review", require_approval=True)
    v1, v2 = _bare_version(client, "review"), _bare_version(client, "review")

    first = compare(config, v1, 0.40, 0.10, None, client=client)
    assert first.requires_approval
    parked = apply_proposal(first, client=client, description="### Model card")
    assert parked.status == "awaiting_approval" and _alias("review", "champion") is None
    assert _alias("review", "challenger") == v1
    assert client.get_model_version("review", v1).description.startswith("**Awaiting approval")

    answer = {"chosen_options": ["Approve"], "params_input": {"reason": "card checked"},
              "responded_by_user": {"id": "7", "name": "ada"}, "responded_at": "2026-12-03T07:00:00+00:00"}
    decision = apply_proposal(first, approval_from_review(answer), client=client, description="### Model card")
    assert decision.status == "promoted" and _alias("review", "champion") == v1
    assert _alias("review", "challenger") is None
    mv = client.get_model_version("review", v1)
    assert (mv.tags["approval.decision"], mv.tags["approval.by"], mv.tags["approval.reason"]) == ("approved", "ada", "card checked")
    assert mv.tags["approval.at"] == "2026-12-03T07:00:00+00:00"
    assert "approved by ada" in mv.description and "### Model card" in mv.description

    second = compare(config, v2, 0.55, 0.10, champion_value_fn=lambda v: 0.40, client=client)
    no = approval_from_review({**answer, "chosen_options": ["Reject"], "params_input": {"reason": "odd genres"}})
    decision = apply_proposal(second, no, client=client)
    assert decision.status == "rejected" and not decision.alias_moved
    assert _alias("review", "champion") == v1 and _alias("review", "challenger") == v2
    assert client.get_model_version("review", v2).tags["approval.reason"] == "odd genres"

    with pytest.raises(PromotionError, match="Approve"):
        approval_from_review({**answer, "chosen_options": ["Maybe"]})
    timed_out = approval_from_review({"chosen_options": ["Reject"], "responded_by_user": None, "responded_at": None})
    assert not timed_out.approved and "timed out" in timed_out.by
    assert Approval.model_validate(timed_out.model_dump()) == timed_out
