"""The tuning step: read a feature set, run the study, write its partition, log it to MLflow.

``run_tuning`` returns the best parameters and the TrainConfig with them applied. The caller
then refits that config on train + validation (:func:`merge_validation_into_train`) and
evaluates it once on test through the normal train step, so the test split is never used to
choose anything.

Partition ``tuning/<run_key>/<model>/`` (deleted first; re-running overwrites): ``trials.csv``
(one row per trial) and ``result.json`` (what this function returns).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pipelines.paths import run_dir
from pipelines.tuning.validation import merge_validation_into_train

if TYPE_CHECKING:
    from pipelines.compute.dask_cluster import DaskConfig
    from pipelines.training.config import TrainConfig
    from pipelines.tuning.config import TuningConfig
    from pipelines.tuning.study import TuningResult

__all__ = ["merge_validation_into_train", "run_tuning"]

log = logging.getLogger(__name__)

ROLE_TUNING = "tuning"


def run_tuning(
    train_config: "TrainConfig | Mapping[str, Any]",
    features_uri: str,
    tuning_config: "TuningConfig | Mapping[str, Any] | None",
    out_root: str | None,
    run_key: str,
    tracking: Mapping[str, str] | None = None,
    dask: "DaskConfig | Mapping[str, Any] | None" = None,
) -> dict[str, Any]:
    """Tune ``train_config.model`` on the feature set at ``features_uri``.

    With ``tuning_config.n_parallel > 1`` trials run on a Dask cluster from
    :func:`pipelines.compute.dask_cluster.dask_client` (``dask`` options, threads sized to
    ``n_parallel`` unless given; ``$RECSYS_DASK_SCHEDULER`` selects an external scheduler).
    With ``tracking`` ({"parent_run_id", "experiment_id"}) a nested run ``tune-<model>``
    records the configs, the best value and parameters and ``trials.csv``, and each trial is a
    run nested under it. Returns JSON-able {"model", "metric", "best_value", "best_params",
    "best_trial", "n_trials", "n_complete", "n_pruned", "n_failed", "train_config" (the
    TrainConfig with the best parameters, as a dict), "trials_uri", "result_uri", "run_id"}.
    Raises ConfigError for invalid configs or a family without a search space.
    """
    from pipelines.features.store import load_feature_set
    from pipelines.training.config import TrainConfig
    from pipelines.tuning.config import parse_tuning_config
    from pipelines.tuning.search_space import search_space

    train_config = TrainConfig.model_validate(train_config)
    tuning = parse_tuning_config(tuning_config)
    search_space(train_config.model, tuning.search_space)  # refuse early, before reading data
    features = load_feature_set(features_uri)
    out = run_dir("tuning", run_key, out_root) / train_config.model
    if out.exists():
        shutil.rmtree(out)

    tuning_run_id = None
    if tracking:
        tuning_run_id = _open_tuning_run(tracking, train_config, tuning)
    try:
        result = _tune(train_config, features, tuning, tuning_run_id, dask)
    except BaseException:
        if tuning_run_id:
            import mlflow

            mlflow.MlflowClient().set_terminated(tuning_run_id, status="FAILED")
        raise

    out.mkdir(parents=True)
    trials_path = out / "trials.csv"
    result.trials.to_csv(trials_path, index=False)
    summary = {
        "model": result.model,
        "metric": result.metric,
        "best_value": result.best_value,
        "best_params": result.best_params,
        "best_trial": result.best_trial,
        "n_trials": result.n_trials,
        "n_complete": result.n_complete,
        "n_pruned": result.n_pruned,
        "n_failed": result.n_failed,
        "train_config": result.config.model_dump(mode="json"),
        "trials_uri": str(trials_path),
        "result_uri": str(out / "result.json"),
        "run_id": tuning_run_id,
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    if tuning_run_id:
        _log_summary(tuning_run_id, result, trials_path)
    log.info(
        "tuned %s: best %s %.4f (trial %d) with %s; %d trials, %d pruned, %d failed",
        result.model,
        result.metric,
        result.best_value,
        result.best_trial,
        result.best_params,
        result.n_trials,
        result.n_pruned,
        result.n_failed,
    )
    return summary


def _tune(train_config, features, tuning, parent_run_id, dask) -> "TuningResult":
    from pipelines.tuning.study import tune_model

    if tuning.n_parallel == 1:
        return tune_model(train_config, features, tuning, client=None, mlflow_parent_run_id=parent_run_id)
    from pipelines.compute.dask_cluster import DaskConfig, dask_client

    options = dict(DaskConfig.model_validate(dask or {}).model_dump())
    options["threads_per_worker"] = options["threads_per_worker"] or tuning.n_parallel
    with dask_client(options) as client:
        return tune_model(train_config, features, tuning, client=client, mlflow_parent_run_id=parent_run_id)


def _open_tuning_run(tracking: Mapping[str, str], train_config, tuning) -> str:
    """A fresh ``tune-<model>`` run under the pipeline's parent run (an earlier attempt's
    run and its trial runs are deleted first)."""
    import mlflow

    from pipelines.tracking.runs import PARENT_TAG, TAG_ROLE, TAG_RUN_KEY, log_params

    client = mlflow.MlflowClient()
    parent_id, experiment_id = tracking["parent_run_id"], tracking["experiment_id"]
    run_key = client.get_run(parent_id).data.tags.get(TAG_RUN_KEY, "")
    name = f"tune-{train_config.model}"
    for old in client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TAG_ROLE}` = '{ROLE_TUNING}' "
        f"and attributes.run_name = '{name}'",
    ):
        for child in client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{old.info.run_id}'"):
            client.delete_run(child.info.run_id)
        client.delete_run(old.info.run_id)
    run = client.create_run(
        experiment_id, run_name=name, tags={PARENT_TAG: parent_id, TAG_ROLE: ROLE_TUNING, TAG_RUN_KEY: run_key}
    )
    log_params(
        run.info.run_id, {"train": train_config.model_dump(mode="json"), "tuning": tuning.model_dump(mode="json")}
    )
    return run.info.run_id


def _log_summary(run_id: str, result: "TuningResult", trials_path: Path) -> None:
    import mlflow

    from pipelines.tracking.runs import log_params
    from pipelines.tuning.trial_runs import metric_key

    client = mlflow.MlflowClient()
    client.log_metric(run_id, f"best_{metric_key(result.metric)}", result.best_value)
    for name in ("n_trials", "n_complete", "n_pruned", "n_failed"):
        client.log_metric(run_id, name, getattr(result, name))
    log_params(run_id, {"best": result.best_params})
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(trials_path, Path(tmp) / "trials.csv")
        (Path(tmp) / "best_train_config.json").write_text(json.dumps(result.config.model_dump(mode="json"), indent=2))
        client.log_artifacts(run_id, tmp, artifact_path="tuning")
    client.set_terminated(run_id, status="FINISHED")
