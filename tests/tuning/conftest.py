"""Fixtures for the tuning tests: planted data and a toy family registered for one test."""

from __future__ import annotations

import pytest

from tuning_fixtures import TOY_FAMILY, TOY_TARGET, planted_features


@pytest.fixture(scope="session")
def planted():
    return planted_features()


@pytest.fixture
def toy_family(monkeypatch) -> str:
    """Registers the toy per-epoch model under ``toy_epochs`` for the duration of a test."""
    from pipelines.models import MODEL_FAMILIES

    monkeypatch.setitem(MODEL_FAMILIES, TOY_FAMILY, TOY_TARGET)
    return TOY_FAMILY
