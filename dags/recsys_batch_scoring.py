"""
### recsys_batch_scoring

Writes the champion's top-K for every known user, with scores and a short explanation, to
the serving database (`recsys_recommendations`; readers query the
`recsys_current_recommendations` view, which switches to a new version only once all of its
rows are in). Runs whenever the serving alias moves (promotion, approval, rollback update the
champion Asset) and by hand from the trigger form. A version already scored is only switched
to, so a rollback is instant. The task calls one function of `pipelines.serving.batch`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, dag, get_current_context, task

from pipelines.dag_wiring import airflow_params
from pipelines.constants import CHAMPION_ASSET_URI
from pipelines.monitoring.alerts import on_dag_failure
from pipelines.serving.batch import param_specs


@dag(
    dag_id="recsys_batch_scoring",
    schedule=[Asset(CHAMPION_ASSET_URI)],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two versions never write at once; the last run leaves the latest champion current
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params=airflow_params(param_specs()),
    on_failure_callback=on_dag_failure,
    tags=["recsys", "serving"],
    doc_md=__doc__,
)
def recsys_batch_scoring():
    @task
    def score() -> dict:
        from pipelines.serving.batch import score_from_params

        return score_from_params(dict(get_current_context()["params"]))

    score()


recsys_batch_scoring()
