"""Airflow plugin: from Airflow's UI to the MLflow UI where runs and models are reviewed.

- Navigation: an "MLflow" entry (runs and models).
- Each ``train`` task instance: an extra link "MLflow run" to the run that task logged (read
  from the task's own return value, so a retry links to its own run).
- The DAG page: a "Champion model" tab that opens the registry page of the version holding
  ``@champion``, resolved when it is clicked (``/recsys/champion`` redirects there), and a
  "Monitoring" tab with the MLflow experiment ``monitoring`` (``/recsys/monitoring``; the
  experiment's id is looked up when clicked), also in the navigation.
- Each ``monitor`` task instance (``recsys_monitoring``): "MLflow run" opens that check's run.

The MLflow UI address comes from ``RECSYS_MLFLOW_UI_URL`` (default ``http://127.0.0.1:5000``,
where ``make mlflow`` and ``make up`` serve it). Nothing heavy is imported at module level:
the API server and the DAG processor load this file.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

TRAIN_TASK = "train"
MONITOR_TASK = "monitor"
#: Task id -> key of its return value that holds the MLflow run it logged.
RUN_ID_KEYS = {TRAIN_TASK: "run_id", MONITOR_TASK: "mlflow_run_id"}
MONITORING_EXPERIMENT = "monitoring"  # pipelines.monitoring.config.MONITORING_EXPERIMENT
REGISTERED_MODEL = "recsys"  # pipelines.constants.DEFAULT_REGISTERED_MODEL, without importing the package here
SERVING_ALIAS = "champion"


def mlflow_ui_url() -> str:
    """Base URL of the MLflow UI."""
    return os.environ.get("RECSYS_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def mlflow_model_url(registered_model: str = REGISTERED_MODEL) -> str:
    """Link to a registered model's page in the MLflow UI."""
    return f"{mlflow_ui_url()}/#/models/{registered_model}"


def mlflow_run_url(run_id: str) -> str:
    """Link to one MLflow run (the UI finds its experiment)."""
    return f"{mlflow_ui_url()}/#/runs/{run_id}"


def train_result(ti_key: Any) -> dict | None:
    """The return value of one ``train`` task instance, read from the metadata database."""
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == ti_key.dag_id,
                XComModel.task_id == ti_key.task_id,
                XComModel.run_id == ti_key.run_id,
                XComModel.map_index == ti_key.map_index,
                XComModel.key == "return_value",
            )
        )
    value = None if value is None else XComModel.deserialize_value(_Row(value))
    return value if isinstance(value, dict) else None


class _Row:
    """The shape XComModel.deserialize_value reads (an object with ``value``)."""

    def __init__(self, value: Any):
        self.value = value


class MlflowRunLink(BaseOperatorLink):
    """"MLflow run" on every ``train`` and ``monitor`` task instance; empty (greyed out) elsewhere or before it logged."""

    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        key = RUN_ID_KEYS.get(ti_key.task_id)
        if key is None:
            return ""
        result = train_result(ti_key)
        run_id = (result or {}).get(key)
        return mlflow_run_url(run_id) if run_id else ""


def monitoring_page_url(tracking_uri: str | None = None, experiment: str = MONITORING_EXPERIMENT) -> str:
    """The MLflow page of the monitoring experiment (the experiments list until the first check made it)."""
    import mlflow

    found = mlflow.MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    if found is None:
        return f"{mlflow_ui_url()}/#/experiments"
    return f"{mlflow_ui_url()}/#/experiments/{found.experiment_id}"


def champion_page_url(tracking_uri: str | None = None, registered_model: str = REGISTERED_MODEL) -> str:
    """The registry page of the version under ``@champion``; the model's page when there is none yet."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    try:
        version = client.get_model_version_by_alias(registered_model, SERVING_ALIAS).version
    except mlflow.exceptions.MlflowException:
        return mlflow_model_url(registered_model)
    return f"{mlflow_model_url(registered_model)}/versions/{version}"


def _champion_app():
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    app = FastAPI(title="recsys links", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/champion")
    def champion() -> RedirectResponse:
        # Only a redirect: plugin endpoints are not behind Airflow's auth, so nothing else is exposed.
        return RedirectResponse(champion_page_url(), status_code=307)

    @app.get("/monitoring")
    def monitoring() -> RedirectResponse:
        return RedirectResponse(monitoring_page_url(), status_code=307)

    return app


class RecsysPlugin(AirflowPlugin):
    name = "recsys"
    macros = [mlflow_ui_url, mlflow_model_url]
    global_operator_extra_links = [MlflowRunLink()]
    fastapi_apps = [{"app": _champion_app(), "url_prefix": "/recsys", "name": "recsys links"}]
    external_views = [
        {
            "name": "MLflow: runs and models",
            "href": mlflow_ui_url() + "/#/models",
            "destination": "nav",
            "category": "browse",
            "url_route": "mlflow",
        },
        {
            "name": "Champion model",
            "href": "/recsys/champion",
            "destination": "dag",
            "url_route": "champion-model",
        },
        {
            "name": "MLflow: monitoring",
            "href": "/recsys/monitoring",
            "destination": "nav",
            "category": "browse",
            "url_route": "mlflow-monitoring",
        },
        {
            "name": "Monitoring",
            "href": "/recsys/monitoring",
            "destination": "dag",
            "url_route": "monitoring",
        },
    ]
