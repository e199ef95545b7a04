"""Run parameters: each family gets its own defaults; bad values are refused before any work, named."""

from __future__ import annotations

import json

import pytest

from pipelines.errors import ConfigError
from pipelines.models import create_model, model_class, model_names
from pipelines.params import build_family_catalog, defaults, family_catalog, param_specs
from pipelines.pipeline import from_params


def _param(name: str):
    """The Param the DAG file builds from a spec (dags/recsys_training.py does exactly this)."""
    from airflow.sdk import Param

    spec = dict(param_specs()[name])
    return Param(spec.pop("default"), **spec)


def _candidate(config, family: str):
    return next(c for c in config.candidates if c.model == family)


def test_defaults_build_a_valid_config():
    config = from_params({})
    assert [c.model for c in config.candidates] == ["als", "popularity"]
    assert config.promotion.metric == "ndcg@10"


@pytest.mark.parametrize("family", model_names())
def test_every_family_from_the_form_defaults_gets_exactly_its_own_default_config(family):
    candidate = _candidate(from_params({"models": [family]}), family)
    assert candidate.params == {} and candidate.weighting is None and candidate.device is None
    config_class = model_class(family).config_class
    assert create_model(family, candidate.model_params()).config == config_class()
    assert candidate.resolved_weighting().model_dump() == {
        **family_catalog()[family]["schema"]["properties"]["weighting"]["default"]
    }


def test_the_generated_family_schemas_match_the_configs():
    # pipelines/model_params_schema.json is what the form and the CLI read; regenerate it with
    # `python -m pipelines.params` after changing a family's config, summary or preferred weighting.
    assert json.loads(json.dumps(build_family_catalog())) == family_catalog(), "run: python -m pipelines.params"
    assert list(family_catalog()) == model_names()


def test_the_form_lists_each_family_with_its_summary_and_defaults():
    text = param_specs()["model_params"]["description_md"]
    for family in model_names():
        cls = model_class(family)
        line = next(line for line in text.splitlines() if line.startswith(f"- **{family}**:"))
        assert cls.summary.rstrip(".") in line
        hyper = cls.config_class().hyperparameters()
        for field, value in hyper.items():
            assert f"`{field}={json.dumps(value)}`" in line, (family, field)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"model_params": {"als": {"factors": -3}}}, "model_params.als.factors"),
        ({"model_params": {"als": {"iterations": 0}}}, "model_params.als.iterations"),
        ({"models": ["ease"], "model_params": {"ease": {"regularization": -1.0}}}, "model_params.ease.regularization"),
        ({"models": ["ease"], "model_params": {"ease": {"factors": 8}}}, "model_params.ease.factors: no such field"),
        ({"model_params": {"als": {"weighting": {"scheme": "tfidf"}}}}, "model_params.als.weighting.scheme"),
        ({"model_params": {"als": {"weighting": {"scheme": "linear", "alpha": -1}}}},
         "model_params.als.weighting.alpha"),
        ({"model_params": {"no_such_family": {}}}, "model_params.no_such_family: unknown model family"),
        ({"model_params": {"als": 64}}, "model_params.als: must be an object"),
        ({"models": ["als", "no_such_model"]}, "no_such_model"),
        ({"k": 0}, "k"),
        ({"seed": -1}, "seed"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"source": "csv", "path": ""}, "path"),
        ({"max_rejected_fraction": 2.0}, "max_rejected_fraction"),
        ({"n_trials": 0, "tune": True}, "n_trials"),
        ({"modles": ["als"]}, "unknown run parameter"),
    ],
)
def test_invalid_values_are_refused_naming_the_parameter(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        from_params({**defaults(), **override})


def test_settings_for_a_family_that_is_not_trained_are_refused():
    with pytest.raises(ConfigError, match=r"model_params\.bpr: bpr is not trained in this run"):
        from_params({"models": ["als"], "model_params": {"bpr": {"factors": 32}}})
    # popularity is always trained, so its settings reach the baseline
    config = from_params({"models": ["als"], "model_params": {"popularity": {"score_by": "weights"}}})
    assert _candidate(config, "popularity").params == {"score_by": "weights"}


@pytest.mark.parametrize("flat", ["factors", "iterations", "regularization", "weighting", "alpha"])
def test_the_old_flat_knobs_are_refused_with_a_pointer_to_model_params(flat):
    with pytest.raises(ConfigError, match=f"{flat}: no longer run parameters; set them per family in model_params"):
        from_params({"models": ["ease"], flat: 1})


def test_per_family_values_reach_only_their_family():
    config = from_params({"models": ["ease", "als", "itemknn"], "model_params": {
        "ease": {"regularization": 300}, "itemknn": {"weighting": {"scheme": "bm25", "k1": 50, "b": 0.5}}}})
    assert _candidate(config, "ease").params == {"regularization": 300}
    assert _candidate(config, "als").params == {} and _candidate(config, "als").weighting is None
    itemknn = _candidate(config, "itemknn")
    assert itemknn.params == {} and (itemknn.weighting.k1, itemknn.weighting.b) == (50, 0.5)


def test_a_weighting_setting_changes_only_its_fields_of_the_family_preferred_one():
    config = from_params({"models": ["itemknn", "als"], "model_params": {
        "itemknn": {"weighting": {"k1": 50}}, "als": {"weighting": {"alpha": 2}}}})
    itemknn, als = _candidate(config, "itemknn").weighting, _candidate(config, "als").weighting
    assert (itemknn.scheme, itemknn.k1, itemknn.b) == ("bm25", 50, 0.8)  # still BM25, as the family prefers
    assert (als.scheme, als.alpha) == ("none", 2)


def test_shared_seed_and_gpu_apply_only_when_set_and_a_family_value_wins():
    config = from_params({"models": ["als", "ease"], "seed": 7, "use_gpu": True, "model_params": {"als": {"seed": 3}}})
    als, ease = _candidate(config, "als"), _candidate(config, "ease")
    assert als.model_params() == {"seed": 3, "device": "gpu"}
    assert ease.model_params() == {"seed": 7, "device": "gpu"}
    assert (config.features.seed, config.ingest.seed, config.dask.gpu) == (7, 7, True)
    assert _candidate(from_params({"models": ["ease"], "use_gpu": False}), "ease").model_params() == {"device": "cpu"}


@pytest.mark.parametrize(
    ("value", "family", "field"),
    [
        ({"ease": {"regularization": -1}}, "ease", "regularization"),
        ({"als": {"factors": 5000}}, "als", "factors"),
        ({"als": {"factors": "many"}}, "als", "factors"),
        ({"ease": {"factors": 8}}, "ease", "factors"),
        ({"bpr": {"weighting": {"scheme": "tfidf"}}}, "bpr", "scheme"),
        ({"ncf": {"loss": "hinge"}}, "ncf", "loss"),
    ],
)
def test_trigger_form_schema_refuses_a_bad_family_value_naming_family_and_field(value, family, field):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError) as refused:
        _param("model_params").resolve(value)
    assert family in str(refused.value) and field in str(refused.value)


def test_trigger_form_schema_refuses_an_unknown_family_and_accepts_good_values():
    from airflow.sdk.exceptions import ParamValidationError

    param = _param("model_params")
    with pytest.raises(ParamValidationError, match="no_such_family"):
        param.resolve({"no_such_family": {}})
    assert param.resolve({}) == {}
    assert param.resolve({"ease": {"regularization": 300}, "itemknn": {"weighting": {"scheme": "bm25", "k1": 50}}})
    # every family's full default config passes the schema: the schema is the config's
    everything = {name: {**entry["defaults"], "weighting": entry["preferred_weighting"]}
                  for name, entry in family_catalog().items()}
    assert param.resolve(everything) == everything


def test_the_scheduler_side_param_keeps_the_schema_and_refuses_the_same_values():
    # The REST API validates the serialized DAG's params (a 400 on failure), not the SDK Param.
    from airflow.serialization.serialized_objects import BaseSerialization

    served = BaseSerialization.deserialize(BaseSerialization.serialize(_param("model_params")))
    served.value = {"ease": {"regularization": -1}}
    with pytest.raises(Exception, match=r"regularization"):
        served.resolve(raises=True)
    served.value = {"ease": {"regularization": 300}}
    assert served.resolve(raises=True) == {"ease": {"regularization": 300}}


@pytest.mark.parametrize(
    ("name", "value"),
    [("seed", -3), ("seed", "x"), ("models", ["nope"]), ("split", "sideways"), ("k", 0), ("use_gpu", "yes")],
)
def test_trigger_form_schema_refuses(name, value):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _param(name).resolve(value)


def test_shared_knobs_may_be_left_unset_in_the_form():
    assert _param("seed").resolve(None) is None and _param("use_gpu").resolve(None) is None


def test_model_multi_select_lists_every_model():
    spec = param_specs()["models"]
    assert spec["examples"] == model_names()
    assert spec["items"]["enum"] == model_names()


def test_content_model_on_a_source_without_metadata_is_refused():
    with pytest.raises(ConfigError, match="content need item metadata"):
        from_params({"source": "csv", "path": "/data/interactions.csv", "models": ["content"]})
    # the same model on a source that brings metadata is accepted
    assert [c.model for c in from_params({"models": ["content"]}).candidates] == ["content", "popularity"]
