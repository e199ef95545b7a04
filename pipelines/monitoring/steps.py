"""The monitoring DAG's tasks as plain functions: plain dicts in, small JSON-able dicts out.

``check`` runs one monitoring check (:func:`pipelines.monitoring.run.monitor`) and sends an
alert per threshold crossed; ``request_retrain`` turns a check that asks for retraining into the
conf of a ``recsys_training`` run (:mod:`pipelines.monitoring.retrain`), written on the check's
MLflow run; the DAG emits it as the retrain Asset's event, which starts that run.
"""

from __future__ import annotations

from typing import Any, Mapping

#: The monitoring DAG's own parameters besides the check's (:func:`pipelines.monitoring.config.param_specs`).
RETRAIN_SECTION = "Retrain and alerts"


def param_specs() -> dict[str, dict[str, Any]]:
    """The monitoring form: the check's parameters, then how a retrain is set up and where alerts go."""
    from pipelines.monitoring.config import param_specs as check_specs

    specs = dict(check_specs())
    specs.update({
        "retrain": {
            "default": True, "type": "boolean", "title": "Start a training run when the check asks for one",
            "section": RETRAIN_SECTION,
            "description": "Off: the check only reports and alerts.",
        },
        "retrain_params": {
            "default": {}, "type": "object", "title": "Training parameters of that run", "section": RETRAIN_SECTION,
            "description": "Any parameter of the recsys_training form (models, model_params, k...), e.g. "
                           '`{"models": ["als"], "model_params": {"als": {"factors": 32}}}`. The data source, the '
                           "held-out split and trigger_reason are set from the check unless given here.",
        },
        "holdout_fraction": {
            "default": 0.25, "type": "number", "exclusiveMinimum": 0.0, "exclusiveMaximum": 1.0,
            "title": "Share of the new interactions held out", "section": RETRAIN_SECTION,
            "description": "The newest share of the interactions since the champion's snapshot: the candidate and "
                           "the champion are compared on them.",
        },
        "alert_sinks": {
            "default": None, "type": ["null", "string"], "title": "Alert sinks", "section": RETRAIN_SECTION,
            "description": "Comma-separated among log, table, webhook. Unset: $RECSYS_ALERT_SINKS, else log,table.",
        },
    })
    return specs


def _split(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from pipelines.monitoring.config import param_specs as check_specs

    known = set(check_specs())
    return ({k: v for k, v in params.items() if k in known}, {k: v for k, v in params.items() if k not in known})


def check(params: Mapping[str, Any], run_id: str, source: str = "recsys_monitoring") -> dict[str, Any]:
    """One monitoring check, its breach alerts sent; returns the check's result with ``alerts``."""
    from pipelines.monitoring.alerts import alert_sinks, breach_alerts, send_alerts
    from pipelines.monitoring.config import from_params
    from pipelines.monitoring.run import monitor
    from pipelines.paths import run_key

    check_params, own = _split(params)
    sinks = alert_sinks(own.get("alert_sinks"))  # a bad sink fails the run before the check's work
    result = monitor(from_params(check_params), run_key=run_key(run_id))
    sent = send_alerts(breach_alerts(result, source, run_id), sinks)
    return {**result, "alerts": sent}


def plan_retrain(result: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The conf of the training run ``result`` asks for (None: none is started)."""
    from pipelines.monitoring.retrain import retrain_conf

    check_params, own = _split(params)
    if not own.get("retrain", True):
        return None
    source = {key: check_params.get(key) for key in ("source", "path", "sql_conn_id", "sql_table", "sql_query")}
    return retrain_conf(
        result, {"holdout_fraction": own.get("holdout_fraction") or 0.25, "params": own.get("retrain_params") or {}},
        data=source if source.get("source") else None,
    )


def request_retrain(result: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The retrain request of a check (None: it asks for none), recorded on the check's MLflow run.

    Returns ``{"conf", "reason", "mlflow_run_id"}``: the monitoring DAG puts it in the retrain
    Asset's event, whose ``conf`` becomes the training run's parameters.
    """
    import json

    conf = plan_retrain(result, params)
    run = result.get("mlflow_run_id")
    if run:
        from pipelines.tracking.promotion import registry_client

        client = registry_client(params.get("tracking_uri"))
        client.set_tag(run, "retrain.requested", str(conf is not None).lower())
        if conf is not None:
            client.set_tag(run, "retrain.reason", conf["trigger_reason"][:4900])
            client.set_tag(run, "retrain.conf", json.dumps(conf, sort_keys=True)[:4900])
    if conf is None:
        return None
    return {"conf": conf, "reason": conf["trigger_reason"], "mlflow_run_id": run}
