"""run_ingest: the snapshot layout, the manifest, idempotent re-runs and a deterministic hash."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.data.ingest import run_ingest
from pipelines.errors import ConfigError


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_synthetic_snapshot_layout_and_manifest(small_synthetic: dict, lake: Path):
    result = run_ingest(small_synthetic, lake, "run 1")  # run keys are made filesystem-safe
    root = lake / "raw" / "run_1"
    assert result["snapshot_uri"] == str(root / "interactions")
    assert result["items_uri"] == str(root / "items.parquet")
    assert _files(root) == [
        "interactions/part.00000.parquet",
        "interactions/part.00001.parquet",
        "interactions/part.00002.parquet",
        "items.parquet",
        "manifest.json",
    ]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["rows"] == result["rows"] == len(pd.read_parquet(result["snapshot_uri"]))
    assert manifest["sha256"] == result["sha256"] and len(result["sha256"]) == 64
    assert manifest["items_rows"] == small_synthetic["n_items"]
    assert manifest["source"].startswith("synthetic(n_users=120")
    assert "created_at" in manifest


def test_rerun_overwrites_with_same_rows_hash_and_files(small_synthetic: dict, lake: Path):
    first = run_ingest(small_synthetic, lake, "again")
    root = lake / "raw" / "again"
    before = _files(root)
    (root / "interactions" / "part.99999.parquet").write_bytes(b"stale")  # must not survive a re-run
    second = run_ingest(small_synthetic, lake, "again")
    assert (second["rows"], second["sha256"]) == (first["rows"], first["sha256"])
    assert _files(root) == before


def test_hash_follows_content(small_synthetic: dict, lake: Path):
    one = run_ingest(small_synthetic, lake, "a")
    other = run_ingest({**small_synthetic, "seed": 43}, lake, "b")
    assert one["sha256"] != other["sha256"]


def test_same_results_on_a_distributed_client(small_synthetic: dict, lake: Path, threads_client):
    from pipelines.cleaning.run import run_cleaning

    local = run_ingest(small_synthetic, lake, "threads")
    distributed = run_ingest(small_synthetic, lake, "client", client=threads_client)
    assert distributed["sha256"] == local["sha256"]
    assert distributed["rows"] == local["rows"]

    cleaned = run_cleaning({"kcore": 3}, distributed["snapshot_uri"], lake, "client", client=threads_client)
    expected = run_cleaning({"kcore": 3}, local["snapshot_uri"], lake, "threads")
    assert {k: v for k, v in cleaned.items() if not k.endswith("_uri")} == {
        k: v for k, v in expected.items() if not k.endswith("_uri")
    }
    assert cleaned["rows_in"] == cleaned["rows_clean"] + cleaned["kcore_dropped"]


def test_csv_source_has_no_items(tmp_path: Path, lake: Path):
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating,timestamp\n1,2,3.0,964982703\n")
    result = run_ingest({"source": "csv", "path": str(path)}, lake, "csv")
    assert result["items_uri"] is None and result["rows"] == 1
    assert json.loads(Path(result["manifest_uri"]).read_text())["items_rows"] is None


def test_invalid_config_fails_before_writing(lake: Path):
    with pytest.raises(ConfigError, match="n_users must be in"):
        run_ingest({"n_users": 0}, lake, "bad")
    assert not (lake / "raw" / "bad").exists()
