"""Search spaces: every default space samples valid configs; bad spaces are refused by name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.errors import ConfigError
from pipelines.models import model_class, model_names
from pipelines.training.config import TrainConfig
from pipelines.tuning.search_space import (
    SEARCH_SPACES,
    apply_params,
    current_params,
    parse_space,
    search_space,
    suggest_params,
    tunable_models,
)


@pytest.mark.parametrize("family", sorted(SEARCH_SPACES))
def test_default_space_samples_valid_configs(family):
    if family not in model_names():
        pytest.skip(f"{family!r} is not registered in pipelines.models")
    import optuna

    space = search_space(family)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(6):
        trial = study.ask()
        params = suggest_params(trial, space)
        config = apply_params(TrainConfig(model=family), params)
        assert {k: config.params[k] for k in params if not k.startswith("weighting.")} == {
            k: v for k, v in params.items() if not k.startswith("weighting.")
        }
        study.tell(trial, 0.0)
    # The bounds themselves are valid too.
    for corner in ("low", "high"):
        params = {name: getattr(spec, corner) for name, spec in space.items() if hasattr(spec, corner)}
        params.update({name: spec.choices[0] for name, spec in space.items() if hasattr(spec, "choices")})
        apply_params(TrainConfig(model=family), params)


@pytest.mark.parametrize("family", sorted(SEARCH_SPACES))
def test_default_config_lies_inside_its_space(family):
    if family not in model_names():
        pytest.skip(f"{family!r} is not registered in pipelines.models")
    space = search_space(family)
    fields = model_class(family).config_class.model_fields
    # A default of None means "chosen at fit from the data" (ALS's and EASE's regularization, item-kNN's
    # shrinkage): not a point to start from.
    chosen_at_fit = {name for name in space if name in fields and fields[name].default is None}
    assert set(current_params(TrainConfig(model=family), space)) == set(space) - chosen_at_fit


def test_tunable_models_are_registered_families_with_a_space():
    assert "als" in tunable_models()
    assert set(tunable_models()) <= set(model_names())


def test_family_without_a_space_is_refused_naming_the_tunable_ones():
    with pytest.raises(ConfigError, match=r"'popularity' has no search space; tunable models: .*als"):
        search_space("popularity")


def test_unknown_family_is_refused():
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        search_space("nope")


def test_override_replaces_the_default_space():
    space = search_space("als", {"factors": {"type": "int", "low": 4, "high": 8}})
    assert list(space) == ["factors"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"factors": {"type": "int", "low": 8, "high": 4}}, "'factors'.*low \\(8\\) must be below high"),
        ({"regularization": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "'regularization'.*log scale"),
        ({"factors": {"type": "normal", "mean": 3}}, "'factors' has an invalid distribution"),
        ({"factors": {"type": "categorical", "choices": []}}, "'factors'"),
        ({}, "non-empty mapping"),
    ],
)
def test_invalid_distributions_are_refused_by_name(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(raw)


def test_names_must_be_model_fields_or_weighting_fields():
    with pytest.raises(ConfigError, match="'learning_rate' is not a tunable parameter of 'als'.*factors"):
        search_space("als", {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1}})
    with pytest.raises(ConfigError, match="'weighting.gamma' is not a weighting field"):
        search_space("als", {"weighting.gamma": {"type": "float", "low": 0.1, "high": 1.0}})
    with pytest.raises(ConfigError, match="'seed'"):
        search_space("als", {"seed": {"type": "int", "low": 1, "high": 9}})


def test_weighting_parameters_apply_to_the_weighting_config():
    config = apply_params(TrainConfig(model="als"), {"factors": 16, "weighting.scheme": "bm25", "weighting.k1": 50.0})
    assert config.params["factors"] == 16
    assert (config.weighting.scheme, config.weighting.k1) == ("bm25", 50.0)


def test_apply_params_names_an_invalid_value():
    with pytest.raises(ConfigError, match="invalid for 'als'.*factors"):
        apply_params(TrainConfig(model="als"), {"factors": 0})


def test_current_params_prefers_explicit_values_and_skips_those_outside_the_space():
    space = search_space("als")
    given = current_params(TrainConfig(model="als", params={"factors": 32, "iterations": 99}), space)
    assert given == {"factors": 32}  # the penalty is chosen at fit by default: sampled


def test_importing_tuning_config_is_cheap():
    code = (
        "import sys, json; import pipelines.tuning, pipelines.tuning.config, pipelines.tuning.search_space;"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'optuna', 'dask', 'distributed', 'mlflow', 'torch', 'sklearn'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_rank_bounded_ranges_are_capped_by_the_training_matrix():
    from pipelines.tuning.search_space import bind_to_data

    space = parse_space(
        {
            "factors": {"type": "int", "low": 4, "high": 256, "log": True, "below_matrix_rank": True},
            "iterations": {"type": "int", "low": 5, "high": 300},
        }
    )
    bound = bind_to_data(space, (200, 100))
    assert (bound["factors"].low, bound["factors"].high) == (4, 99)
    assert bound["iterations"].high == 300, "only flagged ranges depend on the data"
    assert bind_to_data(space, (1000, 1000))["factors"].high == 256
    with pytest.raises(ConfigError, match="'factors' must be below min\\(n_users, n_items\\) = 3"):
        bind_to_data(space, (3, 50))


def test_without_weighting_samples_the_family_preferred_weighting_is_kept():
    config = apply_params(TrainConfig(model="als"), {"factors": 16})
    assert config.weighting is None
    explicit = TrainConfig(model="als", weighting={"scheme": "linear", "alpha": 2.0})
    assert apply_params(explicit, {"weighting.alpha": 3.0}).weighting.model_dump()["scheme"] == "linear"
