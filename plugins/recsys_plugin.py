"""Airflow plugin: links from the Airflow UI to the MLflow UI where runs and models are reviewed.

Adds an "MLflow" entry to the UI's navigation (external view) and a macro that templates can
use to link a run. The MLflow UI address comes from ``RECSYS_MLFLOW_UI_URL`` (default
``http://127.0.0.1:5000``, where ``make mlflow`` serves it).
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin


def mlflow_ui_url() -> str:
    """Base URL of the MLflow UI."""
    return os.environ.get("RECSYS_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def mlflow_model_url(registered_model: str = "recsys") -> str:
    """Link to a registered model's page in the MLflow UI."""
    return f"{mlflow_ui_url()}/#/models/{registered_model}"


class RecsysPlugin(AirflowPlugin):
    name = "recsys"
    macros = [mlflow_ui_url, mlflow_model_url]
    external_views = [
        {
            "name": "MLflow: runs and models",
            "href": mlflow_ui_url() + "/#/models",
            "destination": "nav",
            "category": "browse",
            "url_route": "mlflow",
        }
    ]
