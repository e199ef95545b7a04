"""Registration and promotion: the serving alias moves only to a model that beats it.

Promotion is two steps, so a person can stand between them. :func:`compare` evaluates a
candidate version against the current champion on the *same* held-out data (popularity when
there is no champion) and returns a :class:`Proposal`. :func:`apply_proposal` then moves
``champion`` to the candidate only if the proposal says it is better by ``margin``, a human
approved it when approval is required, and the alias still points where it pointed when the
comparison started (compare-and-set). Otherwise the candidate is kept as ``challenger``.

Trust in the registry: only "not found" means no champion; any other registry error
propagates (the task fails and Airflow retries it), because treating a transient error as
"no champion" lets a worse model take the alias. The decision (tags, description, the
champion history used by rollback) is written *after* the alias moves, so a version never
claims a promotion that did not happen; a retry after a partial write finds the alias on the
version and completes the record.

MLflow has no atomic compare-and-set on aliases: the re-read happens immediately before the
write, which closes the window of a long evaluation or a human review, not a race of
microseconds between two writers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.constants import CHALLENGER_ALIAS, DEFAULT_REGISTERED_MODEL, SERVING_ALIAS
from pipelines.errors import PromotionError

log = logging.getLogger(__name__)

METRIC_NAMES = ("ndcg", "map", "precision", "recall", "hit_rate")
TAG_RUN_KEY = "recsys.run_key"
#: registered-model tag: comma-separated versions that held the serving alias, oldest first.
TAG_CHAMPION_HISTORY = "champion.history"
HISTORY_LIMIT = 100  # versions kept in the history tag (a tag value holds at most 5000 characters)
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"

Status = Literal[
    "promoted", "kept_as_challenger", "already_champion", "awaiting_approval", "rejected", "refused_champion_moved"
]


class PromotionConfig(BaseModel):
    """How a candidate is compared with the serving model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registered_model: str = Field(DEFAULT_REGISTERED_MODEL, min_length=1, description="MLflow registered model name")
    metric: str = Field("ndcg@10", description="metric@K compared, e.g. ndcg@10, map@10, recall@20")
    margin: float = Field(0.0, ge=0.0, le=1.0, description="absolute improvement required over the baseline")
    alias: str = Field(SERVING_ALIAS, description="the serving alias")
    require_approval: bool = Field(
        False, description="a better candidate waits for a person's approval before it takes the serving alias"
    )

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


class Proposal(BaseModel):
    """The comparison of a candidate with the champion, before anything moves (JSON for XCom)."""

    registered_model: str
    version: str
    alias: str
    metric: str
    margin: float
    candidate_value: float
    baseline: str
    baseline_value: float
    champion_at_comparison: str | None
    better: bool
    requires_approval: bool
    reason: str
    compared_at: str


class Approval(BaseModel):
    """A person's answer to a promotion request: who, when and why."""

    approved: bool
    by: str
    at: str
    reason: str = ""


class Decision(BaseModel):
    """What promotion decided and why (returned by the DAG task, written on the version)."""

    registered_model: str
    version: str
    promoted: bool
    alias_moved: bool
    alias: str
    metric: str
    candidate_value: float
    baseline: str
    baseline_value: float
    margin: float
    previous_champion: str | None
    reason: str
    status: Status
    approval: Approval | None = None


def registry_client(tracking_uri: str | None = None) -> Any:
    """An MlflowClient for ``tracking_uri`` (else the platform default, never MLflow's own)."""
    import mlflow

    from pipelines.tracking.setup import default_tracking_uri

    return mlflow.MlflowClient(tracking_uri or default_tracking_uri())


def is_not_found(exc: BaseException) -> bool:
    """Whether an MLflow error says the resource does not exist (and nothing else)."""
    return getattr(exc, "error_code", None) == NOT_FOUND


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version holding ``alias``; None when the model or the alias does not exist.

    Any other registry error (a locked database, a timeout, a 5xx) is raised: it says nothing
    about whether a champion exists.
    """
    import mlflow

    try:
        model = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if is_not_found(exc):
            return None
        raise
    version = (model.aliases or {}).get(alias)
    return None if version is None else str(version)


def register_version(
    model_uri: str,
    run_id: str,
    config: PromotionConfig,
    run_key: str,
    tags: Mapping[str, str],
    tracking_uri: str | None = None,
    client: Any = None,
) -> str:
    """Register ``model_uri`` (logged by run ``run_id``) once: a retried task reuses its version."""
    import mlflow

    client = client or registry_client(tracking_uri)
    try:
        client.get_registered_model(config.registered_model)
    except mlflow.exceptions.MlflowException as exc:
        if not is_not_found(exc):
            raise
        client.create_registered_model(
            config.registered_model,
            description="Recommenders trained by the recsys_training DAG; the serving alias follows the best.",
        )
    for found in client.search_model_versions(f"name = '{config.registered_model}' and run_id = '{run_id}'"):
        return str(found.version)
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") and model_uri.count("/") == 1 else None
    created = client.create_model_version(
        config.registered_model, source=model_uri, run_id=run_id, tags={TAG_RUN_KEY: run_key, **tags}, model_id=model_id
    )
    return str(created.version)


def compare(
    config: PromotionConfig,
    version: str,
    candidate_value: float,
    popularity_value: float,
    champion_value_fn: Callable[[str], float] | None,
    client: Any = None,
    tracking_uri: str | None = None,
) -> Proposal:
    """Compare candidate ``version`` with the current champion; moves nothing.

    ``champion_value_fn(champion_version)`` returns the champion's metric on the candidate's
    held-out data; it is called only when another version holds the alias. Raises
    PromotionError when that evaluation fails, and the registry's error when reading the
    alias fails for any reason but "not found".
    """
    client = client or registry_client(tracking_uri)
    name, version = config.registered_model, str(version)
    champion = alias_version(client, name, config.alias)
    if champion == version:
        baseline, baseline_value = "itself", candidate_value
        better, reason = True, f"version {version} already holds @{config.alias}"
    else:
        if champion is None:
            baseline, baseline_value = "popularity", popularity_value
        else:
            if champion_value_fn is None:
                raise PromotionError(f"{name} v{champion} holds @{config.alias} but no way to evaluate it was given")
            try:
                baseline_value = float(champion_value_fn(champion))
            except Exception as exc:  # any failure of the evaluation leaves the champion serving
                raise PromotionError(
                    f"could not evaluate the current champion {name} v{champion} on this run's held-out data: {exc}; "
                    f"@{config.alias} stays on v{champion}"
                ) from exc
            baseline = f"champion v{champion}"
        better = candidate_value > baseline_value + config.margin
        relation = ">" if better else "<="
        reason = (
            f"{config.metric} {candidate_value:.4f} {relation} {baseline} {baseline_value:.4f} + margin {config.margin:g}"
        )
    return Proposal(
        registered_model=name, version=version, alias=config.alias, metric=config.metric, margin=config.margin,
        candidate_value=candidate_value, baseline=baseline, baseline_value=baseline_value,
        champion_at_comparison=champion, better=better,
        requires_approval=config.require_approval and better and champion != version,
        reason=reason, compared_at=_now(),
    )


def apply_proposal(
    proposal: Proposal | Mapping[str, Any],
    approval: Approval | Mapping[str, Any] | None = None,
    client: Any = None,
    tracking_uri: str | None = None,
    description: str | None = None,
) -> Decision:
    """Act on a proposal: move the serving alias (compare-and-set) or keep the candidate as challenger.

    Without ``approval`` a proposal that requires one is parked (``awaiting_approval``, held as
    challenger). ``description`` (a model card) is written on the version with the decision on
    top. Idempotent: re-applying after the alias moved completes the record.
    """
    proposal = Proposal.model_validate(proposal)
    approval = None if approval is None else Approval.model_validate(approval)
    client = client or registry_client(tracking_uri)
    name, version, alias = proposal.registered_model, proposal.version, proposal.alias

    status: Status
    reason = proposal.reason
    if not proposal.better:
        status = "kept_as_challenger"
    elif proposal.requires_approval and approval is None:
        status, reason = "awaiting_approval", f"{reason}; waiting for a person to approve"
    elif approval is not None and not approval.approved:
        status = "rejected"
        reason = f"{reason}; rejected by {approval.by} at {approval.at}" + (f": {approval.reason}" if approval.reason else "")
    else:
        status, reason = _move_alias(client, proposal)
        if approval is not None:
            reason = f"{reason}; approved by {approval.by} at {approval.at}" + (f": {approval.reason}" if approval.reason else "")

    moved = status == "promoted"
    if status in ("kept_as_challenger", "awaiting_approval", "rejected", "refused_champion_moved"):
        client.set_registered_model_alias(name, CHALLENGER_ALIAS, version)
    decision = Decision(
        registered_model=name, version=version, promoted=status in ("promoted", "already_champion"), alias_moved=moved,
        alias=alias, metric=proposal.metric, candidate_value=proposal.candidate_value, baseline=proposal.baseline,
        baseline_value=proposal.baseline_value, margin=proposal.margin,
        previous_champion=proposal.champion_at_comparison, reason=reason, status=status, approval=approval,
    )
    _write_decision(client, decision, description)  # after the move: never claims what did not happen
    log.info("promotion of %s v%s: %s (%s)", name, version, status, reason)
    return decision


def _move_alias(client: Any, proposal: Proposal) -> tuple[Status, str]:
    """Compare-and-set: move the alias only if it still points where the comparison found it."""
    name, version, alias = proposal.registered_model, proposal.version, proposal.alias
    current = alias_version(client, name, alias)
    if current == version:
        # Already moved: by an earlier attempt of this task (retry after a partial record) or
        # because the comparison found it there.
        if proposal.champion_at_comparison == version:
            return "already_champion", proposal.reason
        _append_history(client, name, version)  # idempotent: an earlier attempt may have failed before it
        return "promoted", proposal.reason
    if current != proposal.champion_at_comparison:
        expected = _describe(proposal.champion_at_comparison)
        return "refused_champion_moved", (
            f"{proposal.reason}, but @{alias} moved from {expected} to {_describe(current)} since the comparison "
            f"started at {proposal.compared_at}; not moved (compare-and-set), retrain to compare again"
        )
    client.set_registered_model_alias(name, alias, version)
    _append_history(client, name, version)
    if alias_version(client, name, CHALLENGER_ALIAS) == version:  # it was parked for review
        client.delete_registered_model_alias(name, CHALLENGER_ALIAS)
    if current is not None:
        client.set_model_version_tag(name, current, "promotion.superseded_by", version)
    return "promoted", proposal.reason


def _describe(version: str | None) -> str:
    return "no champion" if version is None else f"v{version}"


def champion_history(client: Any, name: str) -> list[str]:
    """Versions that held the serving alias, oldest first (the registered model's history tag)."""
    tags = client.get_registered_model(name).tags or {}
    return [v for v in tags.get(TAG_CHAMPION_HISTORY, "").split(",") if v]


def set_champion_history(client: Any, name: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, TAG_CHAMPION_HISTORY, ",".join(history[-HISTORY_LIMIT:]))


def _append_history(client: Any, name: str, version: str) -> None:
    history = champion_history(client, name)
    if not history or history[-1] != version:
        set_champion_history(client, name, [*history, version])


def _write_decision(client: Any, decision: Decision, description: str | None) -> None:
    tags = {
        "promotion.status": decision.status,
        "promotion.promoted": str(decision.promoted).lower(),
        "promotion.metric": decision.metric,
        "promotion.candidate_value": f"{decision.candidate_value:.6f}",
        "promotion.baseline": decision.baseline,
        "promotion.baseline_value": f"{decision.baseline_value:.6f}",
        "promotion.margin": str(decision.margin),
        "promotion.reason": decision.reason[:4900],
        "promotion.decided_at": _now(),
    }
    if decision.previous_champion is not None:
        tags["promotion.previous_champion"] = decision.previous_champion
    if decision.approval is not None:
        tags.update({
            "approval.decision": "approved" if decision.approval.approved else "rejected",
            "approval.by": decision.approval.by,
            "approval.at": decision.approval.at,
            "approval.reason": decision.approval.reason[:4900],
        })
    for key, value in tags.items():
        client.set_model_version_tag(decision.registered_model, decision.version, key, value)
    client.update_model_version(
        decision.registered_model, decision.version, description=decision_markdown(decision, description)
    )


VERDICTS = {
    "promoted": "Promoted to @{alias}",
    "already_champion": "Holds @{alias}",
    "kept_as_challenger": "Kept as @challenger",
    "awaiting_approval": "Awaiting approval (held as @challenger)",
    "rejected": "Rejected by a reviewer (kept as @challenger)",
    "refused_champion_moved": "Not promoted: @{alias} moved during the comparison (kept as @challenger)",
}


def decision_markdown(decision: Decision, card: str | None) -> str:
    """The version's description: the decision on top, then the model card."""
    verdict = VERDICTS[decision.status].format(alias=decision.alias)
    head = f"**{verdict}**: {decision.reason}."
    return head if not card else f"{head}\n\n{card}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- compatibility: compare and apply in one call (the CLI's path, no person in between) --------


def promote_if_better(
    config: PromotionConfig,
    version: str,
    candidate_value: float,
    popularity_value: float,
    champion_value_fn: Callable[[str], float] | None,
    client: Any = None,
    tracking_uri: str | None = None,
    description: str | None = None,
) -> Decision:
    """:func:`compare` then :func:`apply_proposal` (awaits approval when the config requires it)."""
    client = client or registry_client(tracking_uri)
    proposal = compare(config, version, candidate_value, popularity_value, champion_value_fn, client=client)
    return apply_proposal(proposal, client=client, description=description)
