"""Where a candidate's fit runs (pipelines.training.remote): placement, GPU resources, errors.

Real in-process Dask clusters on loopback: one whose workers declare no resource, and a mixed
one (one CPU worker, one worker declaring ``GPU=1``), as a dask-cuda worker would.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipelines.compute.dask_cluster import DaskConfig
from pipelines.errors import ConfigError, DataError
from pipelines.training.config import TrainConfig
from pipelines.training.remote import fit_placement, fit_resources, requested_device
from pipelines.training.run import run_training

SMALL_ALS = {"factors": 8, "iterations": 4}


@pytest.fixture(autouse=True)
def _no_cluster_from_the_environment(monkeypatch):
    for name in ("RECSYS_DASK_SCHEDULER", "RECSYS_FIT_ON", "RECSYS_DEVICE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def features_uri(tmp_path_factory) -> str:
    """A small synthetic feature set made by the real ingest, cleaning and features steps."""
    from pipelines.cleaning.run import run_cleaning
    from pipelines.data.ingest import run_ingest
    from pipelines.features.run import run_features

    lake = tmp_path_factory.mktemp("lake")
    ingested = run_ingest({"source": "synthetic", "n_users": 120, "n_items": 60, "interactions_per_user": 12},
                          lake, "remote-fit")
    cleaned = run_cleaning({}, ingested["snapshot_uri"], lake, "remote-fit")
    return run_features({}, cleaned["clean_uri"], ingested["items_uri"], lake, "remote-fit")["features_uri"]


def _cluster(gpu_worker: bool):
    """A scheduler with one plain worker, plus one declaring GPU=1 when ``gpu_worker``."""
    from distributed import Scheduler, SpecCluster, Worker

    workers = {"cpu": {"cls": Worker, "options": {"nthreads": 1, "host": "127.0.0.1"}}}
    if gpu_worker:
        workers["gpu"] = {"cls": Worker, "options": {"nthreads": 1, "host": "127.0.0.1", "resources": {"GPU": 1}}}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}
    return SpecCluster(workers=workers, scheduler=scheduler)


def test_placement_follows_fit_on_then_the_environment_then_the_scheduler_address(monkeypatch):
    assert fit_placement(DaskConfig()) == "local"  # the default: no address, no client, as before
    assert fit_placement(DaskConfig(scheduler_address="tcp://127.0.0.1:1")) == "cluster"
    assert fit_placement(DaskConfig(scheduler_address="tcp://127.0.0.1:1", fit_on="local")) == "local"
    assert fit_placement(DaskConfig(fit_on="cluster")) == "cluster"
    monkeypatch.setenv("RECSYS_DASK_SCHEDULER", "tcp://127.0.0.1:1")
    assert fit_placement(DaskConfig()) == "cluster"
    monkeypatch.setenv("RECSYS_FIT_ON", "local")
    assert fit_placement(DaskConfig()) == "local"
    assert fit_placement(DaskConfig(fit_on="cluster")) == "cluster"  # the config wins over the environment
    monkeypatch.setenv("RECSYS_FIT_ON", "worker")
    with pytest.raises(ConfigError, match=r"\$RECSYS_FIT_ON must be one of auto, local, cluster; got 'worker'"):
        fit_placement(DaskConfig())
    with pytest.raises(ValueError, match="fit_on"):
        DaskConfig(fit_on="elsewhere")


def test_requested_device_reads_params_family_default_and_environment(monkeypatch):
    assert requested_device(TrainConfig(model="als")) == "cpu"  # ALS's own default
    assert requested_device(TrainConfig(model="als", device="gpu")) == "gpu"
    assert requested_device(TrainConfig(model="ease", params={"device": "auto"})) == "auto"
    assert requested_device(TrainConfig(model="itemknn", device="gpu")) == "cpu"  # no device to put on a GPU
    assert requested_device(TrainConfig(model="ncf")) == "cpu"
    monkeypatch.setenv("RECSYS_DEVICE", "cuda:0")
    assert requested_device(TrainConfig(model="ncf")) == "gpu"


@pytest.mark.slow
def test_gpu_fits_ask_for_a_gpu_worker_only_when_the_cluster_has_one(caplog):
    from distributed import Client

    with _cluster(gpu_worker=True) as cluster, Client(cluster) as client:
        assert fit_resources(client, TrainConfig(model="als", device="gpu")) == {"GPU": 1}
        assert fit_resources(client, TrainConfig(model="als", device="auto")) == {"GPU": 1}
        assert fit_resources(client, TrainConfig(model="als", device="cpu")) is None
        assert fit_resources(client, TrainConfig(model="popularity")) is None
    with _cluster(gpu_worker=False) as cluster, Client(cluster) as client:
        with caplog.at_level(logging.WARNING, logger="pipelines.training.remote"):
            assert fit_resources(client, TrainConfig(model="als", device="auto")) is None
            assert _warnings(caplog) == []  # auto without a GPU worker: quietly any worker
            assert fit_resources(client, TrainConfig(model="als", device="gpu")) is None
    [warning] = _warnings(caplog)
    assert "no worker of the Dask cluster declares a GPU resource" in warning
    assert "--resources GPU=1" in warning


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pipelines.training.remote" and r.levelno >= logging.WARNING]


@pytest.mark.slow
def test_a_gpu_fit_runs_on_the_gpu_worker_and_matches_the_local_fit(features_uri, tmp_path):
    from distributed import Client, get_task_stream

    gpu_als = TrainConfig(model="als", params=SMALL_ALS, device="gpu")  # no GPU here: ALS falls back to CPU
    local = run_training(gpu_als, features_uri, str(tmp_path / "local"), "remote-fit")
    assert local["fit_on"] == "local"
    with _cluster(gpu_worker=True) as cluster, Client(cluster) as client:
        gpu_worker = next(addr for addr, w in client.scheduler_info()["workers"].items() if w["resources"])
        with get_task_stream(client) as stream:
            remote = run_training(gpu_als, features_uri, str(tmp_path / "remote"), "remote-fit",
                                  dask={"scheduler_address": cluster.scheduler_address})
        fits = [t for t in stream.data if t["key"].startswith("fit-als-")]
    assert remote["fit_on"] == cluster.scheduler_address
    assert [t["worker"] for t in fits] == [gpu_worker]
    assert Path(remote["bundle_uri"]).is_relative_to(tmp_path / "remote") and Path(remote["bundle_uri"]).is_dir()
    assert remote["metrics"].pop("fit_seconds") > 0 and local["metrics"].pop("fit_seconds") > 0
    assert remote["metrics"] == pytest.approx(local["metrics"], abs=1e-9)
    assert {"fit:als", "evaluate:als", "save:als"} <= set(remote["timings"])


@pytest.mark.slow
def test_errors_raised_on_the_worker_keep_their_type(features_uri, tmp_path):
    from distributed import Client

    from pipelines.task_failures import fail_fast_on_bad_input

    missing = str(tmp_path / "no-such-features")
    with _cluster(gpu_worker=False) as cluster, Client(cluster):
        dask = {"scheduler_address": cluster.scheduler_address}
        with pytest.raises(DataError) as local_error:
            run_training(TrainConfig(model="popularity"), missing, str(tmp_path), "bad", dask={"fit_on": "local"})
        with pytest.raises(DataError) as remote_error:
            run_training(TrainConfig(model="popularity"), missing, str(tmp_path), "bad", dask=dask)
        assert str(remote_error.value) == str(local_error.value)
        # ...so the task wrapper fails the Airflow task without retries, as for an in-process fit.
        from airflow.sdk.exceptions import AirflowFailException

        with pytest.raises(AirflowFailException, match="DataError \\(not retried\\)"):
            fail_fast_on_bad_input(run_training)(TrainConfig(model="popularity"), missing, str(tmp_path), "bad",
                                                 dask=dask)


@pytest.mark.slow
def test_a_cluster_without_workers_fails_the_fit_instead_of_waiting_forever(features_uri, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        dask = {"scheduler_address": cluster.scheduler_address, "no_worker_timeout": 2}
        with pytest.raises(RuntimeError, match="has had no worker for 2 s; start workers"):
            run_training(TrainConfig(model="popularity"), features_uri, str(tmp_path), "alone", dask=dask)
