"""What a user needs after a run: the MLflow run, the registered versions, the champion."""

from __future__ import annotations

from typing import Any

from pipelines.constants import CHALLENGER_ALIAS, DEFAULT_EXPERIMENT, DEFAULT_REGISTERED_MODEL, SERVING_ALIAS


def registry_summary(registered_model: str = DEFAULT_REGISTERED_MODEL, experiment: str = DEFAULT_EXPERIMENT) -> dict[str, Any]:
    """Latest pipeline run, every version with its aliases and promotion decision, champion metrics."""
    import mlflow

    from pipelines.tracking.runs import TAG_ROLE

    client = mlflow.MlflowClient()
    summary: dict[str, Any] = {"tracking_uri": mlflow.get_tracking_uri(), "registered_model": registered_model}
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        parents = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'parent'", order_by=["attributes.start_time DESC"], max_results=1
        )
        if parents:
            run = parents[0]
            summary["latest_run"] = {
                "run_id": run.info.run_id, "experiment_id": exp.experiment_id, "run_name": run.info.run_name,
                "promotion": run.data.tags.get("promotion.reason"),
            }
    try:
        model = client.get_registered_model(registered_model)
    except mlflow.exceptions.MlflowException:
        summary["versions"] = []
        return summary
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    versions = []
    for mv in sorted(client.search_model_versions(f"name = '{registered_model}'"), key=lambda v: int(v.version)):
        entry = {
            "version": mv.version, "aliases": sorted(aliases.get(str(mv.version), [])), "run_id": mv.run_id,
            "model": mv.tags.get("recsys.model"), "decision": mv.tags.get("promotion.reason"),
        }
        if SERVING_ALIAS in entry["aliases"]:
            metrics = client.get_run(mv.run_id).data.metrics
            entry["metrics"] = {k: round(v, 4) for k, v in sorted(metrics.items()) if k.endswith("_at_10") or k == "fit_seconds"}
        versions.append(entry)
    summary["versions"] = versions
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of :func:`registry_summary`, ending with the next commands."""
    lines = [f"MLflow tracking: {summary['tracking_uri']}"]
    run = summary.get("latest_run")
    if run:
        lines.append(f"Latest pipeline run: {run['run_name']} (run id {run['run_id']}, experiment {run['experiment_id']})")
        if run.get("promotion"):
            lines.append(f"  promotion: {run['promotion']}")
    name = summary["registered_model"]
    if not summary["versions"]:
        lines.append(f"No version of registered model {name!r} yet.")
    for v in summary["versions"]:
        tag = f" @{', @'.join(v['aliases'])}" if v["aliases"] else ""
        lines.append(f"Registered model {name} v{v['version']}{tag}: {v['model']}, run {v['run_id']}")
        if v.get("decision"):
            lines.append(f"  decision: {v['decision']}")
        for key, value in (v.get("metrics") or {}).items():
            lines.append(f"  {key} = {value}")
    lines += [
        "",
        "Next:",
        "  make airflow   # Airflow UI on http://127.0.0.1:8080 (trigger recsys_training with the form)",
        "  make mlflow    # MLflow UI on http://127.0.0.1:5000 (runs, plots, registry)",
        f"  .venv/bin/recsys recommend --model-uri models:/{name}@{SERVING_ALIAS} --users 1 2 3 -k 10",
        f"  (a version that did not beat the champion is kept as @{CHALLENGER_ALIAS})",
    ]
    return "\n".join(lines)
