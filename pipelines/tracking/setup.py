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


def default_artifact_root() -> str:
    """Folder for run artifacts when the tracking URI is a local database."""
    root = os.environ.get("RECSYS_ARTIFACT_ROOT") or str(home() / "mlartifacts")
    if "://" not in root:
        Path(root).mkdir(parents=True, exist_ok=True)
        root = Path(root).resolve().as_uri()
    return root


def configure_mlflow(tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> tuple[str, str]:
    """Point MLflow at ``tracking_uri`` and make sure ``experiment`` exists.

    Returns (tracking_uri, experiment_id). Creating the SQLite database here, once, before
    parallel tasks log to it avoids the concurrent-creation corruption noted in STACK_NOTES.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    os.environ[ENV_TRACKING_URI] = uri  # child processes and mlflow's own helpers agree
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=default_artifact_root())
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
