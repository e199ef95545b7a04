"""
### recsys_training

Daily, whenever new interactions land (the interactions Asset: `recsys land`, the
`recsys_ingest_events` DAG) and when a monitoring check asks for it (the retrain Asset): ingest interactions, clean them (bad rows quarantined with a reason), build features,
train every selected model on the same split, evaluate them on the held-out data, track all of
it in MLflow, register the best with its model card and give it the `champion` alias only if it
beats the current champion on this run's held-out data. With **Require approval** on, a better
model first waits in the `approval` task (Airflow's *Required actions*) for a person to approve
its card; otherwise that task is skipped. `promote` emits the champion Asset when the alias
moves, which schedules batch scoring.

Trigger it from the UI with the form (**Trigger DAG**), or through the REST API with the same
keys as `conf`:

- **source**, its **path** (or SQL settings, synthetic sizes under *Data*), **models to train**
  (multi-select), **K**, the promotion **metric** and **margin**, **GPU** (unset: each family's
  own default device).
- *Model*: **model_params**, per family and only what you change, e.g.
  `{"ease": {"regularization": 300}, "itemknn": {"weighting": {"scheme": "bm25", "k1": 50}}}`.
  Every other value is the family's own default; the form lists each family's summary and
  defaults, generated from its config. **seed** (unset: each step's and family's default).
- *Tuning* (Optuna, trials per model) and *Data* (split, test fraction, k-core, rejects).

A run started by new interactions trains on the data its Asset event names, one started by a
monitoring check with the conf in its event (the data, a held-out split of the newest
interactions); **trigger_reason** (set by the check, or by you) and the kind of trigger are
recorded on the run's MLflow parent run. A value the schema refuses (an unknown family or field, a number out of bounds) is refused by the
form and by the REST API (HTTP 400); the `plan` task validates everything again with the step
configs before any work starts. Each task calls one function of `pipelines.steps`; this file is
wiring only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import (
    Asset,
    AssetAny,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException

from pipelines.dag_wiring import airflow_params, interactions_asset, schedule_from_env
from pipelines.constants import CHAMPION_ASSET_URI, RETRAIN_ASSET_URI
from pipelines.monitoring.alerts import on_dag_failure
from pipelines.params import param_specs
from pipelines.task_failures import fail_fast_on_bad_input

APPROVAL_TIMEOUT = timedelta(days=1)  # then the default answer (Reject) applies and the next run can start

# New interactions: from recsys_ingest_events and from the watcher of the landing flag.
INTERACTIONS = interactions_asset()
RETRAIN = Asset(RETRAIN_ASSET_URI)  # a monitoring check asks for a run (its event's extra holds the conf)
NEW_DATA_OR_REQUEST = AssetAny(INTERACTIONS, RETRAIN)


def _schedule() -> AssetOrTimeSchedule | AssetAny:
    """New interactions or a retrain request, with the cron as a fallback: daily by default;
    ``RECSYS_TRAINING_SCHEDULE`` overrides the cron (an expression or a preset such as @hourly),
    'none' leaves the Assets only."""
    value = schedule_from_env("RECSYS_TRAINING_SCHEDULE", "@daily")
    if value is None:
        return NEW_DATA_OR_REQUEST
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(value, timezone="UTC"), assets=NEW_DATA_OR_REQUEST)


@dag(
    dag_id="recsys_training",
    schedule=_schedule(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params=airflow_params(param_specs()),
    on_failure_callback=on_dag_failure,
    tags=["recsys", "training"],
    doc_md=__doc__,
)
def recsys_training():
    @task
    @fail_fast_on_bad_input
    def plan() -> dict:
        from pipelines import steps
        from pipelines.training.trigger import asset_event_dicts

        context = get_current_context()
        return steps.plan(context["params"], context["run_id"], run_type=str(context["dag_run"].run_type),
                          asset_events=asset_event_dicts(context["triggering_asset_events"]))

    @task
    @fail_fast_on_bad_input
    def open_tracking_run(plan: dict) -> dict:
        from pipelines import steps

        return steps.open_run(plan)

    @task
    @fail_fast_on_bad_input
    def ingest(plan: dict) -> dict:
        from pipelines import steps

        return steps.ingest(plan)

    @task
    @fail_fast_on_bad_input
    def clean(plan: dict, ingested: dict) -> dict:
        from pipelines import steps

        return steps.clean(plan, ingested)

    @task
    @fail_fast_on_bad_input
    def build_features(plan: dict, ingested: dict, cleaned: dict) -> dict:
        from pipelines import steps

        return steps.build_features(plan, ingested, cleaned)

    @task
    @fail_fast_on_bad_input
    def list_candidates(plan: dict) -> list:
        from pipelines import steps

        return steps.candidates(plan)

    @task
    @fail_fast_on_bad_input
    def lineage(ingested: dict, cleaned: dict, features: dict, tracking: dict) -> dict:
        from pipelines import steps

        return steps.lineage(ingested, cleaned, features, tracking)

    @task(map_index_template="{{ candidate_model }}")
    @fail_fast_on_bad_input
    def train(plan: dict, candidate: dict, features: dict, tracking: dict, lineage: dict) -> dict:
        from pipelines import steps

        get_current_context()["candidate_model"] = candidate["model"]  # names the mapped task in the UI

        return steps.train(plan, candidate, features, tracking, lineage)

    @task
    @fail_fast_on_bad_input
    def register_and_compare(plan: dict, results: list, features: dict, tracking: dict, lineage: dict) -> dict:
        from pipelines import steps

        return steps.register_and_compare(plan, results, features, tracking, lineage)

    @task.short_circuit(ignore_downstream_trigger_rules=False)  # skips only the approval task
    def needs_approval(compared: dict) -> bool:
        from pipelines import steps

        return steps.needs_approval(compared)

    approval = HITLOperator(
        task_id="approval",
        subject="Promote {{ ti.xcom_pull(task_ids='register_and_compare')['registered_model'] }} "
        "v{{ ti.xcom_pull(task_ids='register_and_compare')['version'] }} to @champion?",
        body="{{ ti.xcom_pull(task_ids='register_and_compare')['card'] }}",
        options=["Approve", "Reject"],
        defaults=["Reject"],
        params={"reason": Param(None, type=["null", "string"], title="Why (recorded on the model version)")},
        response_timeout=APPROVAL_TIMEOUT,
    )

    @task(outlets=[Asset(CHAMPION_ASSET_URI)], trigger_rule="none_failed")
    @fail_fast_on_bad_input
    def promote(compared: dict, tracking: dict) -> dict:
        from pipelines import steps

        review = get_current_context()["ti"].xcom_pull(task_ids="approval")  # None when nobody was asked
        decision = steps.promote(compared, tracking, review)
        if not decision["alias_moved"]:
            raise AirflowSkipException(f"{decision['status']}: {decision['reason']}")  # no Asset event
        return decision

    the_plan = plan()
    tracking = open_tracking_run(the_plan)
    ingested = ingest(the_plan)
    cleaned = clean(the_plan, ingested)
    features = build_features(the_plan, ingested, cleaned)
    data_lineage = lineage(ingested, cleaned, features, tracking)
    results = train.partial(plan=the_plan, features=features, tracking=tracking, lineage=data_lineage).expand(
        candidate=list_candidates(the_plan)
    )
    compared = register_and_compare(the_plan, results, features, tracking, data_lineage)
    needs_approval(compared) >> approval >> promote(compared, tracking)


recsys_training()
