"""Fixtures for the features tests: tiny clean partitions written under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from feature_fixtures import make_interactions, make_items, write_clean


@pytest.fixture
def interactions() -> pd.DataFrame:
    return make_interactions()


@pytest.fixture
def clean_uri(tmp_path: Path, interactions: pd.DataFrame) -> Path:
    return write_clean(tmp_path / "lake", interactions)


@pytest.fixture
def items_uri(tmp_path: Path) -> Path:
    path = tmp_path / "lake" / "raw" / "run1" / "items.parquet"
    path.parent.mkdir(parents=True)
    make_items(skip=(5,)).to_parquet(path, index=False)
    return path
