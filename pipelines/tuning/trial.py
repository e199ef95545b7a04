"""One trial, as it runs on a Dask worker (or in-process): fit, report per epoch, prune, score.

:func:`run_trial` is a plain module-level function of picklable arguments, so the same code
runs in a worker thread, a forked or remote worker process, or the driver itself. It never
talks to the study's storage: the driver samples the parameters and afterwards replays what
the trial reported (ask-and-tell). The pruning decision is made here, during the fit, by
Optuna's own pruner over a private study holding the trials that had completed when this one
was started: in a sequential study that is exactly Optuna's behaviour; in parallel ones the
median is taken over the trials finished at submission time.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import scipy.sparse as sp

if TYPE_CHECKING:
    import optuna

    from pipelines.training.config import TrainConfig

log = logging.getLogger(__name__)

TrialStateName = Literal["COMPLETE", "PRUNED", "FAIL"]


@dataclass(frozen=True, eq=False)
class TrialData:
    """What every trial of a study shares (scattered to the cluster once).

    ``train``: the fit part (users x items, raw values; each trial applies its weighting),
    ``validation``: held-out interactions of the same shape, ``item_features``: items x
    features or None, ``interaction_order``: each fit interaction's rank in its user's time
    order (same pattern as ``train``) for models with ``uses_interaction_order``, or None.
    """

    train: sp.csr_matrix
    validation: sp.csr_matrix
    item_features: sp.csr_matrix | None = None
    interaction_order: sp.csr_matrix | None = None


@dataclass(frozen=True)
class PrunerSettings:
    """The MedianPruner of the study (``enabled`` False: never prune)."""

    enabled: bool = True
    startup_trials: int = 5
    warmup_steps: int = 1


@dataclass(frozen=True)
class TrialJob:
    """One trial to run: its number, full train config, objective and pruning context."""

    number: int
    config: "TrainConfig"
    metric: str
    k: int
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    completed: tuple["optuna.trial.FrozenTrial", ...] = ()
    """Completed trials of the study when this one was submitted (the pruner's reference)."""
    n_parallel: int = 1
    """Trials running at once: a model with a ``num_threads`` option gets its share of the cores."""


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial reports back; the driver turns it into Optuna state and an MLflow run."""

    number: int
    state: TrialStateName
    value: float | None
    intermediate: dict[int, float]
    metrics: dict[str, float]
    fit_seconds: float
    started: float
    finished: float
    error: str | None = None


class _Reporter:
    """The model callback: records the validation metric per epoch and prunes through Optuna."""

    def __init__(self, job: TrialJob) -> None:
        self.metric = job.metric
        self.values: dict[int, float] = {}
        self._trial = _pruning_trial(job) if job.pruner.enabled else None

    def __call__(self, iteration: int, loss: float = math.nan, metrics: dict[str, float] | None = None) -> None:
        if not metrics or self.metric not in metrics:
            return
        step, value = int(iteration), float(metrics[self.metric])
        self.values[step] = value
        if self._trial is not None and math.isfinite(value):
            import optuna

            self._trial.report(value, step)
            if self._trial.should_prune():
                raise optuna.TrialPruned(f"{self.metric} {value:.4f} at epoch {step} is below the median")


def run_trial(data: TrialData, job: TrialJob) -> TrialOutcome:
    """Fit ``job.config`` on ``data.train``, score ``job.metric`` on ``data.validation``.

    The model gets ``data.validation`` for early stopping and a callback that reports its
    per-epoch metrics (and raises ``optuna.TrialPruned`` to stop a losing trial). Never raises
    for a trial's own failure: returns state FAIL with the error (logged with its traceback).
    """
    import optuna

    from pipelines.evaluation.evaluate import evaluate_model
    from pipelines.features.weighting import apply_weighting
    from pipelines.models import create_model
    from pipelines.seeding import seed_everything

    started = time.time()
    reporter = _Reporter(job)
    fit_seconds = 0.0
    try:
        config = job.config
        params = _with_thread_share(config.model, config.model_params(), job.n_parallel)
        seed_everything(int(params.get("seed", 42)))
        model = create_model(config.model, params)
        weighted = apply_weighting(data.train, config.resolved_weighting())
        extra = {"interaction_order": data.interaction_order} if getattr(model, "uses_interaction_order", False) else {}
        fit_started = time.perf_counter()
        try:
            model.fit(
                weighted, item_features=data.item_features, validation=data.validation, callback=reporter, **extra
            )
        finally:
            fit_seconds = time.perf_counter() - fit_started
        metrics = evaluate_model(model, data.train, data.validation, k=job.k)
        value = float(metrics[job.metric])
        intermediate = reporter.values or {0: value}  # models without epochs report once
        return TrialOutcome(
            job.number, "COMPLETE", value, intermediate, _floats(metrics), fit_seconds, started, time.time()
        )
    except optuna.TrialPruned as pruned:
        last = reporter.values[max(reporter.values)]
        return TrialOutcome(
            job.number, "PRUNED", last, reporter.values, {}, fit_seconds, started, time.time(), str(pruned)
        )
    except Exception as exc:  # a failed trial is a result (Optuna's catch=); the study goes on
        log.warning(
            "trial %d (%s %s) failed:\n%s", job.number, job.config.model, job.config.params, traceback.format_exc()
        )
        error = f"{type(exc).__name__}: {exc}"
        return TrialOutcome(job.number, "FAIL", None, reporter.values, {}, fit_seconds, started, time.time(), error)


def _with_thread_share(model: str, params: dict[str, Any], n_parallel: int) -> dict[str, Any]:
    """Give each of ``n_parallel`` concurrent trials its share of the cores.

    Only for a model whose ``num_threads`` is 0 ("every core", ALS's and the deep models'
    default): ``n_parallel`` such pools would otherwise share the same cores. An explicit
    count is kept.
    """
    from pipelines.models import model_class

    field = model_class(model).config_class.model_fields.get("num_threads")
    if n_parallel <= 1 or field is None or params.get("num_threads", field.default) != 0:
        return params
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {**params, "num_threads": max(1, cores // n_parallel)}


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


class _QuietStudyCreation(logging.Filter):
    """Drops Optuna's "new study created in memory" line for the private pruning studies."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _PRUNING_STUDY_PREFIX not in record.getMessage()


_PRUNING_STUDY_PREFIX = "recsys-pruning-"
_quiet_filter = _QuietStudyCreation()


def _pruning_trial(job: TrialJob) -> "optuna.trial.Trial":
    """A trial of a private in-memory study holding ``job.completed``, judged by a MedianPruner."""
    import uuid

    import optuna

    storage_logger = logging.getLogger("optuna.storages._in_memory")
    if _quiet_filter not in storage_logger.filters:
        storage_logger.addFilter(_quiet_filter)
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        study_name=f"{_PRUNING_STUDY_PREFIX}{job.number}-{uuid.uuid4().hex[:8]}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),  # never samples: parameters come from the driver
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=job.pruner.startup_trials, n_warmup_steps=job.pruner.warmup_steps
        ),
    )
    study.add_trials(job.completed)
    return study.ask()
