"""``FeatureConfig``: every knob of the features step, validated once at the entry point."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from pipelines.errors import ConfigError

SplitMethod = Literal["stratified", "random", "temporal_last_n", "temporal_cutoff"]


def check_range(
    name: str,
    value: float,
    low: float | None,
    high: float | None,
    *,
    low_open: bool,
    high_open: bool,
) -> float:
    """Return ``value`` if it lies in the interval; else raise ValueError naming ``name``
    and the interval, e.g. ``test_fraction must be in (0, 1), got 1.5``."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open else '['}{left}, {right}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


class FeatureConfig(BaseModel):
    """How to split, encode and featurize clean interactions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: SplitMethod = "stratified"
    """``stratified`` (per-user shuffle, Microsoft Recommenders protocol), ``random`` (each row
    independently), ``temporal_last_n`` (each user's latest ``last_n``) or ``temporal_cutoff``
    (everything at or after ``cutoff``)."""
    stratify_by: Literal["user", "item"] = "user"
    """``stratified`` only: the group each row's share is drawn within. ``user`` holds out
    ``test_fraction`` of each user's interactions; ``item`` of each item's (Microsoft
    Recommenders' MovieLens benchmark split, ``filter_by="item"``)."""
    test_fraction: float = 0.25
    """Share of each user's (or item's, see ``stratify_by``) interactions held out for test
    (stratified and random), in (0, 1)."""
    validation_fraction: float = 0.0
    """When > 0, a validation split is carved from the *training* rows with the same method
    (this share of them for stratified/random, the last ``last_n`` for temporal_last_n, the latest
    share by time for temporal_cutoff), for early stopping and tuning. In [0, 1)."""
    last_n: int = 1
    """temporal_last_n: how many of each user's latest interactions go to test (>= 1)."""
    cutoff: int | float | str | None = None
    """temporal_cutoff: epoch seconds or an ISO date/time (naive means UTC); rows with
    ``timestamp >= cutoff`` are test rows. Required for temporal_cutoff."""
    seed: int = 42
    """Seed of every random draw of the step (0 <= seed < 2**32)."""
    min_rating: float | None = None
    """When set, interactions rated below it are dropped before splitting (and counted in the
    manifest as ``below_min_rating``)."""
    implicit: bool = False
    """When True the CSR values are 1.0 instead of the rating."""
    content_features: bool = True
    """Build item content features when item metadata is given."""
    tfidf_max_features: int = 5000
    """Vocabulary cap of each TF-IDF block (title, tags), >= 1."""
    warn_cold_fraction: float = 0.1
    """Warn when more than this share of the held-out rows is dropped as cold (user or item
    absent from train): the metrics then speak for fewer users than the data holds. In [0, 1]."""
    max_cold_fraction: float = 0.5
    """Fail when more than this share of the held-out rows is dropped as cold: metrics on the
    rest would not describe the run's data. In [0, 1]."""

    @field_validator("warn_cold_fraction", "max_cold_fraction")
    @classmethod
    def _cold_fraction_range(cls, value: float, info) -> float:
        return check_range(info.field_name, value, 0.0, 1.0, low_open=False, high_open=False)

    @field_validator("test_fraction")
    @classmethod
    def _test_fraction_range(cls, value: float) -> float:
        return check_range("test_fraction", value, 0.0, 1.0, low_open=True, high_open=True)

    @field_validator("validation_fraction")
    @classmethod
    def _validation_fraction_range(cls, value: float) -> float:
        return check_range("validation_fraction", value, 0.0, 1.0, low_open=False, high_open=True)

    @field_validator("last_n")
    @classmethod
    def _last_n_range(cls, value: int) -> int:
        return int(check_range("last_n", value, 1, None, low_open=False, high_open=True))

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: int) -> int:
        return int(check_range("seed", value, 0, 2**32, low_open=False, high_open=True))

    @field_validator("tfidf_max_features")
    @classmethod
    def _tfidf_range(cls, value: int) -> int:
        return int(
            check_range("tfidf_max_features", value, 1, None, low_open=False, high_open=True)
        )

    @field_validator("cutoff")
    @classmethod
    def _cutoff_parses(cls, value: int | float | str | None) -> int | float | str | None:
        if value is not None:
            to_epoch_seconds(value)
        return value

    @model_validator(mode="after")
    def _cutoff_needed(self) -> "FeatureConfig":
        if self.split == "temporal_cutoff" and self.cutoff is None:
            raise ValueError("cutoff is required when split='temporal_cutoff'")
        return self

    @property
    def cutoff_epoch(self) -> int | None:
        """``cutoff`` as integer epoch seconds (None when unset)."""
        return None if self.cutoff is None else to_epoch_seconds(self.cutoff)


def to_epoch_seconds(value: int | float | str) -> int:
    """Epoch seconds from a number or an ISO date/time string (naive times are UTC).

    Raises ValueError naming ``cutoff`` when the string does not parse.
    """
    if isinstance(value, bool):
        raise ValueError(f"cutoff must be epoch seconds or an ISO date/time, got {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    text = value.strip()
    try:
        return int(float(text))
    except ValueError:
        pass
    message = f"cutoff must be epoch seconds or an ISO date/time, got {value!r}"
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(message) from exc
    if stamp is pd.NaT:
        raise ValueError(message)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp())


def parse_feature_config(config: FeatureConfig | dict[str, Any] | None) -> FeatureConfig:
    """Validate a dict (Airflow Params, CLI, tests) into a FeatureConfig.

    Raises ConfigError whose message names each offending field and its allowed range.
    """
    if isinstance(config, FeatureConfig):
        return config
    try:
        return FeatureConfig(**(config or {}))
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"invalid feature config: {problems}") from None
    except TypeError as exc:
        raise ConfigError(f"invalid feature config: {exc}") from None


def _describe(err: Any) -> str:
    field = ".".join(str(part) for part in err["loc"]) or "config"
    message = str(err["msg"]).removeprefix("Value error, ")
    return message if message.startswith(field) else f"{field}: {message}"
