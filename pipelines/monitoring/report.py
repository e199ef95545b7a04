"""One MLflow run per monitoring check, in the ``monitoring`` experiment.

Every measure is a metric of the run (so the MLflow UI plots each across checks), the champion,
its snapshot and the window are params and tags, and the artifacts are one PNG per measure group
(``plots/popularity.png``, ``plots/distributions.png``, ``plots/latency.png``,
``plots/history.png``: key measures over the previous checks of the same model), ``report.html``
(self-contained: the numbers, their thresholds, breaches, and the plots inline) and
``result.json`` (what :func:`pipelines.monitoring.run.monitor` returns).

The run is found again by its run key: a retried check replaces its run instead of adding one.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pipelines.monitoring.config import RULES, MonitoringConfig
from pipelines.tracking.runs import TAG_ROLE, TAG_RUN_KEY, flatten

ROLE = "monitoring"
TAG_MODEL, TAG_VERSION = "monitoring.registered_model", "monitoring.champion_version"
PLOTS = "plots"
#: Measures drawn in ``plots/history.png`` (the ones a person follows over weeks).
HISTORY_MEASURES = ("new_interactions_ratio", "new_user_share", "new_item_share", "popularity_js_excess",
                    "live_quality_ratio", "error_rate")


def _pyplot():
    from pipelines.tracking.plots import _pyplot as pyplot

    return pyplot()


def plot_popularity(popularity, path: Path, top: int = 25) -> Path:
    """Top items' shares, snapshot vs new, and the cumulative share by popularity rank of each side."""
    plt = _pyplot()
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(12, 4.5))
    if len(popularity):
        snap = popularity["snapshot"].to_numpy(np.float64)
        new = popularity["new"].to_numpy(np.float64)
        shares = np.vstack([snap / max(snap.sum(), 1), new / max(new.sum(), 1)])
        order = np.argsort(-(shares[0] + shares[1]), kind="stable")[:top]
        x = np.arange(len(order))
        bars.bar(x - 0.2, shares[0, order], 0.4, label="snapshot")
        bars.bar(x + 0.2, shares[1, order], 0.4, label="new")
        bars.set_xticks(x, popularity["item_id"].to_numpy()[order].astype(str), rotation=90, fontsize=7)
        bars.legend()
        for row, label in ((0, "snapshot"), (1, "new")):
            ranked = np.sort(shares[row])[::-1]
            ranked = ranked[ranked > 0]
            curve.plot(np.arange(1, len(ranked) + 1), np.cumsum(ranked), label=label)
        curve.set_xscale("log")
        curve.legend()
    else:
        bars.text(0.5, 0.5, "no new interactions", ha="center", va="center")
    bars.set_title(f"item share of interactions (top {top})")
    curve.set_title("cumulative share by popularity rank")
    curve.set_xlabel("item rank")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_distributions(drift, path: Path) -> Path:
    """Ratings, hour of day and day of week: snapshot vs new shares."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ratings = drift.ratings if drift is not None else None
    if ratings is not None and len(ratings):
        labels = ["other" if np.isnan(v) else f"{v:g}" for v in ratings["value"]]
        x = np.arange(len(labels))
        axes[0].bar(x - 0.2, ratings["snapshot"], 0.4, label="snapshot")
        axes[0].bar(x + 0.2, ratings["new"], 0.4, label="new")
        axes[0].set_xticks(x, labels, rotation=45)
        axes[0].legend()
    axes[0].set_title("ratings")
    for ax, shares, title, ticks in ((axes[1], None if drift is None else drift.hours, "hour of day (UTC)", None),
                                     (axes[2], None if drift is None else drift.weekdays, "day of week",
                                      ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])):
        if shares is not None and shares.sum() > 0:
            x = np.arange(shares.shape[1])
            ax.bar(x - 0.2, shares[0], 0.4, label="snapshot")
            ax.bar(x + 0.2, shares[1], 0.4, label="new")
            if ticks:
                ax.set_xticks(x, ticks)
            ax.legend()
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_latency(latency_ms: np.ndarray, path: Path) -> Path:
    """Histogram of the successful answers' latency with p50, p95 and p99 marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(latency_ms):
        ax.hist(latency_ms, bins=50, color="tab:blue", alpha=0.8)
        for q, style in ((50, "-"), (95, "--"), (99, ":")):
            ax.axvline(np.percentile(latency_ms, q), color="black", linestyle=style, label=f"p{q}")
        ax.legend()
        ax.set_xlabel("latency (ms)")
    else:
        ax.text(0.5, 0.5, "no request in the window", ha="center", va="center")
    ax.set_title("recommendation latency")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_history(history: Sequence[Mapping[str, Any]], path: Path, measures: Sequence[str] = HISTORY_MEASURES) -> Path:
    """Each of ``measures`` over the checks in ``history`` (``{"at": ms, "metrics": {...}}``, oldest first)."""
    from datetime import datetime, timezone

    plt = _pyplot()
    columns = 3
    rows = (len(measures) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(13, 2.8 * rows), squeeze=False)
    for ax, measure in zip(axes.ravel(), measures):
        points = [(datetime.fromtimestamp(h["at"] / 1000, tz=timezone.utc), h["metrics"][measure])
                  for h in history if measure in h["metrics"]]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        else:
            ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(measure, fontsize=9)
    for ax in axes.ravel()[len(measures):]:
        ax.set_visible(False)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.92, bottom=0.15, hspace=0.6, wspace=0.25)  # tight_layout costs seconds
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _threshold_text(measure: str, thresholds: Mapping[str, Any]) -> str:
    texts = []
    for name, rule in RULES.items():
        if measure in rule.measures and thresholds.get(name) is not None:
            texts.append(f"{'≤' if rule.op == 'max' else '≥'} {thresholds[name]:g} ({rule.action})")
    return ", ".join(texts)


def html_report(result: Mapping[str, Any], images: Mapping[str, Path]) -> str:
    """A self-contained HTML page: the decision, every measure with its threshold, the plots."""
    esc = html.escape
    breached = {b["measure"] for b in result.get("breaches", [])}
    unjudged = {u["measure"]: u["why"] for u in result.get("unjudged", [])}
    champion = result.get("champion") or {}
    snapshot = champion.get("snapshot") or {}
    verdict = "retrain" if result.get("retrain") else ("alert" if result.get("alert") else "ok")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>recsys monitoring</title><style>"
        "body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        "tr.breach{background:#fdd}tr.unjudged{color:#888}h2{margin-top:1.5em}</style></head><body>",
        f"<h1>Monitoring: {esc(str(champion.get('name', '')))} v{esc(str(champion.get('version', '')))}"
        f" &mdash; {verdict}</h1>",
        f"<p>{esc(result.get('reason') or 'no threshold breached')}</p>",
        "<ul>",
        f"<li>snapshot: <code>{esc(str(snapshot.get('uri', '')))}</code> (sha256 {esc(str(snapshot.get('sha256', ''))[:16])})</li>",
        f"<li>new interactions: {result.get('new_interactions', 0)}</li>",
        f"<li>events and requests window: {esc(str(result.get('window', {}).get('start', '')))} to "
        f"{esc(str(result.get('window', {}).get('end', '')))}</li>",
        "</ul>",
    ]
    thresholds = result.get("thresholds", {})
    for group, names in result.get("groups", {}).items():
        parts.append(f"<h2>{esc(group)}</h2><table><tr><th>measure</th><th>value</th><th>threshold</th><th>status</th></tr>")
        for name in names:
            value = result["measures"].get(name)
            status = "breach" if name in breached else (f"not judged: {unjudged[name]}" if name in unjudged else "")
            css = "breach" if name in breached else ("unjudged" if name in unjudged else "")
            shown = "&ndash;" if value is None else f"{value:.4g}"
            parts.append(f"<tr class='{css}'><td>{esc(name)}</td><td>{shown}</td>"
                         f"<td>{esc(_threshold_text(name, thresholds))}</td><td>{esc(status)}</td></tr>")
        parts.append("</table>")
    for title, path in images.items():
        encoded = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<h2>{esc(title)}</h2><img alt='{esc(title)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _monitoring_runs(client: Any, experiment_id: str, registered_model: str) -> list[Any]:
    return client.search_runs([experiment_id], filter_string=f"tags.`{TAG_MODEL}` = '{registered_model}'",
                              order_by=["attributes.start_time ASC"], max_results=500)


def log_monitoring_run(
    config: MonitoringConfig,
    run_key: str,
    result: Mapping[str, Any],
    drift: Any = None,
    latency_ms: np.ndarray | None = None,
) -> tuple[str, str]:
    """Log one check as a run of ``config.experiment`` (created with an explicit artifact location).

    ``result`` is the check's result without its run id; ``drift`` the
    :class:`~pipelines.monitoring.drift.DriftResult` (None without a champion). Returns
    (run_id, experiment name).
    """
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from pipelines.tracking.setup import configure_mlflow

    uri, experiment_id = configure_mlflow(config.tracking_uri, config.experiment)
    client = MlflowClient(uri)
    for old in client.search_runs([experiment_id], filter_string=f"tags.`{TAG_RUN_KEY}` = '{run_key}' "
                                                                 f"and tags.`{TAG_ROLE}` = '{ROLE}'"):
        client.delete_run(old.info.run_id)  # a retried check replaces its run
    champion = result.get("champion") or {}
    snapshot = champion.get("snapshot") or {}
    tags = {
        TAG_RUN_KEY: run_key, TAG_ROLE: ROLE, TAG_MODEL: config.registered_model,
        TAG_VERSION: str(champion.get("version") or ""), "monitoring.alias": config.alias,
        "monitoring.snapshot_uri": str(snapshot.get("uri") or ""),
        "monitoring.snapshot_sha256": str(snapshot.get("sha256") or ""),
        "monitoring.retrain": str(bool(result.get("retrain"))).lower(),
        "monitoring.alert": str(bool(result.get("alert"))).lower(),
        "monitoring.breaches": ",".join(b["measure"] for b in result.get("breaches", []))[:4900],
        "monitoring.reason": str(result.get("reason") or "")[:4900],
        "mlflow.note.content": str(result.get("reason") or "no threshold breached")[:4900],
    }
    name = f"monitor-{config.registered_model}-v{champion.get('version') or 'none'}"
    run_id = client.create_run(experiment_id, run_name=name[:250], tags=tags).info.run_id
    params = flatten({
        "champion": {"name": config.registered_model, "alias": config.alias, "version": champion.get("version")},
        "snapshot": {"uri": snapshot.get("uri"), "sha256": snapshot.get("sha256")},
        "window": result.get("window", {}), "data": result.get("data_source"), "k": config.k,
        "thresholds": result.get("thresholds", {}),
    })
    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])
    stamp = int(time.time() * 1000)
    metrics = [Metric(key, float(value), stamp, 0) for key, value in result["measures"].items() if value is not None]
    metrics += [Metric("retrain", float(bool(result.get("retrain"))), stamp, 0),
                Metric("breaches", float(len(result.get("breaches", []))), stamp, 0)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])

    history = [{"at": run.info.start_time, "metrics": run.data.metrics}
               for run in _monitoring_runs(client, experiment_id, config.registered_model)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / PLOTS
        folder.mkdir()
        images = {}
        if drift is not None:
            images["item popularity: snapshot vs new"] = plot_popularity(drift.popularity, folder / "popularity.png")
            images["ratings and time patterns"] = plot_distributions(drift, folder / "distributions.png")
        images["latency"] = plot_latency(np.asarray(latency_ms if latency_ms is not None else []), folder / "latency.png")
        images["over time"] = plot_history(history, folder / "history.png")
        (Path(tmp) / "report.html").write_text(html_report(result, images), encoding="utf-8")
        (Path(tmp) / "result.json").write_text(json.dumps({**result, "mlflow_run_id": run_id}, indent=2, default=str))
        client.log_artifacts(run_id, tmp)
    client.set_terminated(run_id)
    return run_id, config.experiment
