"""FeatureConfig validation: defaults, ranges named in errors, cutoff parsing."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError
from pipelines.features.config import FeatureConfig, parse_feature_config, to_epoch_seconds


def test_defaults() -> None:
    cfg = parse_feature_config(None)
    assert cfg.split == "stratified"
    assert cfg.test_fraction == 0.25 and cfg.validation_fraction == 0.0
    assert cfg.seed == 42 and cfg.last_n == 1 and cfg.cutoff is None
    assert cfg.implicit is False and cfg.content_features is True and cfg.tfidf_max_features == 5000


@pytest.mark.parametrize(
    ("params", "field", "interval"),
    [
        ({"test_fraction": 0.0}, "test_fraction", "(0, 1)"),
        ({"test_fraction": 1.0}, "test_fraction", "(0, 1)"),
        ({"validation_fraction": -0.1}, "validation_fraction", "[0, 1)"),
        ({"validation_fraction": 1.0}, "validation_fraction", "[0, 1)"),
        ({"last_n": 0}, "last_n", "[1, inf)"),
        ({"seed": -1}, "seed", "[0, 4.29497e+09)"),
        ({"tfidf_max_features": 0}, "tfidf_max_features", "[1, inf)"),
    ],
)
def test_range_errors_name_field_and_range(params: dict, field: str, interval: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_feature_config(params)
    assert f"{field} must be in {interval}" in str(info.value)


def test_unknown_field_and_split_are_rejected() -> None:
    with pytest.raises(ConfigError, match="test_fractoin"):
        parse_feature_config({"test_fractoin": 0.2})
    with pytest.raises(ConfigError, match="split"):
        parse_feature_config({"split": "by_item"})


def test_temporal_cutoff_requires_a_parseable_cutoff() -> None:
    with pytest.raises(ConfigError, match="cutoff is required"):
        parse_feature_config({"split": "temporal_cutoff"})
    with pytest.raises(ConfigError, match="cutoff must be epoch seconds or an ISO"):
        parse_feature_config({"split": "temporal_cutoff", "cutoff": "not a date"})


def test_cutoff_forms() -> None:
    assert to_epoch_seconds(86400) == 86400
    assert to_epoch_seconds("86400") == 86400
    assert to_epoch_seconds("1970-01-02") == 86400  # naive = UTC
    assert to_epoch_seconds("1970-01-02T01:00:00+01:00") == 86400
    cfg = FeatureConfig(split="temporal_cutoff", cutoff="2000-01-01T00:00:00Z")
    assert cfg.cutoff_epoch == 946684800


def test_config_is_frozen() -> None:
    cfg = FeatureConfig()
    with pytest.raises(Exception):
        cfg.seed = 1  # type: ignore[misc]
    assert parse_feature_config(cfg) is cfg
