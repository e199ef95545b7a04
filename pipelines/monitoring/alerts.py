"""Alerts: a DAG run that failed, a monitoring threshold crossed, sent to configurable sinks.

Sinks (``$RECSYS_ALERT_SINKS``, comma-separated; default ``log,table``):

- ``log``: one WARNING/ERROR line on the ``recsys.alerts`` logger (the task's or the DAG
  processor's log);
- ``table``: a row of ``recsys_alerts`` in the serving database (``$RECSYS_SERVING_DB``, else
  SQLite in the platform home), beside the events and the request log it is about;
- ``webhook``: the alert as JSON, POSTed to ``$RECSYS_ALERT_WEBHOOK_URL`` (Slack-style
  incoming webhooks, Alertmanager, a pager), with a ``text`` field for chat tools.

Airflow calls :func:`on_dag_failure` (every DAG's ``on_failure_callback``); the monitoring DAG
sends one alert per threshold crossed (:func:`breach_alerts`). A sink that fails is logged and
reported, never raised: an alert must not fail the task or hide the other sinks. Importing this
module is cheap (the DAG files import it).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import ConfigError

log = logging.getLogger("recsys.alerts")

ENV_SINKS = "RECSYS_ALERT_SINKS"
ENV_WEBHOOK = "RECSYS_ALERT_WEBHOOK_URL"
SINKS = ("log", "table", "webhook")
DEFAULT_SINKS = ("log", "table")
TABLE = "recsys_alerts"
WEBHOOK_TIMEOUT = 10.0  # seconds; a slow receiver must not hold a callback for long


class Alert(BaseModel):
    """One alert, as every sink receives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["dag_failed", "threshold_breached"]
    severity: Literal["warning", "error"] = "warning"
    source: str = Field(min_length=1, description="the DAG (or process) that raised it")
    run_id: str | None = None
    message: str = Field(min_length=1)
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


def alert_sinks(value: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The sinks to use: ``value`` (a list or a comma-separated string), else ``$RECSYS_ALERT_SINKS``, else log,table.

    Raises:
        ConfigError: an unknown sink, or ``webhook`` without ``$RECSYS_ALERT_WEBHOOK_URL``.
    """
    raw = value if value is not None else os.environ.get(ENV_SINKS)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_SINKS
    names = [part.strip().lower() for part in (raw.split(",") if isinstance(raw, str) else raw) if part.strip()]
    unknown = [name for name in names if name not in SINKS]
    if unknown:
        raise ConfigError(f"alert sink(s) {unknown} unknown (from {ENV_SINKS if value is None else 'the sinks given'}); "
                          f"choose among {', '.join(SINKS)}")
    if "webhook" in names and not os.environ.get(ENV_WEBHOOK):
        raise ConfigError(f"alert sink 'webhook' needs the URL in ${ENV_WEBHOOK}")
    return tuple(dict.fromkeys(names))


def alerts_table():
    """The ``recsys_alerts`` table, on the serving database's metadata (created with the others)."""
    import sqlalchemy as sa

    from pipelines.serving.tables import ID, metadata

    if TABLE in metadata.tables:
        return metadata.tables[TABLE]
    return sa.Table(
        TABLE, metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("source", sa.String(ID), nullable=False),
        sa.Column("run_id", sa.String(ID)),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),  # JSON
    )


def _to_table(alerts: Sequence[Alert], database_url: str | None) -> None:
    from pipelines.serving.tables import make_engine

    table = alerts_table()
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(table.insert(), [
                {"at": a.at, "kind": a.kind, "severity": a.severity, "source": a.source[:256],
                 "run_id": a.run_id and a.run_id[:256], "message": a.message,
                 "details": json.dumps(a.details, default=str, sort_keys=True)}
                for a in alerts
            ])
    finally:
        engine.dispose()


def _to_webhook(alerts: Sequence[Alert], url: str) -> None:
    import urllib.request

    for alert in alerts:
        body = {**alert.model_dump(mode="json"), "text": f"[{alert.severity}] {alert.source}: {alert.message}"}
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as answer:  # noqa: S310 - an operator's URL
            if answer.status >= 300:
                raise OSError(f"webhook answered HTTP {answer.status}")


def send_alerts(
    alerts: Sequence[Alert], sinks: str | Sequence[str] | None = None, database_url: str | None = None,
) -> dict[str, Any]:
    """Send ``alerts`` to every sink; returns ``{"alerts": n, "sent": [sinks], "failed": {sink: error}}``.

    Raises only ConfigError for sinks that are misconfigured (see :func:`alert_sinks`); a sink
    that fails while sending is logged and listed under ``failed``.
    """
    chosen = alert_sinks(sinks)
    out: dict[str, Any] = {"alerts": len(alerts), "sent": [], "failed": {}}
    if not alerts:
        return out
    for sink in chosen:
        try:
            if sink == "log":
                for alert in alerts:
                    level = logging.ERROR if alert.severity == "error" else logging.WARNING
                    log.log(level, "ALERT %s %s run=%s: %s", alert.kind, alert.source, alert.run_id, alert.message)
            elif sink == "table":
                _to_table(alerts, database_url)
            elif sink == "webhook":
                _to_webhook(alerts, os.environ[ENV_WEBHOOK])
            out["sent"].append(sink)
        except Exception as exc:  # noqa: BLE001 - one sink's failure must not stop the others
            log.error("alert sink %s failed: %s: %s", sink, type(exc).__name__, exc)
            out["failed"][sink] = f"{type(exc).__name__}: {exc}"
    return out


def failure_alert(context: Mapping[str, Any]) -> Alert:
    """The alert for a failed DAG run, from Airflow's callback context (DAG, run, failed task, reason)."""
    run = context.get("dag_run")
    dag_id = getattr(run, "dag_id", None) or getattr(context.get("dag"), "dag_id", None) or "unknown DAG"
    run_id = getattr(run, "run_id", None) or context.get("run_id")
    ti = context.get("ti") or context.get("task_instance")
    task = getattr(ti, "task_id", None)
    reason = context.get("reason") or context.get("exception") or "failed"
    message = f"{dag_id} run {run_id} failed" + (f" at task {task}" if task else "") + f": {reason}"
    details = {"dag_id": dag_id, "run_id": run_id, "task_id": task, "run_type": str(getattr(run, "run_type", "") or ""),
               "reason": str(reason)}
    return Alert(kind="dag_failed", severity="error", source=dag_id, run_id=run_id, message=message[:2000],
                 details=details)


def on_dag_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every DAG: send the failure alert to the configured sinks; never raises."""
    try:
        send_alerts([failure_alert(context)])
    except Exception:  # noqa: BLE001 - a callback that raises only hides the failure it reports
        log.exception("could not send the failure alert")


def breach_alerts(result: Mapping[str, Any], source: str, run_id: str | None = None) -> list[Alert]:
    """One alert per threshold the monitoring check crossed (``result["breaches"]``).

    A breach that asks for retraining is noted in the message (the monitoring DAG starts that run).
    """
    champion = result.get("champion") or {}
    alerts = []
    for breach in result.get("breaches") or []:
        message = breach.get("message") or f"{breach.get('measure')} = {breach.get('value')} crossed {breach.get('threshold')}"
        alerts.append(Alert(
            kind="threshold_breached", severity="warning", source=source, run_id=run_id, message=str(message)[:2000],
            details={**{k: breach.get(k) for k in ("measure", "value", "threshold", "action")},
                     "retrain": bool(result.get("retrain")), "champion_version": champion.get("version"),
                     "mlflow_run_id": result.get("mlflow_run_id")},
        ))
    return alerts
