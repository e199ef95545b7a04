"""The pipeline's steps as the DAG tasks call them: plain dicts in, small dicts out.

Each function is one task's whole body. A ``plan`` (from :func:`plan`) carries the run key,
where the run keeps its state (lake, MLflow tracking URI and artifact root, all resolved once,
absolute) and every step's validated config, so every task of a run agrees on them and
nothing but URIs, counts and metrics travels through XCom.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from pipelines.timing import log_step_timings, timed_step


def plan(
    params: Mapping[str, Any],
    run_id: str,
    lake_root: str | None = None,
    tracking_uri: str | None = None,
    artifact_root: str | None = None,
    run_type: str = "manual",
    asset_events: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Validate the run's parameters into step configs and fix where the run keeps its state.

    The lake, tracking URI and artifact root default to the platform's (``RECSYS_HOME``,
    ``MLFLOW_TRACKING_URI``, ``RECSYS_ARTIFACT_ROOT``) as resolved here, in the first task;
    later tasks read them from the plan, never from their own environment or working
    directory. A run started by new interactions (``run_type`` ``asset_triggered`` and its
    ``asset_events`` as plain dicts) trains on the data they name; ``trigger`` records why the
    run started (:func:`pipelines.training.trigger.resolve_trigger`). Fails the run before any
    work starts.
    """
    from pipelines.paths import lake, run_key
    from pipelines.pipeline import from_params
    from pipelines.tracking.setup import default_artifact_root, default_tracking_uri
    from pipelines.training.trigger import resolve_trigger

    lake_root = str(lake_root or lake())
    params, trigger = resolve_trigger(params, run_type, asset_events, lake_root)
    config = from_params(params)
    tracking_uri = tracking_uri or default_tracking_uri()
    return {
        "run_key": run_key(run_id),
        "lake": lake_root,
        "tracking_uri": tracking_uri,
        "artifact_root": artifact_root or default_artifact_root(tracking_uri),  # None: the server decides
        "config": config.model_dump(mode="json"),
        "trigger": trigger,
    }


def _config(plan: Mapping[str, Any]):
    from pipelines.pipeline import PipelineConfig

    return PipelineConfig.model_validate(plan["config"])


def _use_plan_tracking(plan: Mapping[str, Any]) -> None:
    """Point this task process's MLflow at the run's store (tuning and promotion build clients too)."""
    from pipelines.tracking.setup import use_tracking_uri

    use_tracking_uri(plan["tracking_uri"])


def open_run(plan: Mapping[str, Any]) -> dict[str, str]:
    """Create (or reuse, on retry) the run's MLflow parent run in the plan's store, tagged with why it started."""
    from pipelines.pipeline import open_tracking
    from pipelines.training.trigger import trigger_tags

    return open_tracking(_config(plan), plan["run_key"], plan["tracking_uri"], plan["artifact_root"],
                         tags=trigger_tags(plan.get("trigger")))


def ingest(plan: Mapping[str, Any]) -> dict[str, Any]:
    """Read the source into the run's immutable snapshot."""
    from pipelines.compute.dask_cluster import dask_client
    from pipelines.data.ingest import run_ingest

    config = _config(plan)
    timings: dict[str, Any] = {}
    with timed_step("ingest", timings), dask_client(config.dask):
        result = run_ingest(config.ingest, plan["lake"], plan["run_key"])
    return {**result, "timings": timings}


def clean(plan: Mapping[str, Any], ingested: Mapping[str, Any]) -> dict[str, Any]:
    """Clean the snapshot; quarantined rows keep their reason."""
    from pipelines.cleaning.run import run_cleaning
    from pipelines.compute.dask_cluster import dask_client

    config = _config(plan)
    timings: dict[str, Any] = {}
    with timed_step("clean", timings), dask_client(config.dask):
        result = run_cleaning(config.cleaning, ingested["snapshot_uri"], plan["lake"], plan["run_key"])
    return {**result, "timings": timings}


def build_features(plan: Mapping[str, Any], ingested: Mapping[str, Any], cleaned: Mapping[str, Any]) -> dict[str, Any]:
    """Encode ids, split, build matrices and content features."""
    from pipelines.compute.dask_cluster import dask_client
    from pipelines.features.run import run_features

    config = _config(plan)
    timings: dict[str, Any] = {}
    with timed_step("features", timings), dask_client(config.dask):
        result = run_features(config.features, cleaned["clean_uri"], ingested.get("items_uri"), plan["lake"], plan["run_key"])
    # Upstream timings ride along so the register task can put every step on the parent run.
    return {**result, "timings": {**ingested.get("timings", {}), **cleaned.get("timings", {}), **timings}}


def candidates(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One train config per candidate model (the DAG maps the train task over these)."""
    return [dict(c) for c in plan["config"]["candidates"]]


def lineage(
    ingested: Mapping[str, Any],
    cleaned: Mapping[str, Any],
    features: Mapping[str, Any] | None = None,
    tracking: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Snapshot hash and where every row went, recorded on every run (metrics of the parent run)."""
    from pipelines.pipeline import lineage_of, log_row_accounting

    out = lineage_of(ingested, cleaned, features)
    if tracking:
        log_row_accounting(tracking, out)
    return out


def train(
    plan: Mapping[str, Any],
    candidate: Mapping[str, Any],
    features: Mapping[str, Any],
    tracking: Mapping[str, str] | None,
    lineage: Mapping[str, Any],
) -> dict[str, Any]:
    """Tune (when asked and the family has a search space), then fit, evaluate and log one candidate."""
    from pipelines.pipeline import train_candidate

    _use_plan_tracking(plan)
    return train_candidate(_config(plan), candidate, features["features_uri"], plan["lake"], plan["run_key"],
                           tracking, lineage)


def register_and_compare(
    plan: Mapping[str, Any],
    results: list[Mapping[str, Any]],
    features: Mapping[str, Any],
    tracking: Mapping[str, str],
    lineage: Mapping[str, Any],
) -> dict[str, Any]:
    """Register the best candidate with its model card and compare it with the champion; moves nothing."""
    from pipelines.training.promote import run_register_and_compare

    _use_plan_tracking(plan)
    timings: dict[str, Any] = dict(features.get("timings", {}))
    for result in results:
        timings.update(result.get("timings", {}))
    with timed_step("register", timings):
        compared = run_register_and_compare(
            list(results), plan["config"]["promotion"], features["features_uri"], plan["run_key"], tracking, lineage
        )
    log_step_timings(tracking, timings)
    return {**compared, "timings": timings}


def needs_approval(compared: Mapping[str, Any]) -> bool:
    """Whether a person must approve before the serving alias moves (the approval task runs only then)."""
    return bool(compared["requires_approval"])


def promote(compared: Mapping[str, Any], tracking: Mapping[str, str], review: Mapping[str, Any] | None) -> dict[str, Any]:
    """Move the serving alias (compare-and-set) or keep the candidate as challenger; ``review`` is the approval's answer."""
    from pipelines.training.promote import run_promotion

    return run_promotion(compared, tracking, review)


def rollback(registered_model: str, by: str, reason: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """Move the serving alias back to the previous champion, recording who and why."""
    from pipelines.tracking.rollback import rollback_champion

    return rollback_champion(registered_model, by=by, reason=reason, tracking_uri=tracking_uri).model_dump()
