"""
### recsys_monitoring

Daily, and on demand from the form: compares the newest interactions with the champion's
training snapshot (drift, staleness), replays the champion on what arrived since (live
quality), reads click-through from the served-recommendation events and the API's health from
its request log. Each check is one run of the MLflow experiment `monitoring` (metrics over time,
plots, a report; the **MLflow: monitoring** link opens it).

Every threshold crossed (section *Thresholds*) raises an alert (a log line and a row of
`recsys_alerts` by default; `$RECSYS_ALERT_SINKS`, `$RECSYS_ALERT_WEBHOOK_URL` or the form's
*Alert sinks* choose). When a crossed threshold calls for retraining, `request_retrain` updates
the retrain Asset, on which `recsys_training` is scheduled: the event's extra holds the training
run's conf (the data, a held-out split of the newest interactions on which the candidate and the
champion are compared, and `trigger_reason`), also written on the check's MLflow run. With no
retrain asked, the task is skipped and no event is emitted.
`RECSYS_MONITORING_SCHEDULE` overrides the schedule (a cron, a preset or 'none'). Each task
calls one function of `pipelines.monitoring.steps`; this file is wiring only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from pipelines.dag_wiring import airflow_params, schedule_from_env
from pipelines.constants import RETRAIN_ASSET_URI
from pipelines.monitoring.alerts import on_dag_failure
from pipelines.monitoring.steps import param_specs

RETRAIN = Asset(RETRAIN_ASSET_URI)


@dag(
    dag_id="recsys_monitoring",
    schedule=schedule_from_env("RECSYS_MONITORING_SCHEDULE", "@daily"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    params=airflow_params(param_specs()),
    on_failure_callback=on_dag_failure,
    tags=["recsys", "monitoring"],
    doc_md=__doc__,
)
def recsys_monitoring():
    @task
    def monitor() -> dict:
        from pipelines.monitoring import steps

        context = get_current_context()
        return steps.check(dict(context["params"]), context["run_id"])

    @task(outlets=[RETRAIN])
    def request_retrain(result: dict) -> dict:
        from pipelines.monitoring import steps

        context = get_current_context()
        request = steps.request_retrain(result, dict(context["params"]))
        if request is None:
            raise AirflowSkipException(f"no retrain: {result['reason'] or 'no threshold crossed'}")
        context["outlet_events"][RETRAIN].extra = request
        return request

    request_retrain(monitor())


recsys_monitoring()
