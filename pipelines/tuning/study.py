"""``tune_model``: an Optuna study over one model family, its trials run in-process or on Dask.

How trials reach the cluster (ask-and-tell, not Optuna's storage-based parallelism): the
driver owns the study (in memory), asks it for a trial, samples the parameters with the
define-by-run ``suggest_*`` API, and submits :func:`pipelines.tuning.trial.run_trial` with
``client.submit``; the shared matrices are scattered once. When a trial finishes, the driver
replays its per-epoch reports on the Optuna trial and tells the study the outcome. This works
the same on a threads-mode ``LocalCluster``, forked worker processes and an external scheduler:
workers need the ``pipelines`` package and Optuna, but no route to a study database or to MLflow,
and nothing runs on the scheduler itself. (Optuna 5 moved ``DaskStorage`` to the separate
``optuna-integration`` package, where it is still experimental and runs code on the scheduler.)

TPE is seeded; with ``n_parallel=1`` the study is reproducible for a deterministic model. In
parallel, TPE's constant liar treats running trials as pessimistic results and the sequence
depends on completion order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from pipelines.errors import ConfigError
from pipelines.features.store import FeatureSet
from pipelines.progress import counter_bar
from pipelines.training.config import TrainConfig
from pipelines.tuning.config import TuningConfig, parse_tuning_config
from pipelines.tuning.search_space import (
    apply_params,
    bind_to_data,
    current_params,
    search_space,
    suggest_params,
)
from pipelines.tuning.trial import PrunerSettings, TrialData, TrialJob, TrialOutcome, run_trial
from pipelines.tuning.validation import restrict_order, validation_split

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from distributed import Client

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TuningResult:
    """The outcome of a study.

    ``best_params``: the best trial's sampled values (space names: model fields and
    ``weighting.*``); ``best_value``: its validation metric; ``config``: the input TrainConfig
    with them applied (what to refit on train + validation); ``trials``: one row per trial
    (number, state, value, params, epochs reported, fit seconds, error).
    """

    model: str
    metric: str
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    config: TrainConfig
    trials: "pd.DataFrame"


def tune_model(
    train_config: TrainConfig | Mapping[str, Any],
    features: FeatureSet,
    tuning: TuningConfig | Mapping[str, Any] | None = None,
    client: "Client | None" = None,
    mlflow_parent_run_id: str | None = None,
) -> TuningResult:
    """Search ``train_config.model``'s hyperparameters on a validation split of ``features``.

    Trials fit on train minus validation (the feature set's own validation split, else a
    per-user carve of ``tuning.validation_fraction`` of train) and are scored by
    ``tuning.metric`` on validation; test is never used. With ``client`` up to
    ``tuning.n_parallel`` trials run on the Dask cluster at once, without one they run here one
    by one. With ``mlflow_parent_run_id`` each trial is logged as a nested run under it.

    Raises ConfigError for a family without a search space or an invalid space or config,
    DataError when the validation split comes out empty, and RuntimeError when no trial
    completes (the first error is in the message).
    """
    import optuna

    train_config = TrainConfig.model_validate(train_config)
    tuning = parse_tuning_config(tuning)
    space = search_space(train_config.model, tuning.search_space)
    fit_train, validation = validation_split(features, tuning.validation_fraction, tuning.seed)
    space = bind_to_data(space, fit_train.shape)
    order = restrict_order(getattr(features, "train_order", None), fit_train)  # for sequence models
    data = TrialData(fit_train, validation, features.item_features, order)

    study = optuna.create_study(
        study_name=f"tune-{train_config.model}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tuning.seed, n_startup_trials=tuning.sampler_startup_trials),
        pruner=_pruner(tuning),
    )
    if tuning.enqueue_defaults:
        given = current_params(train_config, space)
        if given:
            study.enqueue_trial(given)
    trial_log = None
    if mlflow_parent_run_id:
        from pipelines.tuning.trial_runs import TrialRunLogger

        trial_log = TrialRunLogger(mlflow_parent_run_id, train_config.model, tuning.metric)

    runner = _LocalRunner(data) if client is None else _DaskRunner(client, data)
    parallel = 1 if client is None else tuning.n_parallel
    if client is None and tuning.n_parallel > 1:
        log.warning("n_parallel=%d needs a Dask client; running the trials one by one", tuning.n_parallel)
    settings = PrunerSettings(tuning.pruner, tuning.pruner_startup_trials, tuning.pruner_warmup_steps)
    deadline = None if tuning.timeout_seconds is None else time.monotonic() + tuning.timeout_seconds
    rows: list[dict[str, Any]] = []
    in_flight: dict[int, tuple["optuna.trial.Trial", dict[str, Any]]] = {}
    asked = 0
    with counter_bar(f"tune {train_config.model}", "trial", tuning.n_trials) as bar:
        try:
            while True:
                while asked < tuning.n_trials and len(in_flight) < parallel and (asked == 0 or not _past(deadline)):
                    trial = study.ask()
                    params = suggest_params(trial, space)
                    asked += 1
                    try:
                        job = _job(trial.number, train_config, params, tuning, settings, study, parallel)
                    except ConfigError as exc:  # a sampled combination the family's config rejects
                        _finish(study, trial, _failed(trial.number, str(exc)), params, rows, trial_log, tuning)
                        continue
                    runner.submit(job)
                    in_flight[trial.number] = (trial, params)
                if not in_flight:
                    break
                outcome = runner.next_finished()
                trial, params = in_flight.pop(outcome.number)
                _finish(study, trial, outcome, params, rows, trial_log, tuning)
                bar.update()
        finally:
            runner.close()
            for trial, _ in in_flight.values():  # interrupted: leave no trial RUNNING
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return _result(study, train_config, tuning, rows)


def _pruner(tuning: TuningConfig) -> "optuna.pruners.BasePruner":
    import optuna

    if not tuning.pruner:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=tuning.pruner_startup_trials, n_warmup_steps=tuning.pruner_warmup_steps
    )


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _job(number, train_config, params, tuning, settings, study, parallel) -> TrialJob:
    """The job for one sampled trial; raises ConfigError when the family rejects ``params``."""
    import optuna

    config = apply_params(train_config, params)
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if settings.enabled else []
    return TrialJob(number, config, tuning.metric, tuning.k, settings, tuple(completed), parallel)


def _failed(number: int, error: str) -> TrialOutcome:
    """The outcome of a trial that could not run at all."""
    now = time.time()
    return TrialOutcome(number, "FAIL", None, {}, {}, 0.0, now, now, error)


def _finish(study, trial, outcome: TrialOutcome, params, rows: list, trial_log, tuning: TuningConfig) -> None:
    """Tell the study, add the table row, log the nested run."""
    _tell(study, trial, outcome)
    rows.append(_row(outcome, params))
    if trial_log is not None:
        trial_log.log(outcome, params)
    log.info(
        "trial %d/%d %s: %s=%s %s",
        outcome.number + 1,
        tuning.n_trials,
        outcome.state,
        tuning.metric,
        "-" if outcome.value is None else f"{outcome.value:.4f}",
        params,
    )


def _tell(study: "optuna.Study", trial: "optuna.trial.Trial", outcome: TrialOutcome) -> None:
    """Replay the trial's per-epoch reports on the driver's trial, then finish it."""
    from optuna.trial import TrialState

    for step, value in sorted(outcome.intermediate.items()):
        trial.report(value, step)
    if outcome.state == "COMPLETE":
        study.tell(trial, outcome.value)
    else:
        study.tell(trial, state=TrialState.PRUNED if outcome.state == "PRUNED" else TrialState.FAIL)


def _row(outcome: TrialOutcome, params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "number": outcome.number,
        "state": outcome.state,
        "value": outcome.value,
        **{f"params.{k}": v for k, v in params.items()},
        "epochs_reported": len(outcome.intermediate),
        "fit_seconds": round(outcome.fit_seconds, 4),
        "duration_seconds": round(outcome.finished - outcome.started, 4),
        "error": outcome.error,
    }


def _result(
    study: "optuna.Study", train_config: TrainConfig, tuning: TuningConfig, rows: list[dict[str, Any]]
) -> TuningResult:
    import pandas as pd

    trials = pd.DataFrame(rows).sort_values("number", kind="stable").reset_index(drop=True)
    states = trials["state"].value_counts().to_dict() if len(trials) else {}
    if not states.get("COMPLETE"):
        first = next((r["error"] for r in sorted(rows, key=lambda r: r["number"]) if r["error"]), "none recorded")
        raise RuntimeError(
            f"no trial of {train_config.model!r} completed ({len(rows)} run: {states}); first error: {first}"
        )
    best = study.best_trial
    return TuningResult(
        model=train_config.model,
        metric=tuning.metric,
        best_params=dict(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        n_trials=len(rows),
        n_complete=int(states.get("COMPLETE", 0)),
        n_pruned=int(states.get("PRUNED", 0)),
        n_failed=int(states.get("FAIL", 0)),
        config=apply_params(train_config, best.params),
        trials=trials,
    )


class _LocalRunner:
    """Runs submitted trials here, in submission order (the sequential, reproducible mode)."""

    def __init__(self, data: TrialData) -> None:
        self._data = data
        self._pending: deque[TrialJob] = deque()

    def submit(self, job: TrialJob) -> None:
        self._pending.append(job)

    def next_finished(self) -> TrialOutcome:
        return run_trial(self._data, self._pending.popleft())

    def close(self) -> None:
        self._pending.clear()


class _DaskRunner:
    """Runs trials as Dask tasks; the shared data is scattered to the cluster once."""

    def __init__(self, client: "Client", data: TrialData) -> None:
        from distributed import as_completed

        self._client = client
        self._token = uuid.uuid4().hex[:8]  # task keys unique across studies on one cluster
        self._data = client.scatter(data, hash=False)
        self._done = as_completed()
        self._futures: dict[Any, int] = {}

    def submit(self, job: TrialJob) -> None:
        future = self._client.submit(
            run_trial, self._data, job, pure=False, key=f"tuning-trial-{self._token}-{job.number}"
        )
        self._futures[future] = job.number
        self._done.add(future)

    def next_finished(self) -> TrialOutcome:
        future = next(self._done)
        number = self._futures.pop(future)
        try:
            return future.result()
        except Exception as exc:  # the task itself failed (worker lost, data not deserialisable)
            log.warning("trial %d did not run on the cluster: %r", number, exc)
            return _failed(number, f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        for future in self._futures:
            future.cancel()
        self._futures.clear()
        self._data.release()
