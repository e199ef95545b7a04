"""Why a training run started, and what it trains on when new data started it.

A run of ``recsys_training`` starts from the form or the REST API (``manual``), from its cron
(``scheduled``), or from an Asset event (``asset_triggered``): new interactions (the
interactions Asset, see :mod:`pipelines.data.landing`) or a retrain request of the monitoring
DAG (the retrain Asset, whose event's ``extra["conf"]`` holds the run's parameters: the data,
a held-out split of the newest interactions and ``trigger_reason``). :func:`resolve_trigger` turns that into the
parameters the run validates and a record of why it started, which the plan carries and the
parent MLflow run gets as tags (:func:`trigger_tags`).

An Asset-triggered run has no conf: it trains on the data the events name. An event's ``extra``
may carry ``source`` and ``path`` (and ``sql_conn_id``/``sql_table``/``sql_query``), as
``recsys_ingest_events`` writes; an event from the Asset watcher (a file landed, ``extra`` =
``{"from_trigger": true, ...}``) means the landing folder of the run's lake. The newest event
that names a source wins; every event is listed in the record.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from pipelines.constants import INTERACTIONS_ASSET_URI, RETRAIN_ASSET_URI

#: Keys of an asset event's ``extra`` that may set the run's source (all are form parameters).
SOURCE_KEYS = ("source", "path", "sql_conn_id", "sql_table", "sql_query")
TAG_REASON = "trigger_reason"
TAG_KIND = "trigger_kind"
TAG_EVENTS = "trigger_events"
MAX_REASON = 500  # characters kept (an MLflow tag holds 5000; a reason is one sentence)


def _event_summary(event: Mapping[str, Any]) -> dict[str, Any]:
    extra = dict(event.get("extra") or {})
    summary = {key: event.get(key) for key in ("uri", "source_dag_id", "source_run_id", "timestamp")}
    summary.update({key: extra[key] for key in (*SOURCE_KEYS, "rows", "file", "reason") if key in extra})
    if extra.get("from_trigger"):
        summary["from_watcher"] = True
    return summary


def _source_of(event: Mapping[str, Any], lake_root: str | None) -> dict[str, Any]:
    """The form parameters an event sets (empty when it names no source)."""
    from pipelines.data.landing import landing_folder

    extra = dict(event.get("extra") or {})
    payload = extra.get("payload") if isinstance(extra.get("payload"), Mapping) else {}
    named = {key: value for key, value in {**payload, **extra}.items() if key in SOURCE_KEYS and value is not None}
    if named.get("source"):
        return named
    if extra.get("from_trigger"):  # the watcher of the landing folder: a file landed there
        return {"source": "parquet", "path": str(landing_folder(lake_root))}
    return {}


def resolve_trigger(
    params: Mapping[str, Any],
    run_type: str,
    asset_events: Sequence[Mapping[str, Any]] = (),
    lake_root: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters a run trains with, and why it started.

    Args:
        params: the run's parameters (form, REST conf or defaults).
        run_type: Airflow's run type (``manual``, ``scheduled``, ``asset_triggered``, ``backfill``...).
        asset_events: the triggering asset events as plain dicts (``uri``, ``extra``,
            ``source_dag_id``, ``source_run_id``, ``timestamp``), oldest first.
        lake_root: the run's lake (where the landing folder is).

    Returns:
        ``(params, trigger)``: for Asset-triggered runs, ``params`` with the source the newest
        interactions event names, then the newest retrain request's conf on top; ``trigger`` =
        ``{"kind", "reason", "asset_events"}`` (the reason: ``trigger_reason`` when given).

    Raises:
        ConfigError: a retrain request whose ``extra["conf"]`` is not an object.
    """
    params = dict(params)
    run_type = str(run_type or "manual").lower().split(".")[-1]  # DagRunType.MANUAL -> manual
    interactions = [e for e in asset_events if e.get("uri") == INTERACTIONS_ASSET_URI]
    requests = [e for e in asset_events if e.get("uri") == RETRAIN_ASSET_URI]
    summaries = [_event_summary(e) for e in asset_events]
    if run_type == "asset_triggered":
        for event in reversed(interactions):
            source = _source_of(event, lake_root)
            if source:
                params.update(source)
                break
        if requests:  # a monitoring decision names the data and the split: it wins over a landing
            conf = (requests[-1].get("extra") or {}).get("conf") or {}
            if not isinstance(conf, Mapping):
                from pipelines.errors import ConfigError

                raise ConfigError(f"the retrain request's extra.conf must be an object of training parameters, got {conf!r}")
            params.update(conf)
    reason = (params.get("trigger_reason") or "").strip()
    if not reason and requests:
        reason = "retrain requested by " + ", ".join(sorted({str(e.get("source_dag_id")) for e in requests}))
    if not reason:
        reason = _default_reason(run_type, interactions, params)
    return params, {"kind": run_type, "reason": reason[:MAX_REASON], "asset_events": summaries}


def _default_reason(run_type: str, interactions: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    if run_type == "asset_triggered":
        if not interactions:
            return "asset event (not of the interactions Asset)"
        rows = [int(e["extra"]["rows"]) for e in interactions if isinstance((e.get("extra") or {}).get("rows"), int)]
        producers = sorted({e.get("source_dag_id") or ("file landed" if (e.get("extra") or {}).get("from_trigger")
                                                       else "REST API") for e in interactions})
        counted = f", {sum(rows)} new rows" if rows else ""
        return (f"new interactions: {len(interactions)} event(s) of {INTERACTIONS_ASSET_URI} from "
                f"{', '.join(producers)}{counted}; training on {params.get('source')}:{params.get('path')}")
    if run_type == "scheduled":
        return "schedule (the cron fallback of the interactions Asset)"
    return f"{run_type} trigger"


def trigger_tags(trigger: Mapping[str, Any] | None) -> dict[str, str]:
    """The MLflow tags of the parent run that record why it started (empty without a record)."""
    if not trigger:
        return {}
    tags = {TAG_REASON: str(trigger["reason"]), TAG_KIND: str(trigger["kind"])}
    if trigger.get("asset_events"):
        tags[TAG_EVENTS] = json.dumps(trigger["asset_events"], default=str)[:5000]
    return tags


def asset_event_dicts(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """Airflow's ``triggering_asset_events`` (asset -> events) as plain dicts, oldest first, each once."""
    seen: dict[tuple, dict[str, Any]] = {}
    for events in (triggering_asset_events or {}).values():
        for event in events:
            stamp = getattr(event, "timestamp", None)
            item = {
                "uri": getattr(getattr(event, "asset", None), "uri", None),
                "extra": dict(getattr(event, "extra", None) or {}),
                "source_dag_id": getattr(event, "source_dag_id", None),
                "source_run_id": getattr(event, "source_run_id", None),
                "timestamp": stamp.isoformat() if hasattr(stamp, "isoformat") else stamp,
            }
            seen.setdefault((item["uri"], item["timestamp"], item["source_run_id"]), item)
    return sorted(seen.values(), key=lambda e: str(e["timestamp"] or ""))
