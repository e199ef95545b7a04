"""Fixtures for the cleaning tests: a lake under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """An empty lake root for one test."""
    return tmp_path / "lake"
