"""Rollback walks @champion back through the champion history, recording who, when and why."""

from __future__ import annotations

import mlflow
import pytest

from pipelines.cli import main
from pipelines.errors import PromotionError
from pipelines.tracking.promotion import PromotionConfig, champion_history, promote_if_better
from pipelines.tracking.rollback import rollback_champion


def _champions(client, name: str, qualities: list[float]) -> list[str]:
    """Register one version per quality and promote each in turn (each beats the last)."""
    client.create_registered_model(name)
    config = PromotionConfig(registered_model=name)
    versions, best = [], None
    for quality in qualities:
        version = str(client.create_model_version(name, source="file:///nowhere").version)
        promote_if_better(config, version, quality, 0.01, champion_value_fn=lambda v, b=best: b, client=client)
        versions.append(version)
        best = quality
    return versions


def _champion(client, name: str) -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def test_repeated_rollbacks_walk_back_and_record_who_when_why(mlflow_home, capsys):
    client = mlflow.MlflowClient(mlflow_home)
    v1, v2, v3 = _champions(client, "rb", [0.2, 0.3, 0.4])
    assert champion_history(client, "rb") == [v1, v2, v3]

    done = rollback_champion("rb", by="ops", reason="v3 recommends stale items", client=client)
    assert (done.from_version, done.to_version, done.history) == (v3, v2, [v1, v2])
    assert _champion(client, "rb") == v2
    gone, back = client.get_model_version("rb", v3), client.get_model_version("rb", v2)
    assert gone.tags["rollback.status"] == "rolled_back" and gone.tags["rollback.replaced_by"] == v2
    assert (gone.tags["rollback.by"], gone.tags["rollback.reason"]) == ("ops", "v3 recommends stale items")
    assert back.tags["rollback.status"] == "restored" and back.tags["rollback.at"] == done.at
    assert back.description.startswith(f"**Restored to @champion** (rollback from v{v3}) by ops")

    # The command line, against the same registry: one step further back.
    code = main(["rollback", "--reason", "still bad", "--by", "oncall", "--registered-model", "rb",
                 "--tracking-uri", mlflow_home])
    assert code == 0 and f"v{v2} -> v{v1}" in capsys.readouterr().out
    assert _champion(client, "rb") == v1 and champion_history(client, "rb") == [v1]

    code = main(["rollback", "--reason", "again", "--registered-model", "rb", "--tracking-uri", mlflow_home])
    assert code == 1 and "no earlier champion" in capsys.readouterr().err  # a refused move, not bad input
    assert _champion(client, "rb") == v1


def test_a_new_promotion_after_a_rollback_extends_the_history(mlflow_home):
    client = mlflow.MlflowClient(mlflow_home)
    v1, v2 = _champions(client, "again", [0.2, 0.3])
    rollback_champion("again", by="ops", reason="bad", client=client)
    v3 = str(client.create_model_version("again", source="file:///nowhere").version)
    promote_if_better(PromotionConfig(registered_model="again"), v3, 0.5, 0.01, lambda v: 0.2, client=client)
    assert champion_history(client, "again") == [v1, v3]
    assert rollback_champion("again", by="ops", reason="bad too", client=client).to_version == v1


def test_deleted_versions_are_passed_over(mlflow_home):
    client = mlflow.MlflowClient(mlflow_home)
    v1, v2, v3 = _champions(client, "del", [0.2, 0.3, 0.4])
    client.delete_model_version("del", v2)
    assert rollback_champion("del", by="ops", reason="x", client=client).to_version == v1


class _MovesAliasOnSecondRead:
    """The real client; another writer moves @champion just before the rollback's second read."""

    def __init__(self, client, name: str, version: str):
        self._client, self._name, self._version, self._reads = client, name, version, 0

    def __getattr__(self, attr):
        target = getattr(self._client, attr)
        if attr != "get_registered_model":
            return target

        def read(*args, **kwargs):
            self._reads += 1
            if self._reads == 3:  # 1: current champion, 2: history, 3: the compare-and-set re-read
                self._client.set_registered_model_alias(self._name, "champion", self._version)
            return target(*args, **kwargs)

        return read


def test_rollback_refuses_when_the_champion_moved_meanwhile(mlflow_home):
    client = mlflow.MlflowClient(mlflow_home)
    v1, v2, v3 = _champions(client, "race", [0.2, 0.3, 0.4])
    with pytest.raises(PromotionError, match="moved while rolling back"):
        rollback_champion("race", by="ops", reason="x", client=_MovesAliasOnSecondRead(client, "race", v1))
    assert _champion(client, "race") == v1  # the other writer's move stands
    assert "rollback.status" not in client.get_model_version("race", v3).tags


def test_nothing_to_roll_back(mlflow_home):
    client = mlflow.MlflowClient(mlflow_home)
    client.create_registered_model("empty")
    with pytest.raises(PromotionError, match="no @champion"):
        rollback_champion("empty", by="ops", reason="x", client=client)
