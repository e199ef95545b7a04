"""The row rules as pure functions on pandas frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.cleaning.kcore import kcore_mask, kcore_members
from pipelines.cleaning.rules import (
    REASONS,
    annotate_partition,
    annotated_meta,
    normalize_ids,
    parse_ratings,
    parse_timestamps,
    quarantine_partition,
    valid_partition,
)


def test_ids_are_stripped_text_without_float_suffix():
    ids = normalize_ids(pd.Series([" 12 ", "12.0", "12.50", "a.0b"]))
    assert ids.tolist() == ["12", "12", "12.50", "a.0b"]
    assert normalize_ids(pd.Series(["", "  ", None])).isna().all()
    assert normalize_ids(pd.Series([12.0, np.nan, 3.5])).tolist()[::2] == ["12", "3.5"]


def test_ratings_parse_numbers_only():
    parsed = parse_ratings(pd.Series(["4", " 4.5 ", "four", None, "1e0"]))
    assert parsed.tolist()[:2] == [4.0, 4.5] and parsed.tolist()[4] == 1.0
    assert parsed.iloc[2:4].isna().all()
    assert parse_ratings(pd.Series([3, 4])).dtype == np.float64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("964982703", 964982703),
        ("964982703.9", 964982703),
        ("964982703123", 964982703),  # milliseconds
        (964982703123, 964982703),
        ("2000-07-30T18:45:03Z", 964982703),
        ("2000-07-30T20:45:03+02:00", 964982703),
        ("2000-07-30 18:45:03", 964982703),  # no offset: UTC
        ("2000-07-30", 964915200),
        (pd.Timestamp("2000-07-30T18:45:03"), 964982703),
    ],
)
def test_timestamps_become_epoch_seconds(value, expected):
    assert parse_timestamps(pd.Series([value])).iloc[0] == expected


@pytest.mark.parametrize("value", ["yesterday", "2020-13-45", "inf", "1e40", None, ""])
def test_unusable_timestamps_are_nan(value):
    assert np.isnan(parse_timestamps(pd.Series([value], dtype=object)).iloc[0])


def _frame(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"], dtype=object)
    frame["source_row"] = np.arange(len(frame), dtype="int64")
    return frame


def test_annotate_tags_the_first_failing_rule_in_documented_order():
    rows = [
        ["1", "a", "4", "100"],  # valid
        [None, None, None, None],  # everything missing: the user rule comes first
        ["1", "", "x", "y"],
        ["1", "a", None, "y"],
        ["1", "a", "x", None],
        ["1", "a", "9", None],
        ["1", "a", "4", None],
        ["1", "a", "4", "y"],
        ["1", "a", "4", "999"],
    ]
    annotated = annotate_partition(_frame(rows), 0.0, 5.0, latest_allowed=500)
    assert pd.isna(annotated["reason"].iloc[0])
    assert annotated["reason"].iloc[1:].tolist() == list(REASONS)
    assert list(annotated.dtypes.astype(str)) == list(annotated_meta().dtypes.astype(str))


def test_future_rule_honours_the_allowed_skew():
    frame = _frame([["1", "a", "4", "1000"], ["1", "b", "4", "1001"]])
    annotated = annotate_partition(frame, 0.0, 5.0, latest_allowed=1000)
    assert annotated["reason"].isna().tolist() == [True, False]


def test_valid_and_quarantine_split():
    annotated = annotate_partition(_frame([["1.0", "a", "4", "100"], ["2", "b", "four", "100"]]), 0.0, 5.0, 500)
    valid = valid_partition(annotated)
    assert valid.to_dict("records") == [
        {"user_id": "1", "item_id": "a", "rating": 4.0, "timestamp": 100, "source_row": 0}
    ]
    quarantine = quarantine_partition(annotated)
    expected = {"user_id": "2", "item_id": "b", "rating": "four", "timestamp": "100", "source_row": 1}
    assert quarantine.to_dict("records") == [{**expected, "reason": "non_numeric_rating"}]


def test_kcore_cascades_until_stable():
    # u4 has one event -> i3 drops to one -> u3 drops to one -> only u1, u2 x i1, i2 remain.
    pairs = pd.DataFrame(
        [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u3", "i2"), ("u3", "i3"), ("u4", "i3")],
        columns=["user_id", "item_id"],
    )
    users, items = kcore_members(pairs, 2)
    assert list(users) == ["u1", "u2"] and list(items) == ["i1", "i2"]
    assert kcore_mask(np.array([0, 1]), np.array([0, 0]), 1).all()
    assert kcore_mask(np.array([], dtype=int), np.array([], dtype=int), 3).shape == (0,)
