"""Where MLflow tracks: one tracking URI and one experiment with an explicit artifact location."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipelines.constants import DEFAULT_EXPERIMENT, ENV_TRACKING_URI
from pipelines.paths import home

log = logging.getLogger(__name__)


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else SQLite in the platform home."""
    return os.environ.get(ENV_TRACKING_URI) or f"sqlite:///{home() / 'mlflow.db'}"


def is_tracking_server(uri: str) -> bool:
    """Whether ``uri`` is an MLflow tracking server (which decides where artifacts go)."""
    return uri.split(":", 1)[0] in ("http", "https", "databricks")


def default_artifact_root(tracking_uri: str | None = None) -> str | None:
    """Where a new experiment keeps its artifacts: ``$RECSYS_ARTIFACT_ROOT``, else None for a
    tracking server (its ``--artifacts-destination`` applies, proxied through it), else a
    folder in the platform home next to the local database."""
    root = os.environ.get("RECSYS_ARTIFACT_ROOT")
    if not root and is_tracking_server(tracking_uri or default_tracking_uri()):
        return None
    root = root or str(home() / "mlartifacts")
    if "://" not in root:
        Path(root).mkdir(parents=True, exist_ok=True)
        root = Path(root).resolve().as_uri()
    return root


def use_tracking_uri(uri: str) -> str:
    """Make ``uri`` this process's MLflow location: the fluent API, every ``MlflowClient()`` built
    without a URI (tuning, promotion) and child processes all agree. Returns ``uri``.

    Each Airflow task is a fresh process: without this it would fall back to MLflow's own
    default (``./mlruns`` or ``$MLFLOW_TRACKING_URI``), not the run's store.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    os.environ[ENV_TRACKING_URI] = uri
    return uri


def configure_mlflow(
    tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, artifact_root: str | None = None
) -> tuple[str, str]:
    """Point MLflow at ``tracking_uri`` and make sure ``experiment`` exists.

    ``artifact_root`` (default :func:`default_artifact_root`) is where a new experiment keeps
    its artifacts. Returns (tracking_uri, experiment_id). Creating the SQLite database here,
    once, before parallel tasks log to it avoids the concurrent-creation corruption noted in
    STACK_NOTES.
    """
    import mlflow

    uri = use_tracking_uri(tracking_uri or default_tracking_uri())
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=artifact_root or default_artifact_root(uri))
            log.info("created MLflow experiment %s (%s) at %s", experiment, experiment_id, uri)
        except MlflowException:
            # Another run started at the same instant created it first: use theirs.
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
            experiment_id = found.experiment_id
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return uri, experiment_id
