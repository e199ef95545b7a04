"""Parent and nested MLflow runs, created idempotently from a run key."""

from __future__ import annotations

from typing import Any, Mapping

TAG_RUN_KEY = "recsys.run_key"
TAG_MODEL = "recsys.model"
TAG_ROLE = "recsys.role"
PARENT_TAG = "mlflow.parentRunId"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dict -> flat ``a.b.c`` keys with string values (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def open_parent_run(
    run_key: str,
    experiment_id: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
) -> str:
    """The parent run of one pipeline run: found by its run key, created once.

    Re-running the task returns the same run id, so a retried DAG run never forks its history.
    ``tracking_uri`` is the run's store (None: the process's current MLflow URI).
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_RUN_KEY}` = '{run_key}' and tags.`{TAG_ROLE}` = 'parent'",
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
    else:
        run = client.create_run(
            experiment_id,
            run_name=f"pipeline-{run_key}"[:250],
            tags={TAG_RUN_KEY: run_key, TAG_ROLE: "parent", **(tags or {})},
        )
        run_id = run.info.run_id
    if params:
        existing = client.get_run(run_id).data.params
        fresh = {k: v for k, v in flatten(params).items() if k not in existing}
        _log_params(client, run_id, fresh)
    return run_id


def start_child_run(parent_run_id: str, model_name: str, experiment_id: str, tracking_uri: str | None = None) -> str:
    """A fresh nested run for ``model_name`` under the parent, in the parent's store ``tracking_uri``
    (None: the process's current MLflow URI).

    A child from an earlier attempt of the same task is deleted first, so metric histories
    (per-iteration loss) are never appended twice.
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    run_key = client.get_run(parent_run_id).data.tags.get(TAG_RUN_KEY, "")
    for old in client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TAG_MODEL}` = '{model_name}'",
    ):
        client.delete_run(old.info.run_id)
    run = client.create_run(
        experiment_id,
        run_name=model_name,
        tags={PARENT_TAG: parent_run_id, TAG_MODEL: model_name, TAG_ROLE: "candidate", TAG_RUN_KEY: run_key},
    )
    return run.info.run_id


def _log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        client.log_batch(run_id, params=items[start : start + 100])


def log_params(run_id: str, params: Mapping[str, Any], tracking_uri: str | None = None) -> None:
    """Log a (nested) config dict as flat params on ``run_id``."""
    import mlflow

    _log_params(mlflow.MlflowClient(tracking_uri), run_id, flatten(params))
