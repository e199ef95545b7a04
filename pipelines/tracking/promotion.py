"""Registration and promotion: the serving alias moves only to a model that beats it.

A candidate version gets ``champion`` when it beats the current champion, evaluated on the
*same* held-out data, by at least ``margin`` on ``metric``. With no champion yet it must beat
popularity. Otherwise it is kept as ``challenger``. The decision and its reason are written
on the model version (tags and description). Anything that fails before the alias is set
leaves the current champion serving.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.constants import CHALLENGER_ALIAS, DEFAULT_REGISTERED_MODEL, SERVING_ALIAS
from pipelines.errors import PromotionError

log = logging.getLogger(__name__)

METRIC_NAMES = ("ndcg", "map", "precision", "recall", "hit_rate")
TAG_RUN_KEY = "recsys.run_key"


class PromotionConfig(BaseModel):
    """How a candidate is compared with the serving model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registered_model: str = Field(DEFAULT_REGISTERED_MODEL, min_length=1, description="MLflow registered model name")
    metric: str = Field("ndcg@10", description="metric@K compared, e.g. ndcg@10, map@10, recall@20")
    margin: float = Field(0.0, ge=0.0, le=1.0, description="absolute improvement required over the baseline")
    alias: str = Field(SERVING_ALIAS, description="the serving alias")

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, value: str) -> str:
        name, _, k = value.partition("@")
        if name not in METRIC_NAMES or not k.isdigit() or int(k) < 1:
            raise ValueError(f"metric must look like NAME@K with NAME in {METRIC_NAMES}, got {value!r}")
        return value

    @property
    def k(self) -> int:
        return int(self.metric.partition("@")[2])


class Decision(BaseModel):
    """What promotion decided and why (returned by the DAG task, written on the version)."""

    registered_model: str
    version: str
    promoted: bool
    alias: str
    metric: str
    candidate_value: float
    baseline: str
    baseline_value: float
    margin: float
    previous_champion: str | None
    reason: str
    status: Literal["promoted", "kept_as_challenger", "already_champion"]


def register_version(
    model_uri: str, run_id: str, config: PromotionConfig, run_key: str, tags: dict[str, str],
    tracking_uri: str | None = None,
) -> str:
    """Register ``model_uri`` (logged by run ``run_id``) once: a retried task reuses its version.

    ``tracking_uri``: the run's MLflow store (None: the process's current one)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    try:
        client.get_registered_model(config.registered_model)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(
            config.registered_model,
            description="Recommenders trained by the recsys_training DAG; the serving alias follows the best.",
        )
    for found in client.search_model_versions(f"name = '{config.registered_model}' and run_id = '{run_id}'"):
        return str(found.version)
    version = mlflow.register_model(model_uri, config.registered_model, tags={TAG_RUN_KEY: run_key, **tags})
    return str(version.version)


def promote_if_better(
    config: PromotionConfig,
    version: str,
    candidate_value: float,
    popularity_value: float,
    champion_value_fn: Any,
    tracking_uri: str | None = None,
) -> Decision:
    """Decide and apply: move the alias to ``version`` or mark it ``challenger``.

    ``champion_value_fn(champion_version)`` returns the current champion's metric on the same
    held-out data (it is only called when there is a champion other than ``version``).
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    name = config.registered_model
    version = str(version)
    champion = _alias_version(client, name, config.alias)

    if champion == version:
        decision = Decision(
            registered_model=name, version=version, promoted=True, alias=config.alias, metric=config.metric,
            candidate_value=candidate_value, baseline="itself", baseline_value=candidate_value, margin=config.margin,
            previous_champion=champion, status="already_champion",
            reason=f"version {version} already holds @{config.alias}",
        )
        _write_decision(client, decision)
        return decision

    if champion is None:
        baseline, baseline_value = "popularity", popularity_value
    else:
        try:
            baseline_value = float(champion_value_fn(champion))
        except Exception as exc:
            raise PromotionError(
                f"could not evaluate the current champion {name} v{champion} on this run's held-out data: {exc}; "
                f"@{config.alias} stays on v{champion}"
            ) from exc
        baseline = f"champion v{champion}"

    promoted = candidate_value > baseline_value + config.margin
    relation = ">" if promoted else "<="
    reason = (
        f"{config.metric} {candidate_value:.4f} {relation} {baseline} {baseline_value:.4f} + margin {config.margin:g}"
    )
    decision = Decision(
        registered_model=name, version=version, promoted=promoted, alias=config.alias, metric=config.metric,
        candidate_value=candidate_value, baseline=baseline, baseline_value=baseline_value, margin=config.margin,
        previous_champion=champion, reason=reason,
        status="promoted" if promoted else "kept_as_challenger",
    )
    _write_decision(client, decision)  # the record first: if the alias move fails, the reason is still there
    if promoted:
        client.set_registered_model_alias(name, config.alias, version)
        if champion is not None:
            client.set_model_version_tag(name, champion, "promotion.superseded_by", version)
    else:
        client.set_registered_model_alias(name, CHALLENGER_ALIAS, version)
    log.info("promotion of %s v%s: %s", name, version, reason)
    return decision


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    import mlflow

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def _write_decision(client: Any, decision: Decision) -> None:
    tags = {
        "promotion.status": decision.status,
        "promotion.promoted": str(decision.promoted).lower(),
        "promotion.metric": decision.metric,
        "promotion.candidate_value": f"{decision.candidate_value:.6f}",
        "promotion.baseline": decision.baseline,
        "promotion.baseline_value": f"{decision.baseline_value:.6f}",
        "promotion.margin": str(decision.margin),
        "promotion.reason": decision.reason,
    }
    for key, value in tags.items():
        client.set_model_version_tag(decision.registered_model, decision.version, key, value)
    verdict = "Promoted to @" + decision.alias if decision.promoted else "Kept as @" + CHALLENGER_ALIAS
    client.update_model_version(
        decision.registered_model, decision.version, description=f"{verdict}: {decision.reason}."
    )
