"""
### recsys_monitoring

Daily, and on demand from the form: compares the newest interactions with the champion's
training snapshot (drift, staleness), replays the champion on what arrived since (live
quality), reads click-through from the served-recommendation events and the API's health from
its request log. Each check is one run of the MLflow experiment `monitoring` (metrics over time,
plots, a report; the **MLflow: monitoring** link opens it).

Every threshold crossed (section *Thresholds*) raises an alert (a log line and a row of
`recsys_alerts` by default; `$RECSYS_ALERT_SINKS`, `$RECSYS_ALERT_WEBHOOK_URL` or the form's
*Alert sinks* choose). When a crossed threshold calls for retraining, `trigger_training`
starts `recsys_training` with a conf naming the data, a held-out split of the newest
interactions (the candidate and the champion are compared on them) and `trigger_reason`;
`record_retrain` writes the training run's id and the reason on the check's MLflow run. A rerun
of the same monitoring run never starts a second training run (the run id is fixed).
`RECSYS_MONITORING_SCHEDULE` overrides the schedule (a cron, a preset or 'none'). Each task
calls one function of `pipelines.monitoring.steps`; this file is wiring only.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from pipelines.monitoring.alerts import on_dag_failure
from pipelines.monitoring.steps import param_specs

TRAINING_DAG = "recsys_training"  # pipelines.monitoring.retrain.TRAINING_DAG
RETRAIN_RUN_ID = "retrain__{{ run_id }}"  # one training run per monitoring run, however often it is retried


def _schedule() -> str | None:
    value = os.environ.get("RECSYS_MONITORING_SCHEDULE", "@daily").strip()
    return None if value.lower() in ("", "none") else value


def _params() -> dict[str, Param]:
    params = {}
    for name, spec in param_specs().items():
        spec = dict(spec)
        params[name] = Param(spec.pop("default"), **spec)
    return params


@dag(
    dag_id="recsys_monitoring",
    schedule=_schedule(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    params=_params(),
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

    @task.short_circuit(ignore_downstream_trigger_rules=True)  # no retrain asked: the rest is skipped
    def plan_retrain(result: dict) -> dict | None:
        from pipelines.monitoring import steps

        return steps.plan_retrain(result, dict(get_current_context()["params"]))

    @task
    def record_retrain(result: dict, conf: dict) -> dict:
        from pipelines.monitoring import steps

        started = get_current_context()["ti"].xcom_pull(task_ids="trigger_training", key="trigger_run_id")
        return steps.record_retrain(result, conf, started)

    result = monitor()
    conf = plan_retrain(result)
    trigger = TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id=TRAINING_DAG,
        trigger_run_id=RETRAIN_RUN_ID,
        conf=conf,
        skip_when_already_exists=True,
        wait_for_completion=False,
    )
    conf >> trigger >> record_retrain(result, conf)


recsys_monitoring()
