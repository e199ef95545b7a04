"""``TuningConfig``: how one model family is tuned, validated once at the entry point."""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.errors import ConfigError

# Metrics a study can maximise: the ranking metrics of pipelines.evaluation.metrics, at some K.
TUNABLE_METRICS = ("ndcg", "map", "precision", "recall", "hit_rate")


class TuningConfig(BaseModel):
    """Budget, objective, validation split, sampler, pruner and parallelism of a study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_trials: int = Field(20, ge=1, le=1000)
    """Trials to run (pruned and failed ones count), 1..1000."""
    timeout_seconds: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    """Stop starting new trials after this many seconds (running ones finish); None: no limit."""
    metric: str = "ndcg@10"
    """Validation metric maximised, ``NAME@K`` with NAME one of ndcg, map, precision, recall,
    hit_rate. Pruning uses the per-epoch values models pass to their callback under this key."""
    seed: int = Field(42, ge=0, lt=2**32)
    """Seeds the TPE sampler and the validation carve. Sequential studies (n_parallel 1) of a
    deterministic model repeat exactly; parallel ones depend on which trial finishes first."""
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    """Share of each user's training interactions held out to score trials (per-user stratified,
    :func:`pipelines.features.splits.stratified_split`), used only when the feature set has no
    validation split of its own."""
    pruner: bool = True
    """Stop unpromising trials early with Optuna's MedianPruner (only models that report a
    validation metric per epoch can be pruned)."""
    pruner_startup_trials: int = Field(5, ge=0, le=1000)
    """Completed trials needed before anything is pruned."""
    pruner_warmup_steps: int = Field(1, ge=0, le=10_000)
    """Epochs (0-based) a trial runs before it can be pruned."""
    sampler_startup_trials: int = Field(10, ge=1, le=1000)
    """Random trials before TPE starts modelling the space (Optuna's default 10)."""
    n_parallel: int = Field(1, ge=1, le=256)
    """Trials in flight at once on the Dask cluster; 1 runs them one after another."""
    enqueue_defaults: bool = True
    """Evaluate the configuration as given first (its values that lie in the space), so the best
    trial is never worse on validation than not tuning."""
    search_space: dict[str, dict[str, Any]] | None = None
    """Replaces the family's default space: ``{name: {"type": "int"|"float", "low", "high",
    "log"} | {"type": "categorical", "choices": [...]}}`` (see :mod:`pipelines.tuning.search_space`)."""

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, value: str) -> str:
        name, _, k = value.partition("@")
        if name not in TUNABLE_METRICS or not k.isdigit() or int(k) < 1:
            raise ValueError(f"metric must look like NAME@K with NAME in {', '.join(TUNABLE_METRICS)}, got {value!r}")
        return value

    @field_validator("search_space")
    @classmethod
    def _space_valid(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        if value is not None:
            from pipelines.tuning.search_space import parse_space

            parse_space(value, "search_space")  # names are checked against the model in tune_model
        return value

    @property
    def k(self) -> int:
        """The cut-off of :attr:`metric`."""
        return int(self.metric.partition("@")[2])


def parse_tuning_config(value: TuningConfig | Mapping[str, Any] | None) -> TuningConfig:
    """Validate ``value`` into a :class:`TuningConfig`; raises ConfigError naming each bad field."""
    if isinstance(value, TuningConfig):
        return value
    try:
        return TuningConfig.model_validate(dict(value or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'tuning'}: {str(err['msg']).removeprefix('Value error, ')}"
            + (f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else "")
            for err in exc.errors()
        )
        raise ConfigError(f"invalid tuning configuration: {problems}") from None
