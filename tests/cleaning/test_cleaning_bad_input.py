"""Every rule, end to end: a small bad-input CSV through ingest and cleaning."""

from __future__ import annotations

import pandas as pd
import pytest
from cleaning_fixtures import BAD_INPUT, clean_csv

from pipelines.cleaning.rules import REASONS

# rule -> the source rows of its fixture that must be quarantined for it
EXPECTED = {
    "missing_user_id": [1, 2],
    "missing_item_id": [1, 3],
    "missing_rating": [1],
    "non_numeric_rating": [1, 3],
    "rating_out_of_range": [1, 3],
    "missing_timestamp": [1],
    "unparsable_timestamp": [1, 2],
    "future_timestamp": [1, 2],
}


def test_every_rule_has_a_fixture():
    assert set(EXPECTED) == set(REASONS)
    assert all((BAD_INPUT / f"{rule}.csv").is_file() for rule in REASONS)


@pytest.mark.parametrize("rule", REASONS)
def test_rule_quarantines_its_rows(rule, lake):
    path = BAD_INPUT / f"{rule}.csv"
    result = clean_csv(path, lake, max_rejected_fraction=1.0)
    n_rows = len(pd.read_csv(path, dtype=str, skip_blank_lines=False))
    assert result["reasons"] == {rule: len(EXPECTED[rule])}
    assert (result["rows_in"], result["rows_quarantined"]) == (n_rows, len(EXPECTED[rule]))
    assert result["rows_clean"] == n_rows - len(EXPECTED[rule])

    quarantine = pd.read_parquet(result["quarantine_uri"]).sort_values("source_row")
    assert quarantine["source_row"].tolist() == EXPECTED[rule]
    assert set(quarantine["reason"]) == {rule}
    assert list(quarantine.columns) == ["user_id", "item_id", "rating", "timestamp", "source_row", "reason"]

    raw = pd.read_csv(path, dtype=str)
    original = raw.iloc[EXPECTED[rule]].reset_index(drop=True)  # quarantine keeps the original text
    kept = quarantine.drop(columns=["source_row", "reason"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, original, check_dtype=False)


def test_first_failing_rule_wins(lake):
    result = clean_csv(BAD_INPUT / "rule_order.csv", lake, max_rejected_fraction=1.0)
    quarantine = pd.read_parquet(result["quarantine_uri"]).sort_values("source_row")
    assert quarantine["reason"].tolist() == ["missing_user_id", "missing_item_id", "rating_out_of_range"]
    assert result["rows_clean"] == 1


def test_good_rows_are_typed(lake):
    result = clean_csv(BAD_INPUT / "future_timestamp.csv", lake, max_rejected_fraction=1.0)
    clean = pd.read_parquet(result["clean_uri"]).sort_values("timestamp")
    assert list(clean.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert str(clean["rating"].dtype) == "float64" and str(clean["timestamp"].dtype) == "int64"
    assert clean["timestamp"].tolist() == [964982703, 964982707]  # the second was in milliseconds
