"""The monitoring check: one function for the DAG task and ``recsys monitor``.

:func:`monitor` finds the version behind ``registered_model@alias`` (the champion), its training
snapshot (the clean partition its features were built from, found through the lineage its bundle
and its MLflow run record), reads the current interactions through the platform's own ingest and
cleaning (so bad rows are quarantined, not counted as drift), computes every measure
(:mod:`~pipelines.monitoring.drift`, :mod:`~pipelines.monitoring.quality`,
:mod:`~pipelines.monitoring.health`), judges them against the thresholds and logs the check to
MLflow (:mod:`~pipelines.monitoring.report`).

It returns a JSON-serialisable dict with exactly these keys::

    mlflow_run_id     str: the check's run in the monitoring experiment
    experiment        str: that experiment's name ("monitoring")
    run_key           str: the check's key (lake partitions monitor-<run_key>, MLflow tag recsys.run_key)
    checked_at        str: ISO-8601 UTC time of the check (the window's end)
    champion          {"name", "alias", "version", "run_id", "registered_at", "age_days",
                       "snapshot": {"uri", "sha256", "clean_uris", "features_uri", "rows"}}
                      or None when no version holds the alias
    data_source       str: the current interactions' source (no secrets)
    window            {"start", "end", "lookback_hours"}: the events and request-log window (ISO-8601 UTC)
    measures          {name: float or None}: every measure (None = could not be measured)
    groups            {group title: [measure names]}: how the report groups them
    thresholds        {threshold name: value or None}: the thresholds in force
    breaches          [{"measure", "value", "threshold", "threshold_name", "op" ("max"|"min"),
                        "action" ("retrain"|"alert"), "message"}]
    unjudged          [{"measure", "threshold_name", "why"}]: set thresholds not applied (too little evidence)
    retrain           bool: a breach asks for retraining, or there is no champion
    alert             bool: a breach asks for a person (feed volume, errors, latency)
    reason            str: the breaches in one sentence ("retrain: a 0.3 > 0.2; ... alert: ..."),
                      "no champion: ..." without one, "" when nothing is breached
    new_interactions  int: current rows not in the champion's snapshot
    partitions        {"raw", "clean"}: where the current interactions were ingested and cleaned
                      (None without a champion)

Re-running with the same ``run_key`` rewrites the same partitions and replaces the same MLflow run.
Memory: the snapshot and the current interactions are held as pandas frames (ids as Arrow strings).
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from pipelines.errors import ConfigError, DataError
from pipelines.monitoring.config import MonitoringConfig, Thresholds

log = logging.getLogger(__name__)

RESULT_KEYS = ("mlflow_run_id", "experiment", "run_key", "checked_at", "champion", "data_source", "window",
               "measures", "groups", "thresholds", "breaches", "unjudged", "retrain", "alert", "reason",
               "new_interactions", "partitions")
PARTITION_PREFIX = "monitor-"
_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def monitor(config: MonitoringConfig | Mapping[str, Any] | None = None, run_key: str | None = None) -> dict[str, Any]:
    """Check the serving champion against the current data and service logs; log and return the result.

    ``config``: a :class:`MonitoringConfig` or a dict of its fields. ``run_key``: the check's key
    (the DAG's run id; default ``cli-<time>-<random>``). See the module docstring for the result.

    Raises:
        ConfigError: an invalid config, or no usable source for the current interactions.
        DataError: the champion's snapshot is gone from the lake, or the current data is unusable.
    """
    from pipelines.data.config import validate_config
    from pipelines.paths import run_key as safe_key
    from pipelines.serving.registry import alias_version
    from pipelines.tracking.setup import default_tracking_uri, use_tracking_uri

    config = validate_config(MonitoringConfig, config, "monitoring")
    key = safe_key(run_key or f"{time.strftime('cli-%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}")
    tracking_uri = use_tracking_uri(config.tracking_uri or default_tracking_uri())
    config = config.model_copy(update={"tracking_uri": tracking_uri})
    end = config.window_end or datetime.now(timezone.utc).replace(microsecond=0)
    start = end - timedelta(hours=config.lookback_hours)
    client = _client(tracking_uri)
    version = alias_version(client, config.registered_model, config.alias)
    base: dict[str, Any] = {
        "run_key": key, "checked_at": end.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat(), "lookback_hours": config.lookback_hours},
        "thresholds": config.thresholds.model_dump(),
    }
    if version is None:
        return _without_champion(config, key, base, start, end)

    champion = champion_info(client, config.registered_model, config.alias, version, end)
    bundle, snapshot_frame, min_rating = _load_champion(tracking_uri, champion)
    data = config.data or training_source(champion["snapshot"]["uri"])
    current, partitions = read_current(data, config, key)
    log.info("monitoring %s v%s: snapshot %d rows, current %d rows", config.registered_model, version,
             len(snapshot_frame), len(current))

    from pipelines.monitoring.decision import judge
    from pipelines.monitoring.drift import clean_measures, drift_measures
    from pipelines.monitoring.health import health_measures, latencies, read_request_log
    from pipelines.monitoring.quality import event_measures, live_ranking_metrics, read_events, recorded_metric

    drift = drift_measures(snapshot_frame, current, seed=config.seed)
    fresh = current.loc[drift.new_mask]
    relevant = fresh if min_rating is None else fresh.loc[fresh["rating"] >= min_rating]
    live = live_ranking_metrics(bundle, snapshot_frame, relevant, config.k)
    recorded = recorded_metric(client, champion["run_id"], "ndcg", config.k)
    live["recorded_ndcg"] = recorded
    live["live_quality_ratio"] = (live["live_ndcg"] / recorded
                                  if live["live_ndcg"] is not None and recorded else None)
    engine = _engine(config.database_url)
    served = event_measures(read_events(engine, start, end), fresh, version)
    requests = read_request_log(engine, start, end)
    health = health_measures(requests)
    groups_of = {"data drift": drift.measures, "live quality": live, "served recommendations": served,
                 "service health": health, "champion": {"champion_age_days": champion["age_days"]}}
    measures = clean_measures({name: value for group in groups_of.values() for name, value in group.items()})
    judgement = judge(measures, config.thresholds)
    result = {
        **base, "champion": champion, "data_source": data.describe(), "measures": measures,
        "groups": {title: list(group) for title, group in groups_of.items()}, **judgement,
        "new_interactions": int(drift.new_mask.sum()), "partitions": partitions,
    }
    result = _logged(config, key, result, drift, latencies(requests))
    engine.dispose()
    return result


def _without_champion(config: MonitoringConfig, key: str, base: dict[str, Any], start: datetime,
                      end: datetime) -> dict[str, Any]:
    """The result when nothing holds the alias: retrain, with the service's health still measured."""
    from pipelines.monitoring.decision import judge
    from pipelines.monitoring.drift import clean_measures
    from pipelines.monitoring.health import health_measures, latencies, read_request_log

    engine = _engine(config.database_url)
    requests = read_request_log(engine, start, end)
    engine.dispose()
    measures = clean_measures(health_measures(requests))
    judgement = judge(measures, config.thresholds)
    reason = f"no champion: {config.registered_model}@{config.alias} does not exist"
    result = {
        **base, "champion": None, "data_source": config.data.describe() if config.data else "",
        "measures": measures, "groups": {"service health": list(measures)}, **judgement,
        "retrain": True, "reason": reason + (f". {judgement['reason']}" if judgement["reason"] else ""),
        "new_interactions": 0, "partitions": None,
    }
    return _logged(config, key, result, None, latencies(requests))


def _logged(config: MonitoringConfig, key: str, result: dict[str, Any], drift: Any, latency: Any) -> dict[str, Any]:
    from pipelines.monitoring.report import log_monitoring_run

    run_id, experiment = log_monitoring_run(config, key, result, drift, latency)
    out = {"mlflow_run_id": run_id, "experiment": experiment, **result}
    log.info("monitoring %s: retrain=%s alert=%s %s", key, out["retrain"], out["alert"], out["reason"])
    return {name: out[name] for name in RESULT_KEYS}


def _client(tracking_uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)


def _engine(url: str | None) -> Any:
    from pipelines.serving.tables import make_engine

    return make_engine(url)


# -- the champion and its snapshot -------------------------------------------------------------


def champion_info(client: Any, name: str, alias: str, version: str, now: datetime) -> dict[str, Any]:
    """Name, version, run, registration time, age and training snapshot of ``name`` v``version``.

    The snapshot comes from the version's ``lineage.*`` tags (written at registration) and the
    run's ``features_uri`` tag; :func:`_load_champion` completes it from the bundle.
    """
    mv = client.get_model_version(name, version)
    tags = dict(mv.tags or {})
    features_uri = None
    if mv.run_id:
        features_uri = client.get_run(mv.run_id).data.tags.get("features_uri") or None
    registered = datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, tz=timezone.utc)
    rows = tags.get("lineage.rows_clean")
    return {
        "name": name, "alias": alias, "version": str(version), "run_id": mv.run_id,
        "registered_at": registered.replace(microsecond=0).isoformat(),
        "age_days": max(0.0, (now - registered).total_seconds() / 86_400),
        "snapshot": {"uri": tags.get("lineage.snapshot_uri"), "sha256": tags.get("lineage.snapshot_sha256"),
                     "clean_uris": [], "features_uri": features_uri, "rows": int(rows) if rows else None},
    }


def _load_champion(tracking_uri: str, champion: dict[str, Any]) -> tuple[Any, Any, float | None]:
    """(bundle, snapshot frame, the features' min_rating) of the champion; fills ``champion["snapshot"]``."""
    from pipelines.serving.registry import load_version

    bundle = load_version(tracking_uri, champion["name"], champion["version"])
    snapshot = champion["snapshot"]
    info = bundle.info or {}
    lineage = info.get("lineage") or {}
    snapshot["uri"] = snapshot["uri"] or lineage.get("snapshot_uri")
    snapshot["sha256"] = snapshot["sha256"] or lineage.get("snapshot_sha256")
    snapshot["features_uri"] = snapshot["features_uri"] or info.get("features_uri")
    clean_uris, min_rating = snapshot_partitions(snapshot["features_uri"], snapshot["uri"])
    snapshot["clean_uris"] = [str(uri) for uri in clean_uris]
    frame = read_interactions(clean_uris, f"the training snapshot of {champion['name']} v{champion['version']}")
    snapshot["rows"] = int(len(frame))
    return bundle, frame, min_rating


def snapshot_partitions(features_uri: str | None, snapshot_uri: str | None) -> tuple[list[Path], float | None]:
    """The clean partitions the champion's features were built from, and their ``min_rating``.

    Read from the features partition's manifest (``inputs.clean_uri`` and, for a split made
    elsewhere, ``inputs.test_clean_uri``); without it, ``clean/<key>`` beside the raw snapshot
    ``raw/<key>/interactions``. Raises DataError naming what was looked for.
    """
    import json

    looked = []
    if features_uri:
        manifest = Path(features_uri) / "manifest.json"
        looked.append(str(manifest))
        if manifest.is_file():
            content = json.loads(manifest.read_text())
            inputs = content.get("inputs") or {}
            uris = [Path(inputs[k]) for k in ("clean_uri", "test_clean_uri") if inputs.get(k)]
            if uris and all(uri.exists() for uri in uris):
                return uris, (content.get("config") or {}).get("min_rating")
            looked.extend(str(uri) for uri in uris)
    if snapshot_uri:
        raw = Path(snapshot_uri)
        raw = raw.parent if raw.name == "interactions" else raw
        clean = raw.parent.parent / "clean" / raw.name / "interactions"
        looked.append(str(clean))
        if clean.is_dir():
            return [clean], None
    raise DataError("the champion's training snapshot is not in the lake any more (looked for "
                    + ", ".join(looked or ["no lineage recorded on the version"])
                    + "); drift cannot be measured against it: retrain, or restore the lake")


def read_interactions(folders: list[Path], what: str) -> Any:
    """The clean interactions in ``folders`` (Parquet files) as one pandas frame."""
    import pandas as pd

    from pipelines.features.run import interaction_files

    files = [path for folder in folders for path in interaction_files(folder)]
    frames = [pd.read_parquet(path, columns=_COLUMNS) for path in files]
    if not frames:
        raise DataError(f"{what}: no interaction files in {', '.join(map(str, folders))}")
    frame = pd.concat(frames, ignore_index=True)
    frame["user_id"], frame["item_id"] = frame["user_id"].astype(str), frame["item_id"].astype(str)
    return frame


def training_source(snapshot_uri: str | None) -> Any:
    """The champion's own source (its raw snapshot's manifest), to read again for the current data.

    Raises:
        ConfigError: no manifest, or a SQL source given by URL (never stored): name the source then.
    """
    from pipelines.data.config import IngestConfig
    from pipelines.data.snapshot import read_json

    if not snapshot_uri:
        raise ConfigError("data: not given, and the champion records no training snapshot to take its source from; "
                          "give the current data's source")
    raw = Path(snapshot_uri)
    manifest = (raw.parent if raw.name == "interactions" else raw) / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(f"data: not given, and the champion's snapshot manifest {manifest} is gone; "
                          "give the current data's source")
    settings = dict(read_json(manifest).get("config") or {})
    if settings.get("source") == "sql" and settings.get("url"):
        raise ConfigError("data: not given, and the champion read SQL through a URL, which is never stored; "
                          "give the current data's source (an Airflow connection id)")
    return IngestConfig.model_validate(settings)


def read_current(data: Any, config: MonitoringConfig, key: str) -> tuple[Any, dict[str, str]]:
    """Ingest and clean the current interactions into ``raw/`` and ``clean/monitor-<key>``; return
    the clean frame and the two partitions."""
    from pipelines.cleaning.run import run_cleaning
    from pipelines.data.ingest import run_ingest
    from pipelines.paths import lake

    root = str(config.lake or lake())
    partition = f"{PARTITION_PREFIX}{key}"
    ingested = run_ingest(data, root, partition)
    cleaned = run_cleaning(config.cleaning, ingested["snapshot_uri"], root, partition)
    frame = read_interactions([Path(cleaned["clean_uri"])], f"the current interactions ({data.describe()})")
    return frame, {"raw": ingested["snapshot_uri"], "clean": cleaned["clean_uri"]}


__all__ = ["monitor", "RESULT_KEYS", "Thresholds"]
