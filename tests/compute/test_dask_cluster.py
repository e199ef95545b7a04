"""The one Dask client factory: local threads, forked processes, an external scheduler, GPU fallback."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.compute.dask_cluster import DaskConfig, dask_client, resolve_scheduler_address


def _sum_of_squares(client) -> int:
    return client.submit(lambda n: sum(i * i for i in range(n)), 100).result()


def test_local_threads_cluster(monkeypatch):
    monkeypatch.delenv("RECSYS_DASK_SCHEDULER", raising=False)
    with dask_client() as client:
        assert _sum_of_squares(client) == 328350
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1 and all(addr.startswith("inproc://") for addr in workers)


@pytest.mark.slow
def test_forked_process_workers(monkeypatch):
    monkeypatch.delenv("RECSYS_DASK_SCHEDULER", raising=False)
    with dask_client({"processes": True, "n_workers": 2, "threads_per_worker": 1}) as client:
        assert _sum_of_squares(client) == 328350
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(addr.startswith("tcp://127.0.0.1:") for addr in workers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.integration
def test_external_scheduler_from_environment(monkeypatch, tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    logs = open(tmp_path / "dask.log", "w")
    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
        stdout=logs, stderr=subprocess.STDOUT, start_new_session=True,
    )
    worker = subprocess.Popen(
        [str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
         "--dashboard-address", "127.0.0.1:0", "--name", "external-worker"],
        stdout=logs, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        monkeypatch.setenv("RECSYS_DASK_SCHEDULER", address)
        assert resolve_scheduler_address(DaskConfig()) == address
        with dask_client() as client:
            deadline = time.monotonic() + 60
            while not client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.5)
            assert client.scheduler.address == address
            assert [w["name"] for w in client.scheduler_info()["workers"].values()] == ["external-worker"]
            assert _sum_of_squares(client) == 328350
    finally:
        for proc in (worker, scheduler):
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        logs.close()


def test_gpu_cluster_without_gpu_falls_back_with_a_warning(monkeypatch, caplog):
    from pipelines.compute.backend import gpu_available

    if gpu_available()[0]:
        pytest.skip("a GPU is present: the fallback path is not taken")
    monkeypatch.delenv("RECSYS_DASK_SCHEDULER", raising=False)
    with caplog.at_level(logging.WARNING, logger="pipelines.compute.dask_cluster"):
        with dask_client({"gpu": True}) as client:
            assert _sum_of_squares(client) == 328350
    assert "GPU Dask cluster requested but" in caplog.text


def test_config_is_validated():
    with pytest.raises(ValueError, match="n_workers"):
        DaskConfig(n_workers=0)
