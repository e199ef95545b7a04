"""Search spaces: per model family, hyperparameter name -> distribution, as plain data.

A space is a mapping that JSON, YAML or an Airflow Param can hold::

    {"factors": {"type": "int", "low": 16, "high": 256, "log": True},
     "regularization": {"type": "float", "low": 0.1, "high": 10_000.0, "log": True},
     "weighting.scheme": {"type": "categorical", "choices": ["none", "bm25"]}}

An int range may carry ``"below_matrix_rank": true``: its upper bound is lowered to
``min(n_users, n_items) - 1`` of the matrix the trials fit on (ranks of truncated decompositions).

Names are fields of the family's config class, or ``weighting.<field>`` for the confidence
weighting of the training matrix (:class:`pipelines.features.weighting.WeightingConfig`).
A trial samples a space with Optuna's define-by-run ``suggest_*`` (:func:`suggest_params`);
:func:`apply_params` turns a sample into a :class:`~pipelines.training.config.TrainConfig`.

Each range contains its family's default (read from the family's config, never quoted here), so
the default itself is a point of the space: the study evaluates it first (see
``TuningConfig.enqueue_defaults``). A default of None means "chosen at fit from the data" (ALS's
and EASE's regularization, item-kNN's shrinkage): such a range spans what that choice gives on
small and large data alike. Families with nothing worth tuning (popularity) have no space and
are refused.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from pipelines.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from pipelines.training.config import TrainConfig

WEIGHTING_PREFIX = "weighting."

# family -> {param: spec}. Only families whose config defines these fields belong here: the test
# suite samples every space of a registered family and validates it against the config class.
# Defaults are stated once, in each family's config; the comments say why a range is shaped so.
SEARCH_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "als": {  # the penalty's scale grows with the data's top singular value (about sqrt(interactions))
        "factors": {"type": "int", "low": 16, "high": 256, "log": True},
        "regularization": {"type": "float", "low": 0.1, "high": 10_000.0, "log": True},
        "iterations": {"type": "int", "low": 5, "high": 30},
    },
    "bpr": {  # epochs are not tuned: early stopping on validation nDCG picks them
        "factors": {"type": "int", "low": 16, "high": 256, "log": True},
        "learning_rate": {"type": "float", "low": 0.005, "high": 0.5, "log": True},
        "regularization": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    },
    "content": {
        "popularity_exponent": {"type": "float", "low": 0.0, "high": 3.0},
        "profile_weighting": {"type": "categorical", "choices": ["binary", "values"]},
    },
    "ease": {  # wide: the best value grows with interactions per item and the confidence scale
        "regularization": {"type": "float", "low": 1.0, "high": 1_000_000.0, "log": True},
    },
    "itemknn": {  # shrinkage is in units of the weighted input's squared item norms (it grows with them)
        "neighbours": {"type": "int", "low": 20, "high": 2000, "log": True},
        "shrinkage": {"type": "float", "low": 0.1, "high": 1_000_000.0, "log": True},
    },
    "hybrid": {  # base and its parameters are tuned as that family (nested dicts stay fixed)
        "collab_weight": {"type": "float", "low": 0.4, "high": 1.0},
    },
    "item2vec": {
        "vector_size": {"type": "int", "low": 16, "high": 256, "log": True},
        "window": {"type": "int", "low": 2, "high": 50, "log": True},
        "negative": {"type": "int", "low": 2, "high": 20, "log": True},
        "ns_exponent": {"type": "float", "low": -1.0, "high": 1.0},
        "epochs": {"type": "int", "low": 5, "high": 40},
    },
    "multvae": {  # epochs are not tuned: early stopping picks them
        "latent_dim": {"type": "int", "low": 50, "high": 400, "log": True},
        "dropout": {"type": "float", "low": 0.2, "high": 0.7},
        "beta_cap": {"type": "float", "low": 0.05, "high": 1.0, "log": True},
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    },
    "ncf": {  # the loss and its negatives stay as configured
        "embedding_dim": {"type": "int", "low": 16, "high": 256, "log": True},
        "learning_rate": {"type": "float", "low": 5e-4, "high": 5e-2, "log": True},
        "l2_regularization": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    },
    "nmf": {
        "factors": {"type": "int", "low": 8, "high": 128, "log": True, "below_matrix_rank": True},
        "alpha_W": {"type": "float", "low": 0.0, "high": 0.1},
        "l1_ratio": {"type": "float", "low": 0.0, "high": 1.0},
    },
    "sequence": {  # epochs are not tuned: early stopping picks them
        "embedding_dim": {"type": "int", "low": 32, "high": 256, "log": True},
        "hidden_size": {"type": "int", "low": 64, "high": 512, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    },
    "svd": {  # a truncated SVD's rank must stay below min(n_users, n_items)
        "factors": {"type": "int", "low": 4, "high": 256, "log": True, "below_matrix_rank": True},
    },
}


class IntParam(BaseModel):
    """An integer in ``[low, high]`` (both included), on a log scale when ``log``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    """Sample uniformly in log space (for sizes spanning orders of magnitude); needs low >= 1."""
    step: int = Field(1, ge=1)
    """Spacing of the values from ``low``; must be 1 on a log scale."""
    below_matrix_rank: bool = False
    """Lower ``high`` to ``min(n_users, n_items) - 1`` of the matrix trials fit on (the rank of
    a truncated decomposition must stay below it); see :func:`bind_to_data`."""

    @model_validator(mode="after")
    def _consistent(self) -> "IntParam":
        _check_bounds(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("step must be 1 when log is true")
        return self

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )


class FloatParam(BaseModel):
    """A float in ``[low, high]``, on a log scale when ``log`` (then low must be > 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float"]
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = False
    """Sample uniformly in log space (penalties, learning rates)."""
    step: float | None = Field(None, gt=0)
    """Discretisation step from ``low``; not allowed with ``log``."""

    @model_validator(mode="after")
    def _consistent(self) -> "FloatParam":
        _check_bounds(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("step is not allowed when log is true")
        return self

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and self.low <= value <= self.high
        )


class CategoricalParam(BaseModel):
    """One of ``choices`` (strings, numbers, booleans or None)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["categorical"]
    choices: tuple[str | bool | int | float | None, ...] = Field(min_length=1)

    def contains(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)


ParamSpec = Annotated[Union[IntParam, FloatParam, CategoricalParam], Field(discriminator="type")]
_SPEC_ADAPTER: TypeAdapter[IntParam | FloatParam | CategoricalParam] = TypeAdapter(ParamSpec)
#: A validated space: parameter name -> distribution.
Space = dict[str, IntParam | FloatParam | CategoricalParam]


def describe_problems(exc: ValidationError, default_location: str) -> str:
    """Pydantic's errors as one line: ``field: message; field: message``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or default_location}: {str(err['msg']).removeprefix('Value error, ')}"
        for err in exc.errors()
    )


def _check_bounds(low: float, high: float, log: bool) -> None:
    if not low < high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ValueError(f"low must be > 0 on a log scale, got {low}")


def parse_space(raw: Mapping[str, Any], where: str = "search space") -> Space:
    """Validate a plain-data space; raises ConfigError naming the parameter and the problem."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where} must be a non-empty mapping of parameter name -> distribution, got {raw!r}")
    space: Space = {}
    for name, spec in raw.items():
        if isinstance(spec, (IntParam, FloatParam, CategoricalParam)):
            space[name] = spec
            continue
        try:
            space[name] = _SPEC_ADAPTER.validate_python(spec)
        except ValidationError as exc:
            problems = describe_problems(exc, "spec")
            raise ConfigError(
                f"{where}: parameter {name!r} has an invalid distribution {spec!r} ({problems}); "
                "expected {'type': 'int'|'float', 'low': ..., 'high': ..., 'log': bool} "
                "or {'type': 'categorical', 'choices': [...]}"
            ) from None
    return space


def tunable_models() -> list[str]:
    """Registered families that have a default search space, sorted."""
    from pipelines.models import model_names

    return sorted(set(SEARCH_SPACES) & set(model_names()))


def search_space(model: str, override: Mapping[str, Any] | None = None) -> Space:
    """The validated space for ``model``: ``override`` when given, else the family's default.

    Raises ConfigError for a family without a default space (naming those that have one), for
    an invalid distribution, or for a name that is neither a field of the family's config nor a
    ``weighting.<field>``.
    """
    from pipelines.models import model_class

    cls = model_class(model)  # UnknownModelError (a ConfigError) names the registered families
    if override is not None:
        space = parse_space(override, f"search space for {model!r}")
    elif model in SEARCH_SPACES:
        space = parse_space(SEARCH_SPACES[model], f"default search space of {model!r}")
    else:
        raise ConfigError(
            f"model {model!r} has no search space; tunable models: {', '.join(tunable_models()) or 'none'} "
            "(or give tuning.search_space explicitly)"
        )
    _check_names(model, space, set(cls.config_class.model_fields))
    return space


def _check_names(model: str, space: Mapping[str, Any], model_fields: set[str]) -> None:
    from pipelines.features.weighting import WeightingConfig

    weighting_fields = set(WeightingConfig.model_fields)
    for name in space:
        if name.startswith(WEIGHTING_PREFIX):
            if name.removeprefix(WEIGHTING_PREFIX) not in weighting_fields:
                raise ConfigError(
                    f"search space for {model!r}: {name!r} is not a weighting field; "
                    f"allowed: {', '.join(WEIGHTING_PREFIX + f for f in sorted(weighting_fields))}"
                )
        elif name == "seed" or name not in model_fields:
            allowed = sorted(model_fields - {"seed"})
            raise ConfigError(
                f"search space for {model!r}: {name!r} is not a tunable parameter of {model!r}; "
                f"allowed: {', '.join(allowed)} or weighting.<field>"
            )


def bind_to_data(space: Space, shape: tuple[int, int]) -> Space:
    """``space`` with data-dependent bounds resolved for a (n_users, n_items) training matrix.

    Raises ConfigError when the matrix is too small for a parameter's lowest value.
    """
    bound = dict(space)
    rank_cap = min(shape) - 1
    for name, spec in space.items():
        if isinstance(spec, IntParam) and spec.below_matrix_rank and spec.high > rank_cap:
            if rank_cap < spec.low:
                raise ConfigError(
                    f"{name!r} must be below min(n_users, n_items) = {min(shape)} of the {shape[0]} x {shape[1]} "
                    f"training matrix, but its range starts at {spec.low}"
                )
            bound[name] = spec.model_copy(update={"high": rank_cap})
    return bound


def suggest_params(trial: "optuna.trial.BaseTrial", space: Mapping[str, Any]) -> dict[str, Any]:
    """Sample every parameter of ``space`` through ``trial.suggest_*`` (define-by-run)."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, IntParam):
            params[name] = trial.suggest_int(name, spec.low, spec.high, step=spec.step, log=spec.log)
        elif isinstance(spec, FloatParam):
            params[name] = trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)
        else:
            params[name] = trial.suggest_categorical(name, list(spec.choices))
    return params


def current_params(train_config: "TrainConfig", space: Mapping[str, Any]) -> dict[str, Any]:
    """The values ``train_config`` uses for the space's parameters, where they lie inside it.

    Explicit ``train_config.params`` first, then the family's config defaults. Used to evaluate
    the configuration as given before sampling (so the study can only improve on it); values
    outside the space are left out and sampled instead.
    """
    from pipelines.models import model_class

    model_fields = model_class(train_config.model).config_class.model_fields
    found: dict[str, Any] = {}
    for name, spec in space.items():
        if name.startswith(WEIGHTING_PREFIX):
            value = getattr(train_config.resolved_weighting(), name.removeprefix(WEIGHTING_PREFIX))
        elif name in train_config.params:
            value = train_config.params[name]
        else:
            value = model_fields[name].get_default(call_default_factory=True)
        if spec.contains(value):
            found[name] = value
    return found


def apply_params(train_config: "TrainConfig", params: Mapping[str, Any]) -> "TrainConfig":
    """``train_config`` with sampled ``params`` applied (model fields and ``weighting.*``).

    Without ``weighting.*`` samples the weighting stays as configured (None: the family's
    preferred one).

    Raises ConfigError naming the parameter when the combination is invalid for the family.
    """
    from pipelines.training.config import TrainConfig

    model_params = {k: v for k, v in params.items() if not k.startswith(WEIGHTING_PREFIX)}
    weighting = {k.removeprefix(WEIGHTING_PREFIX): v for k, v in params.items() if k.startswith(WEIGHTING_PREFIX)}
    fields = train_config.model_dump()
    fields["params"] = {**train_config.params, **model_params}
    if weighting:  # sampled fields override the configured (or the family's preferred) weighting
        fields["weighting"] = {**train_config.resolved_weighting().model_dump(), **weighting}
    try:
        return TrainConfig.model_validate(fields)
    except ValidationError as exc:
        problems = describe_problems(exc, train_config.model)
        raise ConfigError(f"parameters {dict(params)!r} are invalid for {train_config.model!r}: {problems}") from None
