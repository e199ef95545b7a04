"""Bad run parameters are refused before any work starts, with the parameter named."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError
from pipelines.params import defaults, param_specs
from pipelines.pipeline import from_params


def test_defaults_build_a_valid_config():
    config = from_params({})
    assert [c.model for c in config.candidates] == ["als", "popularity"]
    assert config.promotion.metric == "ndcg@10"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"factors": -3}, "factors"),
        ({"iterations": 0}, "iterations"),
        ({"regularization": -1.0}, "regularization"),
        ({"models": ["als", "no_such_model"]}, "no_such_model"),
        ({"k": 0}, "k"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"source": "csv", "path": ""}, "path"),
        ({"max_rejected_fraction": 2.0}, "max_rejected_fraction"),
    ],
)
def test_invalid_values_are_refused_naming_the_parameter(override, named):
    with pytest.raises(ConfigError, match=named):
        from_params({**defaults(), **override})


@pytest.mark.parametrize(
    ("name", "value"),
    [("factors", -3), ("factors", 5000), ("models", ["nope"]), ("split", "sideways"), ("k", 0), ("use_gpu", "yes")],
)
def test_trigger_form_schema_refuses(name, value):
    from airflow.sdk import Param
    from airflow.sdk.exceptions import ParamValidationError

    spec = dict(param_specs()[name])
    param = Param(spec.pop("default"), **spec)
    with pytest.raises(ParamValidationError):
        param.resolve(value)


def test_model_multi_select_lists_every_model():
    from pipelines.models import model_names

    spec = param_specs()["models"]
    assert spec["examples"] == model_names()
    assert spec["items"]["enum"] == model_names()


def test_content_model_on_a_source_without_metadata_is_refused():
    with pytest.raises(ConfigError, match="content need item metadata"):
        from_params({"source": "csv", "path": "/data/interactions.csv", "models": ["content"]})
    # the same model on a source that brings metadata is accepted
    assert [c.model for c in from_params({"models": ["content"]}).candidates] == ["content", "popularity"]


@pytest.mark.parametrize(("override", "named"), [({"n_trials": 0}, "n_trials"), ({"alpha": -1.0}, "alpha")])
def test_tuning_and_weighting_values_are_checked(override, named):
    with pytest.raises(ConfigError, match=named):
        from_params({**defaults(), **override, "tune": True, "weighting": "linear"})


def test_the_form_can_be_submitted_with_its_defaults():
    """The UI marks a Param required unless its type admits null, and treats "" as missing:
    every field must either have a real default or be nullable with default None."""
    from airflow.sdk import Param

    for name, spec in param_specs().items():
        spec = dict(spec)
        default = spec.pop("default")
        assert default != "", f"{name}: an empty-string default reads as a missing required field in the form"
        if default is None:
            assert "null" in spec["type"], f"{name}: default None needs a nullable type"
        Param(default, **spec).resolve(default)  # the default itself passes the schema
    assert from_params({name: spec["default"] for name, spec in param_specs().items()}).ingest.source == "synthetic"


def test_source_fields_are_described_for_the_sources_that_need_them():
    specs = param_specs()
    assert "csv" in specs["path"]["description"] and "sql" in specs["sql_conn_id"]["description"]
    assert "sql_url" not in specs  # a URL with its password must never be a form field (it would reach XCom)
    config = from_params({"source": "sql", "sql_conn_id": "warehouse", "sql_table": "events"})
    assert (config.ingest.conn_id, config.ingest.table, config.ingest.url) == ("warehouse", "events", None)
