"""The register-and-promote step: pick the best candidate, register it, decide promotion."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipelines.errors import ConfigError, PromotionError
from pipelines.tracking.promotion import PromotionConfig

log = logging.getLogger(__name__)

BASELINE_MODEL = "popularity"


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


def run_register_and_promote(
    candidates: Sequence[Mapping[str, Any]],
    config: PromotionConfig | Mapping[str, Any],
    features_uri: str,
    run_key: str,
    tracking: Mapping[str, str],
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register the best candidate and move the serving alias only if it beats the champion.

    ``candidates`` are results of :func:`pipelines.training.run.run_training` for the same
    feature set. The baseline for a first promotion is popularity's metric on that data
    (trained here if it is not among the candidates). Returns the decision as a dict, with
    the leaderboard. The parent run records the leaderboard (CSV, markdown, bar chart).
    """
    import mlflow

    config = PromotionConfig.model_validate(config)
    if not candidates:
        raise ConfigError("no candidate models were trained; nothing to register")
    metric = config.metric
    board = leaderboard(candidates, metric)
    by_model = {c["model"]: c for c in candidates}
    best = by_model[board[0]["model"]]
    if not best.get("model_uri"):
        raise PromotionError(f"candidate {best['model']!r} has no logged MLflow model; was it trained with tracking?")

    popularity_value = _popularity_value(by_model, features_uri, config)
    _log_leaderboard(tracking["parent_run_id"], board, metric)

    from pipelines.tracking.promotion import promote_if_better, register_version
    from pipelines.tracking.runs import flatten

    tags = {"recsys.model": best["model"], **{f"lineage.{k}": str(v) for k, v in flatten(lineage or {}).items()}}
    uri = tracking.get("tracking_uri")  # the run's store, passed on explicitly
    version = register_version(best["model_uri"], best["run_id"], config, run_key, tags, tracking_uri=uri)

    def champion_value(champion_version: str) -> float:
        from pipelines.evaluation.bundle_eval import evaluate_bundle
        from pipelines.features.run import load_feature_set

        loaded = mlflow.pyfunc.load_model(f"models:/{config.registered_model}/{champion_version}")
        bundle = loaded.unwrap_python_model().bundle
        return evaluate_bundle(bundle, load_feature_set(features_uri), k=config.k)[metric]

    decision = promote_if_better(config, version, float(best["metrics"][metric]), popularity_value, champion_value,
                                 tracking_uri=uri)
    client = mlflow.MlflowClient(uri)
    client.set_tag(tracking["parent_run_id"], "promotion.status", decision.status)
    client.set_tag(tracking["parent_run_id"], "promotion.reason", decision.reason)
    client.set_tag(tracking["parent_run_id"], "registered_version", f"{config.registered_model}/{version}")
    return {**decision.model_dump(), "leaderboard": board, "best_model": best["model"]}


def _popularity_value(by_model: Mapping[str, Mapping[str, Any]], features_uri: str, config: PromotionConfig) -> float:
    if BASELINE_MODEL in by_model:
        return float(by_model[BASELINE_MODEL]["metrics"][config.metric])
    from pipelines.features.run import load_feature_set
    from pipelines.training.config import TrainConfig
    from pipelines.training.run import fit_and_evaluate

    _, metrics, _ = fit_and_evaluate(
        TrainConfig(model=BASELINE_MODEL, k=config.k, plot_ks=(config.k,)), load_feature_set(features_uri)
    )
    return float(metrics[config.metric])


def _log_leaderboard(parent_run_id: str, board: list[dict[str, Any]], metric: str) -> None:
    import mlflow
    import pandas as pd

    from pipelines.tracking.plots import plot_leaderboard

    client = mlflow.MlflowClient()
    frame = pd.DataFrame(board)
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_csv(Path(tmp) / "leaderboard.csv", index=False)
        (Path(tmp) / "leaderboard.md").write_text(frame.to_markdown(index=False, floatfmt=".4f"))
        plot_leaderboard({row["model"]: row[metric] for row in board}, metric, Path(tmp) / "leaderboard.png")
        client.log_artifacts(parent_run_id, tmp, artifact_path="leaderboard")
    for row in board:
        client.log_metric(parent_run_id, f"{row['model']}.{metric.replace('@', '_at_')}", row[metric])

