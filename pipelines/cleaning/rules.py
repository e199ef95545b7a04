"""Row rules: pure functions over one pandas partition (used with ``map_partitions``).

Each row gets the first rule it fails, in this order, or no reason when it passes:

1. ``missing_user_id``       user id empty or missing
2. ``missing_item_id``       item id empty or missing
3. ``missing_rating``        rating empty or missing
4. ``non_numeric_rating``    rating present but not a number ("four")
5. ``rating_out_of_range``   rating outside [rating_min, rating_max] (or infinite)
6. ``missing_timestamp``     timestamp empty or missing
7. ``unparsable_timestamp``  neither a number nor an ISO-8601 date/time
8. ``future_timestamp``      later than the reference time plus the allowed skew

Ids become stripped text, with a float's integral ".0" dropped ("12.0" -> "12"). Timestamps
become int64 epoch seconds: numbers are epoch seconds, or milliseconds when above 1e11;
text that is not a number is read as ISO-8601 (no offset means UTC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.constants import INTERACTION_COLUMNS, ITEM, RATING, REASON, SOURCE_ROW, TIMESTAMP, USER

MISSING_USER_ID = "missing_user_id"
MISSING_ITEM_ID = "missing_item_id"
MISSING_RATING = "missing_rating"
NON_NUMERIC_RATING = "non_numeric_rating"
RATING_OUT_OF_RANGE = "rating_out_of_range"
MISSING_TIMESTAMP = "missing_timestamp"
UNPARSABLE_TIMESTAMP = "unparsable_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
REASONS = (
    MISSING_USER_ID,
    MISSING_ITEM_ID,
    MISSING_RATING,
    NON_NUMERIC_RATING,
    RATING_OUT_OF_RANGE,
    MISSING_TIMESTAMP,
    UNPARSABLE_TIMESTAMP,
    FUTURE_TIMESTAMP,
)  # the order the rules are applied in: the first failing rule wins

MILLISECONDS_ABOVE = 1e11  # epoch seconds reach 1e11 only in the year 5138
RAW_PREFIX = "raw_"
_LARGEST_SECONDS = 2.0**53  # beyond this a float no longer holds whole seconds exactly
_INTEGRAL_FLOAT = r"^([+-]?\d+)\.0*$"


def as_text(series: pd.Series) -> pd.Series:
    """Values as stripped text; missing values and empty strings become missing (NaN)."""
    text = series.astype("str").str.strip()
    return text.where(series.notna() & (text != ""))


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def normalize_ids(series: pd.Series) -> pd.Series:
    """Ids as stripped text, "12.0" -> "12" (ids that went through a float column); missing stays missing."""
    if pd.api.types.is_integer_dtype(series) and not pd.api.types.is_bool_dtype(series):
        # Fast path (most files): integers have no blanks nor ".0" to remove.
        return series.astype("str").where(series.notna())
    text = as_text(series)
    dotted = text.str.contains(".", regex=False, na=False)
    if dotted.any():  # the regex only where it can match: it costs more than the rest together
        text = text.where(~dotted, text[dotted].str.replace(_INTEGRAL_FLOAT, r"\1", regex=True))
    return text


def parse_ratings(series: pd.Series) -> pd.Series:
    """Ratings as float64; NaN where the value is missing or not a number."""
    if _is_number(series):
        return series.astype("float64")
    return pd.to_numeric(as_text(series), errors="coerce").astype("float64")


def _seconds_from_numbers(values: pd.Series) -> pd.Series:
    values = values.astype("float64")
    seconds = np.floor(values.where(values.abs() <= MILLISECONDS_ABOVE, values / 1000.0))
    return seconds.where(seconds.abs() < _LARGEST_SECONDS)  # inf and absurd values: unparsable


def _seconds_from_datetimes(stamps: pd.Series) -> pd.Series:
    """Datetimes (naive = UTC) -> float64 whole epoch seconds, NaN for NaT; in the series' own
    unit, so dates past 2262 (beyond nanosecond range) still convert."""
    seconds = pd.Series(np.nan, index=stamps.index, dtype="float64")
    present = stamps.notna()
    if present.any():
        whole = stamps[present].dt.floor("s").dt.as_unit("s")
        if whole.dt.tz is not None:
            whole = whole.dt.tz_convert("UTC").dt.tz_localize(None)
        seconds[present] = whole.astype("int64").astype("float64")
    return seconds


def parse_timestamps(series: pd.Series) -> pd.Series:
    """Timestamps as float64 epoch seconds (whole seconds); NaN where missing or unparsable.

    Accepts datetimes, epoch seconds, epoch milliseconds (values above 1e11) and ISO-8601 text.
    """
    if pd.api.types.is_datetime64_any_dtype(series):
        return _seconds_from_datetimes(series)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return _seconds_from_numbers(series)
    text = as_text(series)
    seconds = _seconds_from_numbers(pd.to_numeric(text, errors="coerce"))
    needs_date = text.notna() & seconds.isna()
    if needs_date.any():
        dates = pd.to_datetime(text[needs_date], errors="coerce", utc=True, format="ISO8601")
        seconds[needs_date] = _seconds_from_datetimes(dates)
    return seconds


def annotate_partition(
    frame: pd.DataFrame, rating_min: float, rating_max: float, latest_allowed: int
) -> pd.DataFrame:
    """Apply every rule to one partition of canonical interactions.

    Args:
        frame: ``user_id, item_id, rating, timestamp, source_row`` as the source gave them.
        rating_min, rating_max: the valid rating range (inclusive).
        latest_allowed: the latest valid timestamp (reference time + allowed skew), epoch seconds.

    Returns:
        One row per input row: typed ``user_id`` (str), ``item_id`` (str), ``rating`` (float64),
        ``timestamp`` (int64; 0 on rejected rows), ``source_row``, ``reason`` (str, missing when
        the row passes) and the original values as text in ``raw_<column>``.
    """
    users = normalize_ids(frame[USER])
    items = normalize_ids(frame[ITEM])
    ratings = parse_ratings(frame[RATING])
    seconds = parse_timestamps(frame[TIMESTAMP])
    conditions = [
        users.isna(),
        items.isna(),
        _missing(frame[RATING]),
        ratings.isna(),
        ~ratings.between(rating_min, rating_max),
        _missing(frame[TIMESTAMP]),
        seconds.isna(),
        seconds > latest_allowed,
    ]
    reason = np.select([c.to_numpy(dtype=bool) for c in conditions], list(REASONS), default="")
    out = pd.DataFrame(
        {
            USER: users,
            ITEM: items,
            RATING: ratings,
            TIMESTAMP: seconds.where(reason == "", 0).astype("int64"),
            SOURCE_ROW: frame[SOURCE_ROW].astype("int64"),
            REASON: pd.Series(reason, index=frame.index, dtype="str").replace("", np.nan),
        },
        index=frame.index,
    )
    # The original values as text are only kept for rejected rows (the quarantine), so only
    # those are converted: converting every row to text cost as much as all the rules.
    rejected = reason != ""
    for col in INTERACTION_COLUMNS:
        raw = pd.Series(np.nan, index=frame.index, dtype="str")
        if rejected.any():
            picked = frame[col][rejected]
            raw[rejected] = picked.astype("str").where(picked.notna())
        out[RAW_PREFIX + col] = raw
    return out


def _missing(series: pd.Series) -> pd.Series:
    """Missing values and blank text (what :func:`as_text` turns into NaN)."""
    if _is_number(series) or pd.api.types.is_datetime64_any_dtype(series):
        return series.isna()
    return as_text(series).isna()


def annotated_meta() -> pd.DataFrame:
    """The empty frame :func:`annotate_partition` returns (its column types), for Dask's ``meta``."""
    frame = pd.DataFrame({col: pd.Series([], dtype="str") for col in INTERACTION_COLUMNS})
    frame[SOURCE_ROW] = pd.Series([], dtype="int64")
    return annotate_partition(frame, 0.0, 1.0, 0)


def valid_partition(annotated: pd.DataFrame) -> pd.DataFrame:
    """The rows that passed every rule: typed columns and ``source_row``."""
    return annotated.loc[annotated[REASON].isna(), [*INTERACTION_COLUMNS, SOURCE_ROW]]


def quarantine_partition(annotated: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows: original values as text, ``source_row`` and ``reason``."""
    rejected = annotated.loc[annotated[REASON].notna()]
    out = rejected[[RAW_PREFIX + col for col in INTERACTION_COLUMNS]]
    out = out.rename(columns={RAW_PREFIX + col: col for col in INTERACTION_COLUMNS})
    return out.assign(**{SOURCE_ROW: rejected[SOURCE_ROW], REASON: rejected[REASON]})
