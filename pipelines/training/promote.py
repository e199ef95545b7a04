"""The register-and-promote step: pick the best candidate, register it with its card, decide promotion.

Two halves, so a person can review between them (the DAG's approval task):
:func:`run_register_and_compare` registers the best candidate, writes its model card and
compares it with the champion on this run's held-out data; :func:`run_promotion` acts on that
comparison (and on the reviewer's answer). :func:`run_register_and_promote` does both at once.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipelines.errors import ConfigError, PromotionError
from pipelines.tracking.promotion import Approval, PromotionConfig

log = logging.getLogger(__name__)

BASELINE_MODEL = "popularity"
APPROVE, REJECT = "Approve", "Reject"  # the options of the approval request


def leaderboard(candidates: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Candidates sorted best first by ``metric``; raises ConfigError if one lacks it."""
    rows = []
    for cand in candidates:
        if metric not in cand["metrics"]:
            raise ConfigError(
                f"promotion metric {metric!r} was not computed for {cand['model']!r}; "
                f"available: {', '.join(sorted(cand['metrics']))} (set the promotion K equal to the training K)"
            )
        rows.append({"model": cand["model"], **{k: float(v) for k, v in cand["metrics"].items()}})
    return sorted(rows, key=lambda row: row[metric], reverse=True)


def run_register_and_compare(
    candidates: Sequence[Mapping[str, Any]],
    config: PromotionConfig | Mapping[str, Any],
    features_uri: str,
    run_key: str,
    tracking: Mapping[str, str],
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register the best candidate, write its model card, compare it with the champion.

    ``candidates`` are results of :func:`pipelines.training.run.run_training` for the same
    feature set. The baseline for a first promotion is popularity on that data (trained here
    if it is not among the candidates). Nothing moves. Returns the proposal (see
    :class:`~pipelines.tracking.promotion.Proposal`) with ``card`` (markdown), the
    leaderboard and the best model's name.
    """
    from pipelines.tracking.cards import collect_facts
    from pipelines.tracking.promotion import compare, registry_client, register_version
    from pipelines.tracking.runs import flatten

    config = PromotionConfig.model_validate(config)
    if not candidates:
        raise ConfigError("no candidate models were trained; nothing to register")
    tracking_uri = tracking.get("tracking_uri")
    client = registry_client(tracking_uri)
    metric = config.metric
    board = leaderboard(candidates, metric)
    by_model = {c["model"]: c for c in candidates}
    best = by_model[board[0]["model"]]
    if not best.get("model_uri"):
        raise PromotionError(f"candidate {best['model']!r} has no logged MLflow model; was it trained with tracking?")

    popularity = _popularity_metrics(by_model, features_uri, config)
    _log_leaderboard(client, tracking["parent_run_id"], board, metric)

    tags = {"recsys.model": best["model"], **{f"lineage.{k}": str(v) for k, v in flatten(lineage or {}).items()}}
    version = register_version(best["model_uri"], best["run_id"], config, run_key, tags, client=client)

    champion_metrics: dict[str, dict[str, float]] = {}

    def champion_value(champion_version: str) -> float:
        champion_metrics[champion_version] = _champion_metrics(client, config, champion_version, features_uri)
        return champion_metrics[champion_version][metric]

    proposal = compare(config, version, float(best["metrics"][metric]), popularity[metric], champion_value, client=client)
    champion = proposal.champion_at_comparison
    if champion is not None and champion != version:
        baseline, baseline_metrics = f"champion v{champion}", champion_metrics[champion]
    else:
        baseline, baseline_metrics = "popularity", popularity
    facts = collect_facts(client, config.registered_model, version, best, metric, baseline, baseline_metrics,
                          lineage, tracking_uri=tracking_uri)
    card = facts.markdown()
    for key, value in facts.tags().items():
        client.set_model_version_tag(config.registered_model, version, key, value)
    pending = "Awaiting approval" if proposal.requires_approval else "Compared, decision pending"
    client.update_model_version(config.registered_model, version, description=f"**{pending}**: {proposal.reason}.\n\n{card}")
    client.set_tag(tracking["parent_run_id"], "registered_version", f"{config.registered_model}/{version}")
    return {**proposal.model_dump(), "card": card, "leaderboard": board, "best_model": best["model"]}


def run_promotion(
    compared: Mapping[str, Any],
    tracking: Mapping[str, str],
    review: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Act on :func:`run_register_and_compare`'s result and, when given, a reviewer's answer.

    ``review`` is the approval task's result (Airflow's HITL response: ``chosen_options``,
    ``params_input``, ``responded_by_user``, ``responded_at``) or None when nobody was asked.
    Returns the decision as a dict (``alias_moved`` says whether ``champion`` moved).
    """
    from pipelines.tracking.promotion import Proposal, apply_proposal, registry_client

    client = registry_client(tracking.get("tracking_uri"))
    proposal = Proposal.model_validate({k: v for k, v in compared.items() if k in Proposal.model_fields})
    approval = approval_from_review(review) if review else None
    decision = apply_proposal(proposal, approval, client=client, description=compared.get("card"))
    client.set_tag(tracking["parent_run_id"], "promotion.status", decision.status)
    client.set_tag(tracking["parent_run_id"], "promotion.reason", decision.reason[:4900])
    return {**decision.model_dump(), "leaderboard": compared.get("leaderboard"), "best_model": compared.get("best_model")}


def approval_from_review(review: Mapping[str, Any]) -> Approval:
    """A HITL response -> :class:`Approval` (who, when, why). Raises PromotionError if it is neither option."""
    chosen = list(review.get("chosen_options") or [])
    if chosen not in ([APPROVE], [REJECT]):
        raise PromotionError(f"the approval answer must be {APPROVE!r} or {REJECT!r}, got {chosen}")
    user = review.get("responded_by_user") or {}
    by = (user.get("name") or user.get("id")) if isinstance(user, Mapping) else str(user)
    at = review.get("responded_at")
    at = at.isoformat(timespec="seconds") if hasattr(at, "isoformat") else str(at or "")
    reason = (review.get("params_input") or {}).get("reason") or ""
    # No responder means the request timed out and Airflow took the default answer.
    return Approval(approved=chosen == [APPROVE], by=by or "nobody (timed out)", at=at, reason=str(reason))


def run_register_and_promote(
    candidates: Sequence[Mapping[str, Any]],
    config: PromotionConfig | Mapping[str, Any],
    features_uri: str,
    run_key: str,
    tracking: Mapping[str, str],
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register, compare and decide in one call (the CLI's path; nobody reviews in between)."""
    compared = run_register_and_compare(candidates, config, features_uri, run_key, tracking, lineage)
    return run_promotion(compared, tracking)


def _champion_metrics(client: Any, config: PromotionConfig, version: str, features_uri: str) -> dict[str, float]:
    """The champion's metrics on this run's held-out data (the same data as the candidate's)."""
    import mlflow

    from pipelines.evaluation.bundle_eval import evaluate_bundle
    from pipelines.features.run import load_feature_set

    # The version's own artifact location, read through this client: never MLflow's global default.
    source = client.get_model_version_download_uri(config.registered_model, version)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp)
        bundle = mlflow.pyfunc.load_model(local).unwrap_python_model().bundle
        return evaluate_bundle(bundle, load_feature_set(features_uri), k=config.k)


def _popularity_metrics(by_model: Mapping[str, Mapping[str, Any]], features_uri: str, config: PromotionConfig) -> dict[str, float]:
    if BASELINE_MODEL in by_model:
        return {k: float(v) for k, v in by_model[BASELINE_MODEL]["metrics"].items()}
    from pipelines.features.run import load_feature_set
    from pipelines.training.config import TrainConfig
    from pipelines.training.run import fit_and_evaluate

    _, metrics, _ = fit_and_evaluate(
        TrainConfig(model=BASELINE_MODEL, k=config.k, plot_ks=(config.k,)), load_feature_set(features_uri)
    )
    return {k: float(v) for k, v in metrics.items()}


def _log_leaderboard(client: Any, parent_run_id: str, board: list[dict[str, Any]], metric: str) -> None:
    import pandas as pd

    from pipelines.tracking.plots import plot_leaderboard

    frame = pd.DataFrame(board)
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_csv(Path(tmp) / "leaderboard.csv", index=False)
        (Path(tmp) / "leaderboard.md").write_text(frame.to_markdown(index=False, floatfmt=".4f"))
        plot_leaderboard({row["model"]: row[metric] for row in board}, metric, Path(tmp) / "leaderboard.png")
        client.log_artifacts(parent_run_id, tmp, artifact_path="leaderboard")
    for row in board:
        client.log_metric(parent_run_id, f"{row['model']}.{metric.replace('@', '_at_')}", row[metric])
