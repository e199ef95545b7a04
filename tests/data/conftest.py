"""Fixtures for the data tests: a lake under tmp_path, small synthetic configs, a threads-only Dask client."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL_SYNTHETIC = {"n_users": 120, "n_items": 60, "interactions_per_user": 8, "n_factors": 4, "n_partitions": 3}


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """An empty lake root for one test."""
    return tmp_path / "lake"


@pytest.fixture
def small_synthetic() -> dict:
    """A synthetic source small enough for a fast test (three partitions)."""
    return {"source": "synthetic", **SMALL_SYNTHETIC}


@pytest.fixture(scope="module")
def threads_client():
    """A small distributed client on worker threads, closed after the module.

    Its HTTP servers listen on loopback only: in this distributed version ``dashboard_address=None``
    still serves on all interfaces (port 8787 or a random one).
    """
    from distributed import Client, LocalCluster

    loopback = "127.0.0.1:0"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        dashboard_address=loopback,
        worker_dashboard_address=loopback,
    ) as cluster:
        with Client(cluster) as client:
            yield client
