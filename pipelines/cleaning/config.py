"""The cleaning step's configuration."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from pipelines.data.config import format_bound, validate_config

_RANGES: dict[str, tuple[float, float]] = {
    "rating_min": (-1e6, 1e6),
    "rating_max": (-1e6, 1e6),
    "allow_future_seconds": (0, 10 * 365 * 86_400),
    "max_rejected_fraction": (0.0, 1.0),
    "kcore": (0, 1_000_000),
    "reference_time": (0, 2**40),
}


class CleaningConfig(BaseModel):
    """Which rows are valid, how duplicates and sparse users/items are handled, and when to fail."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    rating_min: float = 0.0
    """Lowest valid rating (inclusive)."""
    rating_max: float = 5.0
    """Highest valid rating (inclusive)."""
    allow_future_seconds: int = 0
    """Tolerated clock skew: timestamps up to this many seconds after the reference time pass."""
    max_rejected_fraction: float = 0.05
    """Fail the step when quarantined rows / input rows exceeds this (after writing everything)."""
    kcore: int = 0
    """Iteratively drop users and items with fewer than this many interactions; 0 turns it off."""
    dedup: bool = True
    """Keep one row per (user, item): the latest event (ties: the later source row)."""
    reference_time: int | None = None
    """'Now' for the future-timestamp rule, in epoch seconds; None: the time the step runs."""

    @field_validator(*_RANGES, mode="after")
    @classmethod
    def _in_range(cls, value: Any, info: Any) -> Any:
        low, high = _RANGES[info.field_name]
        if value is not None and not low <= value <= high:
            raise ValueError(f"{info.field_name} must be in [{format_bound(low)}, {format_bound(high)}], got {value!r}")
        return value

    @model_validator(mode="after")
    def _ordered_bounds(self) -> CleaningConfig:
        if self.rating_min > self.rating_max:
            raise ValueError(
                f"rating_min must be <= rating_max, got rating_min={self.rating_min:g} > rating_max={self.rating_max:g}"
            )
        return self


def load_cleaning_config(config: CleaningConfig | dict[str, Any] | None) -> CleaningConfig:
    """Validate a cleaning config given as a dict or a CleaningConfig.

    Raises:
        ConfigError: naming each invalid field and its allowed range.
    """
    return validate_config(CleaningConfig, config, "cleaning")
