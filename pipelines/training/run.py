"""The train step: fit one candidate, evaluate it on the held-out split, log it to MLflow."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from pipelines.paths import run_dir
from pipelines.timing import timed_step
from pipelines.training.config import TrainConfig

if TYPE_CHECKING:
    from pipelines.compute.dask_cluster import DaskConfig

log = logging.getLogger(__name__)


def fit_and_evaluate(
    config: TrainConfig, features: Any, warm_start: Any = None
) -> tuple[Any, dict[str, float], dict[int, dict[str, float]]]:
    """Fit ``config.model`` on ``features.train`` and evaluate it on ``features.test``.

    ``warm_start`` (a :class:`~pipelines.models.warm_start.WarmStart` over this feature set's
    ids) starts the fit from a previous model. Pure compute (no IO): returns (fitted model,
    metrics at ``config.k`` plus fit time, metrics for each K of ``config.plot_ks``).
    """
    from pipelines.evaluation.evaluate import metrics_at_ks
    from pipelines.features.weighting import apply_weighting
    from pipelines.models import create_model
    from pipelines.progress import counter_bar
    from pipelines.seeding import seed_everything

    seed_everything(int(config.model_params().get("seed", 42)))
    weighted = apply_weighting(features.train, config.resolved_weighting())
    model = create_model(config.model, config.model_params())
    history: list[tuple[int, float, dict[str, float]]] = []

    def record(iteration: int, loss: float, metrics: Mapping[str, float] | None = None) -> None:
        history.append((int(iteration), float(loss), {k: float(v) for k, v in (metrics or {}).items()}))
        bar.update()
        bar.set_postfix_str(f"loss {float(loss):.4g}")

    extra: dict[str, Any] = {}
    if getattr(model, "uses_interaction_order", False):
        extra["interaction_order"] = getattr(features, "train_order", None)
    timings: dict[str, dict[str, float]] = {}
    rounds = getattr(model.config, "iterations", None) or getattr(model.config, "epochs", None)
    with timed_step(f"fit:{config.model}", timings) as fit_time, \
            counter_bar(f"fit {config.model}", "it", rounds if isinstance(rounds, int) else None) as bar:
        model.fit(
            weighted,
            item_features=features.item_features,
            validation=features.validation,
            callback=record,
            warm_start=warm_start,
            **extra,
        )
    model.training_history_ = history  # (iteration, loss, validation metrics), logged per step
    ks = tuple(sorted(set(config.plot_ks) | {config.k}))
    with timed_step(f"evaluate:{config.model}", timings):
        by_k = metrics_at_ks(model, features.train, features.test, ks=ks)
    model.step_timings_ = timings  # seconds and peak RSS of fit and evaluate (see pipelines.timing)
    metrics = {**by_k[config.k], "fit_seconds": fit_time["seconds"]}
    return model, metrics, by_k


@dataclass(frozen=True)
class CandidateFit:
    """A fitted, evaluated and saved candidate as the logging side needs it: plain values only.

    It is what :func:`fit_candidate` returns, in this process or from a Dask worker, so nothing
    in it refers to the model object or the feature set: the model lives in ``bundle_uri``.
    ``history`` holds (iteration, loss, validation metrics); ``hardware`` the ``hardware.*`` tags
    of the machine that fitted it.
    """

    model: str
    metrics: dict[str, float]
    by_k: dict[int, dict[str, float]]
    history: list[tuple[int, float, dict[str, float]]]
    model_config: dict[str, Any]
    fitted_params: dict[str, Any]
    timings: dict[str, dict[str, float]]
    bundle_uri: str
    features_uri: str
    features_config: dict[str, Any]
    example_users: list[str]
    hardware: dict[str, str] = field(default_factory=dict)


def load_training_features(features_uri: str, merge_validation: bool = False) -> Any:
    """The feature set at ``features_uri``; with ``merge_validation`` the validation split folded
    into train (the refit after tuning: the chosen config learns from everything but test)."""
    from pipelines.features.run import load_feature_set

    features = load_feature_set(features_uri)
    if merge_validation:
        from pipelines.tuning.validation import merge_validation_into_train

        features = merge_validation_into_train(features)
    return features


def fit_candidate(
    config: TrainConfig | Mapping[str, Any],
    features_uri: str,
    out_root: str | None,
    run_key: str,
    lineage: Mapping[str, Any] | None = None,
    merge_validation: bool = False,
    warm_start: Any = None,
    features: Any = None,
) -> CandidateFit:
    """Fit, evaluate and save one candidate's bundle under ``models/<run_key>/<model>``.

    The unit of work that may run on a Dask worker (:mod:`pipelines.training.remote`): it needs
    the feature set at ``features_uri`` (``features``: already loaded by the caller, with
    ``merge_validation`` applied) and the lake under ``out_root``, nothing from MLflow.
    ``warm_start`` is a :class:`~pipelines.models.warm_start.WarmStart` over this feature set's
    ids, or None. Raises what loading and fitting raise (DataError, ConfigError).
    """
    from pipelines.serving.bundle import RecommenderBundle
    from pipelines.tracking.cards import hardware_tags

    config = TrainConfig.model_validate(config)
    if features is None:
        features = load_training_features(features_uri, merge_validation)
    model, metrics, by_k = fit_and_evaluate(config, features, warm_start=warm_start)
    timings = dict(model.step_timings_)
    log.info("%s on %s: %s", config.model, features_uri, {k: round(v, 4) for k, v in metrics.items()})

    with timed_step(f"save:{config.model}", timings):  # the bundle on the lake
        seen = features.train.copy()
        seen.data = np.ones_like(seen.data)
        bundle = RecommenderBundle(
            model=model,
            user_ids=features.user_ids,
            item_ids=features.item_ids,
            seen=seen,
            info={"run_key": run_key, "features_uri": str(features_uri), "lineage": dict(lineage or {})},
            # Content-based models score new items from metadata: ship what featurizes it.
            featurizer=features.content_featurizer if model.requires_item_features else None,
        )
        bundle_dir = bundle.save(run_dir("models", run_key, out_root) / config.model)
    history = getattr(model, "training_history_", None) or [
        (step, float(loss), {}) for step, loss in enumerate(model.training_loss_, start=1)
    ]
    return CandidateFit(
        model=config.model,
        metrics={k: float(v) for k, v in metrics.items()},
        by_k={int(k): {name: float(v) for name, v in values.items()} for k, values in by_k.items()},
        history=[(int(step), float(loss), dict(val)) for step, loss, val in history],
        model_config=model.config.model_dump(mode="json"),
        fitted_params=dict(model.fitted_params()),
        timings=timings,
        bundle_uri=str(bundle_dir),
        features_uri=str(features_uri),
        features_config=dict(features.manifest.get("config", {})),
        example_users=[str(u) for u in features.user_ids[:3]],
        hardware=hardware_tags(),  # the model card says where it trained: here, not where it is logged
    )


def run_training(
    config: TrainConfig | Mapping[str, Any],
    features_uri: str,
    out_root: str | None,
    run_key: str,
    tracking: Mapping[str, str] | None = None,
    lineage: Mapping[str, Any] | None = None,
    merge_validation: bool = False,
    champion: tuple[str, str] | None = None,
    dask: "DaskConfig | Mapping[str, Any] | None" = None,
) -> dict[str, Any]:
    """Train one candidate and save its bundle under ``models/<run_key>/<model>``.

    ``merge_validation`` folds the validation split into train first (the refit after tuning).
    With ``config.warm_start``, the fit starts from the champion (``champion``: registered model
    name and alias, looked up in ``tracking``'s store) when it can (see
    :mod:`pipelines.training.warm_start`). Where the fit runs follows ``dask``'s ``fit_on``
    (:func:`pipelines.training.remote.fit_placement`): here, or as one Dask task on the cluster
    (an external scheduler by default when one is configured), which writes the bundle to the
    lake under ``out_root`` (shared storage then) and hands back plain values. With ``tracking``
    ({"parent_run_id", "experiment_id"}), a nested MLflow run, logged from here, records the
    configs, per-iteration loss, metrics, lineage, warm-start tags, plots and the pyfunc model.
    Returns {"model", "metrics", "fitted", "bundle_uri", "run_id", "model_uri", "timings", "warm_start",
    "fit_on"} (fitted: the values fit chose from the data; run_id and model_uri None untracked; warm_start the tags; fit_on "local" or the
    scheduler's address).
    """
    from pipelines.compute.dask_cluster import DaskConfig
    from pipelines.training.remote import fit_on_cluster, fit_placement

    config = TrainConfig.model_validate(config)
    dask = DaskConfig.model_validate(dask or {})
    features = None
    warm, warm_tags, warm_timing = None, {"warm_start": "false"}, {}
    if config.warm_start:  # the champion comes from MLflow, which only this side must reach
        features = load_training_features(features_uri, merge_validation)
        with timed_step(f"warm_start:{config.model}", warm_timing):  # finding and loading the champion
            warm, warm_tags = _champion_warm_start(config, features, tracking, champion)
    if fit_placement(dask) == "cluster":
        fitted, where = fit_on_cluster(config, features_uri, out_root, run_key, lineage, merge_validation, warm, dask)
    else:
        fitted = fit_candidate(config, features_uri, out_root, run_key, lineage, merge_validation, warm, features)
        where = "local"
    timings = {**warm_timing, **fitted.timings}
    result: dict[str, Any] = {
        "model": config.model,
        "metrics": fitted.metrics,
        # What fit chose from the data (ALS/EASE regularization, ...), as plain JSON values (XCom).
        "fitted": {k: v.item() if hasattr(v, "item") else v for k, v in fitted.fitted_params.items()},
        "bundle_uri": fitted.bundle_uri,
        "run_id": None,
        "model_uri": None,
        "timings": timings,
        "warm_start": warm_tags,
        "fit_on": where,
    }
    if tracking:
        with timed_step(f"log:{config.model}", timings):  # the nested run and the pyfunc model
            result.update(_log_candidate(config, fitted, tracking, dict(lineage or {}), warm_tags))
    return result


def _champion_warm_start(config: TrainConfig, features: Any, tracking: Mapping[str, str] | None,
                         champion: tuple[str, str] | None) -> tuple[Any, dict[str, str]]:
    from pipelines.models import create_model
    from pipelines.training.warm_start import champion_warm_start

    if champion is None:
        return None, {"warm_start": "false", "warm_start.reason": "no registered model named to take a champion from"}
    tracking_uri = (tracking or {}).get("tracking_uri")
    return champion_warm_start(create_model(config.model, config.model_params()), features, tracking_uri, *champion)


def _log_candidate(config: TrainConfig, fitted: CandidateFit, tracking: Mapping[str, str],
                   lineage: dict[str, Any], warm_tags: Mapping[str, str]) -> dict[str, str]:
    import mlflow

    from pipelines.tracking.plots import plot_loss_curve, plot_metrics_at_k
    from pipelines.tracking.pyfunc import log_bundle_model
    from pipelines.tracking.runs import flatten, start_child_run

    from pipelines.tracking.setup import use_tracking_uri

    uri = tracking.get("tracking_uri")
    if uri:  # the run's store, never MLflow's default: this may be a fresh task process
        use_tracking_uri(uri)
    child_id = start_child_run(tracking["parent_run_id"], config.model, tracking["experiment_id"], uri)
    with mlflow.start_run(run_id=child_id):
        mlflow.log_params(flatten({"train": config.model_dump(mode="json"), "model": fitted.model_config}))
        mlflow.log_params(flatten({"features": fitted.features_config}))
        mlflow.log_params(flatten({"weighting_applied": config.resolved_weighting().model_dump(mode="json")}))
        # Choices fit made from the data (EASE's regularization when left to validation).
        mlflow.log_params(flatten({"fitted": fitted.fitted_params}))
        for step, loss, val_metrics in fitted.history:
            mlflow.log_metric("training_loss", float(loss), step=step)
            for name, value in val_metrics.items():
                mlflow.log_metric(f"validation_{_metric_key(name)}", float(value), step=step)
        mlflow.log_metrics({_metric_key(k): float(v) for k, v in fitted.metrics.items()})
        for k, values in fitted.by_k.items():
            for name, value in values.items():
                if "@" in name:
                    mlflow.log_metric(_metric_key(name.split("@")[0]) + "_at_k", float(value), step=k)
        mlflow.set_tags({f"lineage.{k}": str(v) for k, v in flatten(lineage).items()})
        mlflow.set_tags(dict(warm_tags))  # warm_start true/false, its source and shared counts, or why not
        mlflow.set_tag("features_uri", fitted.features_uri)
        mlflow.set_tags(fitted.hardware)  # the model card says where it trained
        with tempfile.TemporaryDirectory() as tmp:
            losses = [loss for _, loss, _ in fitted.history]
            plot_loss_curve(losses, Path(tmp) / "loss_curve.png", f"{config.model} training loss")
            plot_metrics_at_k(fitted.by_k, Path(tmp) / "metrics_at_k.png")
            mlflow.log_artifacts(tmp, artifact_path="plots")
        info = log_bundle_model(fitted.bundle_uri, example_users=fitted.example_users)
    return {"run_id": child_id, "model_uri": info.model_uri}


def _metric_key(name: str) -> str:
    """MLflow metric names: '@' is allowed, but keep them readable in the UI and URLs."""
    return name.replace("@", "_at_")
