"""Helpers shared by the cleaning tests: small CSVs through ingest, then cleaning."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.cleaning.run import run_cleaning
from pipelines.data.ingest import run_ingest

BAD_INPUT = Path(__file__).resolve().parents[1] / "fixtures" / "bad_input"
COUNT_KEYS = ("rows_clean", "rows_quarantined", "duplicates_dropped", "kcore_dropped")


def ingest_csv(path: Path, lake: Path, key: str) -> dict[str, Any]:
    """Ingest one CSV file into ``lake`` under ``key``."""
    return run_ingest({"source": "csv", "path": str(path)}, lake, key)


def write_events(folder: Path, text: str, name: str = "events.csv") -> Path:
    """A CSV with the canonical header followed by ``text`` (dedented)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("user_id,item_id,rating,timestamp\n" + textwrap.dedent(text).lstrip())
    return path


def clean_csv(path: Path, lake: Path, key: str = "run", **cleaning: Any) -> dict[str, Any]:
    """Ingest ``path`` and clean it; checks the report adds up and matches the result."""
    snapshot = ingest_csv(path, lake, key)
    result = run_cleaning(cleaning, snapshot["snapshot_uri"], lake, key)
    assert_counts_add_up(result)
    return result


def assert_counts_add_up(result: dict[str, Any]) -> None:
    """rows_in == clean + quarantined + duplicates + k-core, in the result and in report.json."""
    report = json.loads(Path(result["report_uri"]).read_text())
    assert report["rows_in"] == sum(report[key] for key in COUNT_KEYS)
    for key in ("rows_in", *COUNT_KEYS):
        assert report[key] == result[key], key
    assert report["rows_quarantined"] == sum(report["reasons"].values())
    assert len(pd.read_parquet(result["clean_uri"])) == report["rows_clean"]
    assert len(pd.read_parquet(result["quarantine_uri"])) == report["rows_quarantined"]
