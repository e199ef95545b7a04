"""Trials over a real threads-mode Dask cluster (LocalCluster(processes=False), loopback dashboard)."""

from __future__ import annotations

import time

import pytest

from pipelines.training.config import TrainConfig
from pipelines.tuning.study import tune_model

ALS_SPACE = {
    "factors": {"type": "int", "low": 4, "high": 16},
    "regularization": {"type": "float", "low": 1.0, "high": 50.0},
}
ALS = TrainConfig(model="als", params={"factors": 8, "iterations": 5})


@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        with Client(cluster) as client:
            yield client


def test_trials_run_in_parallel_on_a_local_dask_cluster(planted, dask_client):
    result = tune_model(ALS, planted, {"n_trials": 4, "n_parallel": 2, "search_space": ALS_SPACE}, client=dask_client)
    assert result.n_complete == 4
    assert sorted(result.trials["number"]) == [0, 1, 2, 3]
    # Releasing futures is asynchronous on the scheduler: give it a moment before checking.
    deadline = time.monotonic() + 30
    while dask_client.who_has() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not dask_client.who_has(), "the scattered data and trial futures are released"


def test_pruning_works_on_the_cluster(planted, dask_client, toy_family):
    tuning = {
        "n_trials": 10,
        "n_parallel": 2,
        "search_space": {"noise": {"type": "float", "low": 0.0, "high": 1.0}},
        "pruner_startup_trials": 2,
        "sampler_startup_trials": 10,
        "seed": 0,
    }
    result = tune_model(TrainConfig(model=toy_family, params={"epochs": 6}), planted, tuning, client=dask_client)
    assert result.n_pruned >= 1 and result.n_complete >= 2


def test_run_tuning_opens_a_threads_cluster_for_parallel_trials(planted, tmp_path, monkeypatch):
    from tuning_fixtures import write_feature_set

    from pipelines.tuning.run import run_tuning

    monkeypatch.delenv("RECSYS_DASK_SCHEDULER", raising=False)
    features_uri = write_feature_set(planted, tmp_path / "features")
    out = run_tuning(
        ALS,
        str(features_uri),
        {"n_trials": 3, "n_parallel": 2, "search_space": ALS_SPACE},
        str(tmp_path / "lake"),
        "run-1",
    )
    assert out["n_complete"] == 3 and out["run_id"] is None
    assert out["trials_uri"].startswith(str(tmp_path / "lake" / "tuning" / "run-1" / "als"))
