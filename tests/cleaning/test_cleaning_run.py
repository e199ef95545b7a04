"""run_cleaning: dedup, k-core, the rejected-fraction ceiling, idempotency and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cleaning_fixtures import BAD_INPUT, assert_counts_add_up, clean_csv, ingest_csv, write_events

from pipelines.cleaning.run import run_cleaning
from pipelines.errors import ConfigError, DataError, RejectedFractionError


def test_dedup_keeps_the_latest_event_and_breaks_ties_by_source_row(tmp_path, lake):
    path = write_events(
        tmp_path,
        """
        u1,i1,2.0,100
        u1,i1,5.0,300
        u1,i1,3.0,200
        u2,i1,1.0,100
        u2,i1,4.0,100
        u2,i2,3.0,50
        """,
    )
    result = clean_csv(path, lake)
    assert (result["rows_clean"], result["duplicates_dropped"]) == (3, 3)
    clean = pd.read_parquet(result["clean_uri"]).set_index(["user_id", "item_id"])["rating"].to_dict()
    assert clean == {("u1", "i1"): 5.0, ("u2", "i1"): 4.0, ("u2", "i2"): 3.0}


def test_dedup_off_keeps_every_event(tmp_path, lake):
    path = write_events(tmp_path, "u1,i1,2.0,100\nu1,i1,5.0,300\n")
    result = clean_csv(path, lake, dedup=False)
    assert (result["rows_clean"], result["duplicates_dropped"]) == (2, 0)


def test_kcore_removes_sparse_users_and_items_iteratively(tmp_path, lake):
    path = write_events(
        tmp_path,
        """
        u1,i1,4,1
        u1,i2,4,2
        u2,i1,4,3
        u2,i2,4,4
        u3,i2,4,5
        u3,i3,4,6
        u4,i3,4,7
        u1,i1,4,8
        """,
    )
    result = clean_csv(path, lake, kcore=2)
    assert (result["rows_clean"], result["duplicates_dropped"], result["kcore_dropped"]) == (4, 1, 3)
    clean = pd.read_parquet(result["clean_uri"])
    assert set(clean["user_id"]) == {"u1", "u2"} and set(clean["item_id"]) == {"i1", "i2"}
    assert sorted(p.name for p in (lake / "clean" / "run").iterdir()) == ["interactions", "manifest.json", "quarantine", "report.json"]


def test_ceiling_error_names_snapshot_counts_fraction_and_top_reasons(lake):
    path = BAD_INPUT / "rule_order.csv"  # 3 of 4 rows are bad
    snapshot = ingest_csv(path, lake, "too-many")
    with pytest.raises(RejectedFractionError) as info:
        run_cleaning({"max_rejected_fraction": 0.05}, snapshot["snapshot_uri"], lake, "too-many")
    message = str(info.value)
    assert snapshot["snapshot_uri"] in message
    assert "quarantined 3 of 4 rows (75.00%)" in message
    assert "max_rejected_fraction=0.05 (5.00%)" in message
    assert "top reasons: missing_item_id=1, missing_user_id=1, rating_out_of_range=1" in message

    # Nothing is lost: the quarantine and the report were written before the error.
    root = lake / "clean" / "too-many"
    report = json.loads((root / "report.json").read_text())
    assert report["passed"] is False and report["rows_quarantined"] == 3
    assert len(pd.read_parquet(root / "quarantine")) == 3


def test_rerun_overwrites_its_partition(tmp_path, lake):
    path = write_events(tmp_path, "u1,i1,2.0,100\nu1,i1,5.0,300\nu2,i1,four,1\n")
    first = clean_csv(path, lake, max_rejected_fraction=0.5)
    root = lake / "clean" / "run"
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    (root / "interactions" / "part.999.parquet").write_bytes(b"stale")
    second = run_cleaning({"max_rejected_fraction": 0.5}, str(lake / "raw" / "run"), lake, "run")
    assert_counts_add_up(second)
    assert {k: v for k, v in second.items()} == first
    assert sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) == files


def test_missing_snapshot_and_columns_are_named(tmp_path, lake):
    with pytest.raises(DataError, match="snapshot .*nowhere.* does not exist"):
        run_cleaning({}, tmp_path / "nowhere", lake, "x")
    folder = tmp_path / "odd"
    folder.mkdir()
    pd.DataFrame({"user_id": ["1"], "item_id": ["2"]}).to_parquet(folder / "part.0.parquet")
    with pytest.raises(DataError, match="has no manifest.json: it is incomplete"):
        run_cleaning({}, folder, lake, "x")
    (folder / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match=r"missing column\(s\) \['rating', 'timestamp', 'source_row'\]"):
        run_cleaning({}, folder, lake, "x")


def test_invalid_cleaning_config_names_field_and_range(lake):
    with pytest.raises(ConfigError, match=r"max_rejected_fraction must be in \[0, 1\], got 1.5"):
        run_cleaning({"max_rejected_fraction": 1.5}, lake, lake, "x")
    with pytest.raises(ConfigError, match="rating_min must be <= rating_max"):
        run_cleaning({"rating_min": 5, "rating_max": 1}, lake, lake, "x")
    with pytest.raises(ConfigError, match=r"kcore must be in \[0, "):
        run_cleaning({"kcore": -1}, lake, lake, "x")


def test_reference_time_makes_the_future_rule_reproducible(tmp_path, lake):
    path = write_events(tmp_path, "u1,i1,2.0,100\nu1,i2,5.0,300\n")
    result = clean_csv(path, lake, reference_time=200, allow_future_seconds=50, max_rejected_fraction=1.0)
    assert result["reasons"] == {"future_timestamp": 1}


def test_empty_snapshot_cleans_to_nothing(tmp_path, lake):
    path = write_events(tmp_path, "")
    result = clean_csv(path, lake)
    assert result["rows_in"] == result["rows_clean"] == 0
    assert list(pd.read_parquet(result["clean_uri"]).columns) == ["user_id", "item_id", "rating", "timestamp"]
