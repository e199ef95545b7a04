"""
### recsys_rollback

Move the `champion` alias back to the previous champion (the registry keeps the history, so
triggering it again walks further back). Who triggered it, when and the **reason** are written
on both versions; the champion Asset is emitted so batch scoring follows. Run by hand only.
This file is wiring only; the work is `pipelines.steps.rollback`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, Param, dag, get_current_context, task

from pipelines.constants import CHAMPION_ASSET_URI, DEFAULT_REGISTERED_MODEL
from pipelines.monitoring.alerts import on_dag_failure


@dag(
    dag_id="recsys_rollback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={
        "reason": Param(None, type=["null", "string"], title="Why roll back (recorded on the model versions)"),
        "registered_model": Param(DEFAULT_REGISTERED_MODEL, type="string", minLength=1, title="Registered model"),
    },
    on_failure_callback=on_dag_failure,
    tags=["recsys", "serving"],
    doc_md=__doc__,
)
def recsys_rollback():
    @task(outlets=[Asset(CHAMPION_ASSET_URI)])
    def rollback() -> dict:
        from pipelines import steps

        context = get_current_context()
        run = context["dag_run"]
        by = getattr(run, "triggering_user_name", None) or f"airflow ({run.run_type})"
        return steps.rollback(context["params"]["registered_model"], by=by, reason=context["params"]["reason"] or "")

    rollback()


recsys_rollback()
