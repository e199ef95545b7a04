"""Model cards: what a reviewer reads on a registered version before it serves.

A card is markdown written as the version's description (the MLflow UI renders it, and the
approval request in Airflow shows it): the data snapshot and its hash, row counts, the split,
the family and its hyperparameters, the metrics next to the current champion's (or the
popularity baseline's) on the same held-out data, training time and hardware, and links to
the run's plots. The same facts are set as ``card.*`` tags so versions can be searched, e.g.
``search_model_versions("tags.`card.family` = 'als'")``.

:class:`CardFacts` renders; :func:`collect_facts` gathers the facts from the candidate's
MLflow run. :func:`hardware_tags` describes the machine a run trained on (logged by the
train step).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any, Mapping

from pydantic import BaseModel, Field

TAG_VALUE_LIMIT = 4900  # MLflow caps model version tag values at 5000 characters
PLOTS_DIR = "plots"
#: features.* params that describe the split
SPLIT_PARAMS = ("split", "test_fraction", "validation_fraction", "last_n", "cutoff", "seed", "min_rating")
_LINEAGE_ROWS = (
    ("rows_ingested", "rows in"),
    ("rows_clean", "rows clean"),
    ("rows_quarantined", "rows quarantined"),
    ("duplicates_dropped", "duplicates dropped"),
)


class CardFacts(BaseModel):
    """Everything a card says about one registered version."""

    registered_model: str
    version: str
    family: str
    run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    metric: str = Field(description="the promotion metric, e.g. ndcg@10")
    metrics: dict[str, float] = Field(description="the candidate's metrics on its held-out data")
    baseline: str = Field(description="'champion vN' or 'popularity': what the metrics are compared with")
    baseline_metrics: dict[str, float] = Field(default_factory=dict, description="the baseline on the same data")
    lineage: dict[str, Any] = Field(default_factory=dict)
    split: dict[str, str] = Field(default_factory=dict, description="features.* params of the run")
    hyperparameters: dict[str, str] = Field(default_factory=dict, description="model.* params of the run")
    device: str | None = None
    fit_seconds: float | None = None
    hardware: dict[str, str] = Field(default_factory=dict)
    plots: list[str] = Field(default_factory=list, description="artifact paths of the run's plots")

    def markdown(self) -> str:
        """The card, as markdown."""
        lines = [f"### Model card: {self.registered_model} v{self.version} ({self.family})", ""]
        lines += ["**Data**", ""]
        lineage = dict(self.lineage)
        if lineage.get("snapshot_uri"):
            lines.append(f"- snapshot: `{lineage.pop('snapshot_uri')}`")
        if lineage.get("snapshot_sha256"):
            lines.append(f"- sha256: `{lineage.pop('snapshot_sha256')}`")
        counts = [f"{label} {lineage.pop(key)}" for key, label in _LINEAGE_ROWS if key in lineage]
        counts += [f"{key.replace('_', ' ')} {value}" for key, value in sorted(lineage.items())]
        if counts:
            lines.append("- " + ", ".join(counts))
        if self.split:
            lines.append("- split: " + ", ".join(f"{k} {v}" for k, v in sorted(self.split.items())))
        lines += ["", "**Model**", "", f"- family: `{self.family}`"]
        if self.hyperparameters:
            lines.append("- hyperparameters: " + ", ".join(f"{k}={v}" for k, v in sorted(self.hyperparameters.items())))
        trained = []
        if self.fit_seconds is not None:
            trained.append(f"fit in {self.fit_seconds:.1f} s")
        if self.device:
            trained.append(f"device requested {self.device}")
        if self.hardware:
            trained.append(", ".join(f"{k} {v}" for k, v in sorted(self.hardware.items())))
        lines.append("- training: " + ("; ".join(trained) if trained else "not recorded"))
        lines += ["", f"**Metrics on this run's held-out data** (promotion metric: {self.metric})", ""]
        lines += [f"| metric | this version | {self.baseline} |", "| --- | ---: | ---: |"]
        for name in sorted(self.metrics):
            if "@" not in name:
                continue
            other = self.baseline_metrics.get(name)
            mark = " **\u2190**" if name == self.metric else ""
            lines.append(f"| {name}{mark} | {self.metrics[name]:.4f} | {'' if other is None else f'{other:.4f}'} |")
        if self.plots and self.run_id:
            lines += ["", "**Plots** (run artifacts)", ""]
            lines += [f"- [{path.rsplit('/', 1)[-1]}]({self._artifact_link(path)}) (`runs:/{self.run_id}/{path}`)"
                      for path in self.plots]
        if self.run_id:
            lines += ["", f"Training run: [{self.run_id}]({self._run_link()})"]
        return "\n".join(lines)

    def tags(self) -> dict[str, str]:
        """The card's facts as flat, searchable version tags."""
        tags = {"card.family": self.family, "card.baseline": self.baseline, "card.metric": self.metric.replace("@", "_at_")}
        for key, value in self.lineage.items():
            tags[f"card.data.{key}"] = str(value)
        for key, value in self.split.items():
            tags[f"card.split.{key}"] = value
        for key, value in self.hyperparameters.items():
            tags[f"card.hp.{key}"] = value
        for name, value in self.metrics.items():  # tag keys cannot hold '@': ndcg@10 -> ndcg_at_10
            tags[f"card.metric.{name.replace('@', '_at_')}"] = f"{value:.6f}"
        for name, value in self.baseline_metrics.items():
            tags[f"card.baseline.{name.replace('@', '_at_')}"] = f"{value:.6f}"
        if self.fit_seconds is not None:
            tags["card.fit_seconds"] = f"{self.fit_seconds:.3f}"
        if self.device:
            tags["card.device"] = self.device
        for key, value in self.hardware.items():
            tags[f"card.hardware.{key}"] = value
        return {key[:250]: value[:TAG_VALUE_LIMIT] for key, value in tags.items()}

    def _ui_base(self) -> str:
        # An http(s) tracking URI is the MLflow UI; otherwise links stay relative to whatever UI shows the card.
        uri = self.tracking_uri or ""
        return uri.rstrip("/") + "/" if uri.startswith(("http://", "https://")) else ""

    def _run_link(self) -> str:
        return f"{self._ui_base()}#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def _artifact_link(self, path: str) -> str:
        return f"{self._run_link()}/artifacts/{path}"


def collect_facts(
    client: Any,
    registered_model: str,
    version: str,
    candidate: Mapping[str, Any],
    metric: str,
    baseline: str,
    baseline_metrics: Mapping[str, float],
    lineage: Mapping[str, Any] | None,
    tracking_uri: str | None = None,
) -> CardFacts:
    """The card facts of ``candidate`` (a train step result) from its MLflow run."""
    run_id = candidate.get("run_id")
    params: dict[str, str] = {}
    run_tags: dict[str, str] = {}
    experiment_id = plots = None
    if run_id:
        run = client.get_run(run_id)
        params, run_tags, experiment_id = run.data.params, run.data.tags, run.info.experiment_id
        plots = [a.path for a in client.list_artifacts(run_id, PLOTS_DIR) if not a.is_dir]
    metrics = {k: float(v) for k, v in candidate["metrics"].items()}
    return CardFacts(
        registered_model=registered_model, version=str(version), family=str(candidate["model"]),
        run_id=run_id, experiment_id=experiment_id, tracking_uri=tracking_uri, metric=metric,
        metrics={k: v for k, v in metrics.items() if "@" in k},
        baseline=baseline, baseline_metrics={k: float(v) for k, v in baseline_metrics.items() if "@" in k},
        lineage={k: v for k, v in (lineage or {}).items()},
        split={k.removeprefix("features."): v for k, v in params.items()
               if k.startswith("features.") and k.split(".")[1] in SPLIT_PARAMS},
        hyperparameters={k.removeprefix("model."): v for k, v in params.items() if k.startswith("model.")},
        device=params.get("train.device"),
        fit_seconds=metrics.get("fit_seconds"),
        hardware={k.removeprefix("hardware."): v for k, v in run_tags.items() if k.startswith("hardware.")},
        plots=sorted(plots or []),
    )


def hardware_tags() -> dict[str, str]:
    """``hardware.*`` tags describing this machine: CPU, cores usable, memory and GPUs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tags = {"hardware.cpu": _cpu_model(), "hardware.cores": str(cores), "hardware.gpu": _gpu_names() or "none"}
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        tags["hardware.memory_gb"] = f"{memory / 2**30:.0f}"
    except (ValueError, OSError, AttributeError):  # not POSIX: leave it out
        pass
    return tags


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_names() -> str:
    # nvidia-smi answers without importing a CUDA library into the training process.
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return ", ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) if out.returncode == 0 else ""
