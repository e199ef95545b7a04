"""
### recsys_ingest_events

Moves the API's feedback events (`recsys_events` in the serving database, written by
`recsys serve`) into the lake: the clicks past the last landed event id become one new batch of
the landing folder (`<lake>/interactions`), exactly once however often it runs or retries.
When clicks landed, the interactions Asset is updated with `{source, path, rows, file}`, which
schedules `recsys_training` on the landed data; with no new click the task is skipped and no
event is emitted. Hourly; `RECSYS_INGEST_EVENTS_SCHEDULE` overrides it (a cron, a preset or
'none'). The task calls one function of `pipelines.data.feedback`; this file is wiring only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from pipelines.dag_wiring import interactions_asset, schedule_from_env
from pipelines.monitoring.alerts import on_dag_failure

# With its watcher: a file naming the Asset without it would remove the training DAG's watcher.
INTERACTIONS = interactions_asset()


@dag(
    dag_id="recsys_ingest_events",
    schedule=schedule_from_env("RECSYS_INGEST_EVENTS_SCHEDULE", "@hourly"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    on_failure_callback=on_dag_failure,
    tags=["recsys", "data"],
    doc_md=__doc__,
)
def recsys_ingest_events():
    @task(outlets=[INTERACTIONS])
    def ingest_events() -> dict:
        from pipelines.data.feedback import ingest_feedback_events

        landed = ingest_feedback_events()
        if not landed["rows"]:
            raise AirflowSkipException(f"no new click (read {landed['events_read']} event(s)): no Asset event")
        get_current_context()["outlet_events"][INTERACTIONS].extra = {
            key: landed[key] for key in ("source", "path", "rows", "file", "first_event_id", "last_event_id")
        }
        return landed

    ingest_events()


recsys_ingest_events()
