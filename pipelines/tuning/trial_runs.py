"""Each trial of a study as a nested MLflow run under a given parent run.

Runs are written by the driver as trials finish (workers never talk to MLflow, so an external
Dask cluster needs no access to the tracking server). A trial run holds its sampled
parameters, the objective value, the per-epoch validation metric as a metric history, fit
time, and its state as a tag; pruned trials end KILLED and failed ones FAILED. Trial runs
carry ``recsys.role = tuning_trial`` and ``recsys.tuned_model`` (not ``recsys.model``, which
the train step uses to find and replace its own candidate runs).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from pipelines.tracking.runs import PARENT_TAG, TAG_ROLE, TAG_RUN_KEY, flatten

if TYPE_CHECKING:
    from pipelines.tuning.trial import TrialOutcome

ROLE_TRIAL = "tuning_trial"
TAG_TUNED_MODEL = "recsys.tuned_model"
TAG_TRIAL_NUMBER = "optuna.trial_number"
TAG_TRIAL_STATE = "optuna.state"
_RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def metric_key(name: str) -> str:
    """``ndcg@10`` -> ``ndcg_at_10`` (as the train step names its metrics)."""
    return name.replace("@", "_at_")


class TrialRunLogger:
    """Creates one nested run per trial under ``parent_run_id``.

    On creation, trial runs left under the same parent by an earlier attempt of the same
    study are deleted, so a retried task does not show every trial twice.
    """

    def __init__(self, parent_run_id: str, model: str, metric: str) -> None:
        import mlflow

        self._client = mlflow.MlflowClient()
        parent = self._client.get_run(parent_run_id)
        self.parent_run_id = parent_run_id
        self.experiment_id = parent.info.experiment_id
        self.run_key = parent.data.tags.get(TAG_RUN_KEY, "")
        self.model = model
        self.metric = metric
        for old in self._client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TAG_ROLE}` = '{ROLE_TRIAL}' "
                f"and tags.`{TAG_TUNED_MODEL}` = '{model}'"
            ),
        ):
            self._client.delete_run(old.info.run_id)

    def log(self, outcome: "TrialOutcome", params: Mapping[str, Any]) -> str:
        """Record one finished trial as a terminated nested run; returns its run id."""
        from mlflow.entities import Metric, Param

        run = self._client.create_run(
            self.experiment_id,
            start_time=int(outcome.started * 1000),
            run_name=f"{self.model}-trial-{outcome.number:03d}",
            tags={
                PARENT_TAG: self.parent_run_id,
                TAG_ROLE: ROLE_TRIAL,
                TAG_TUNED_MODEL: self.model,
                TAG_RUN_KEY: self.run_key,
                TAG_TRIAL_NUMBER: str(outcome.number),
                TAG_TRIAL_STATE: outcome.state,
                **({"optuna.error": outcome.error[:5000]} if outcome.error else {}),
            },
        )
        run_id = run.info.run_id
        stamp = int(outcome.finished * 1000)
        metrics = [
            Metric(metric_key(self.metric) + "_per_epoch", value, stamp, step)
            for step, value in sorted(outcome.intermediate.items())
            if math.isfinite(value)
        ]
        if outcome.value is not None and math.isfinite(outcome.value):
            metrics.append(Metric(metric_key(self.metric), outcome.value, stamp, 0))
        metrics.append(Metric("fit_seconds", outcome.fit_seconds, stamp, 0))
        metrics += [Metric(f"validation.{metric_key(k)}", v, stamp, 0) for k, v in outcome.metrics.items()]
        items = [Param(k, v) for k, v in flatten(dict(params)).items()]
        for start in range(0, max(len(items), len(metrics)), 100):  # MLflow caps a batch at 100 params
            self._client.log_batch(run_id, metrics=metrics[start : start + 100], params=items[start : start + 100])
        self._client.set_terminated(run_id, status=_RUN_STATUS[outcome.state], end_time=stamp)
        return run_id
