"""
### recsys_training

Daily: ingest interactions, clean them (bad rows quarantined with a reason), build features,
train every selected model on the same split, evaluate them on the held-out data, track all of
it in MLflow, register the best and give it the `champion` alias only if it beats the current
champion on this run's held-out data.

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

A value the schema refuses (an unknown family or field, a number out of bounds) is refused by the
form and by the REST API (HTTP 400); the `plan` task validates everything again with the step
configs before any work starts. Each task calls one function of `pipelines.steps`; this file is
wiring only.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from pipelines.params import param_specs
from pipelines.task_failures import fail_fast_on_bad_input


def _schedule() -> str | None:
    """Daily by default; ``RECSYS_TRAINING_SCHEDULE`` overrides it (a cron string, a preset, or 'none')."""
    value = os.environ.get("RECSYS_TRAINING_SCHEDULE", "@daily").strip()
    return None if value.lower() in ("", "none") else value


def _params() -> dict[str, Param]:
    params = {}
    for name, spec in param_specs().items():
        spec = dict(spec)
        params[name] = Param(spec.pop("default"), **spec)
    return params


@dag(
    dag_id="recsys_training",
    schedule=_schedule(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params=_params(),
    tags=["recsys", "training"],
    doc_md=__doc__,
)
def recsys_training():
    @task
    @fail_fast_on_bad_input
    def plan() -> dict:
        from pipelines import steps

        context = get_current_context()
        return steps.plan(context["params"], context["run_id"])

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
    def register_and_promote(plan: dict, results: list, features: dict, tracking: dict, lineage: dict) -> dict:
        from pipelines import steps

        return steps.register_and_promote(plan, results, features, tracking, lineage)

    the_plan = plan()
    tracking = open_tracking_run(the_plan)
    ingested = ingest(the_plan)
    cleaned = clean(the_plan, ingested)
    features = build_features(the_plan, ingested, cleaned)
    data_lineage = lineage(ingested, cleaned, features, tracking)
    results = train.partial(plan=the_plan, features=features, tracking=tracking, lineage=data_lineage).expand(
        candidate=list_candidates(the_plan)
    )
    register_and_promote(the_plan, results, features, tracking, data_lineage)


recsys_training()
