"""The one Dask client factory: local threads, forked processes, an external scheduler, GPU fallback."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipelines.compute.dask_cluster import DaskConfig, dask_client, resolve_scheduler_address
from pipelines.errors import ConfigError


def _sum_of_squares(client) -> int:
    return client.submit(lambda n: sum(i * i for i in range(n)), 100).result()


@pytest.fixture(autouse=True)
def _no_scheduler_in_the_environment(monkeypatch):
    for name in ("RECSYS_DASK_SCHEDULER", "RECSYS_DASK_CONN_ID"):
        monkeypatch.delenv(name, raising=False)


def test_local_threads_cluster():
    with dask_client() as client:
        assert _sum_of_squares(client) == 328350
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1 and all(addr.startswith("inproc://") for addr in workers)


@pytest.mark.slow
def test_forked_process_workers():
    import dask

    config = {"processes": True, "n_workers": 2, "threads_per_worker": 1, "memory_limit": "300MiB"}
    with dask_client(config) as client:
        assert _sum_of_squares(client) == 328350
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
        assert {w["memory_limit"] for w in workers.values()} == {300 * 2**20}
        # A nanny restarting a worker (past its memory limit, after a crash) must fork again, not
        # spawn a process that re-runs the entry script (under Airflow: the `airflow` command).
        assert dask.config.get("distributed.worker.multiprocessing-method") == "fork"


def test_the_memory_limit_reaches_the_threads_cluster():
    with dask_client({"memory_limit": "1GiB"}) as client:
        assert [w["memory_limit"] for w in client.scheduler_info()["workers"].values()] == [2**30]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def external_scheduler(tmp_path_factory) -> Iterator[str]:
    """A real ``dask scheduler`` and one worker named 'external-worker' on a free loopback port."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    logs = open(tmp_path_factory.mktemp("dask") / "dask.log", "w")
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
        yield address
    finally:
        for proc in (worker, scheduler):
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        logs.close()


def _assert_uses_external_worker(client, address: str) -> None:
    deadline = time.monotonic() + 60
    while not client.scheduler_info()["workers"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert client.scheduler.address == address
    assert [w["name"] for w in client.scheduler_info()["workers"].values()] == ["external-worker"]
    assert _sum_of_squares(client) == 328350


@pytest.mark.slow
@pytest.mark.integration
def test_external_scheduler_from_environment(monkeypatch, external_scheduler):
    monkeypatch.setenv("RECSYS_DASK_SCHEDULER", external_scheduler)
    assert resolve_scheduler_address(DaskConfig()) == external_scheduler
    with dask_client() as client:
        _assert_uses_external_worker(client, external_scheduler)


@pytest.mark.slow
@pytest.mark.integration
def test_external_scheduler_from_an_airflow_connection(monkeypatch, external_scheduler):
    # Defined as Airflow reads connections from the environment; it wins over $RECSYS_DASK_SCHEDULER.
    monkeypatch.setenv("AIRFLOW_CONN_RECSYS_DASK", external_scheduler)
    monkeypatch.setenv("RECSYS_DASK_CONN_ID", "recsys_dask")
    monkeypatch.setenv("RECSYS_DASK_SCHEDULER", "tcp://127.0.0.1:1")
    with dask_client() as client:
        _assert_uses_external_worker(client, external_scheduler)


def test_scheduler_address_resolution_order(monkeypatch):
    assert resolve_scheduler_address(DaskConfig()) is None
    monkeypatch.setenv("RECSYS_DASK_SCHEDULER", "tcp://env-host:1")
    assert resolve_scheduler_address(DaskConfig()) == "tcp://env-host:1"
    monkeypatch.setenv("AIRFLOW_CONN_DASK_ENV", "tcp://conn-host:2")
    monkeypatch.setenv("RECSYS_DASK_CONN_ID", "dask_env")
    assert resolve_scheduler_address(DaskConfig()) == "tcp://conn-host:2"
    # JSON, as Airflow accepts it: the schema names the protocol, the port defaults to the scheduler's.
    monkeypatch.setenv("AIRFLOW_CONN_DASK_TLS", json.dumps({"conn_type": "generic", "host": "secure", "schema": "tls"}))
    assert resolve_scheduler_address(DaskConfig(scheduler_conn_id="dask_tls")) == "tls://secure:8786"
    assert resolve_scheduler_address(DaskConfig(scheduler_address="tcp://given:3", scheduler_conn_id="dask_tls")) \
        == "tcp://given:3"


def test_a_missing_scheduler_connection_names_the_id_and_the_fix(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_DASK", raising=False)
    with pytest.raises(ConfigError, match="'no_such_dask'.*airflow connections add no_such_dask --conn-uri tcp://"):
        resolve_scheduler_address(DaskConfig(scheduler_conn_id="no_such_dask"))
    monkeypatch.setenv("AIRFLOW_CONN_HOSTLESS", "tcp://:8786")
    with pytest.raises(ConfigError, match="'hostless' has no host.*AIRFLOW_CONN_HOSTLESS=tcp://"):
        resolve_scheduler_address(DaskConfig(scheduler_conn_id="hostless"))


def test_gpu_cluster_without_gpu_falls_back_with_a_warning(monkeypatch, caplog):
    from pipelines.compute.backend import gpu_available

    if gpu_available()[0]:
        pytest.skip("a GPU is present: the fallback path is not taken")
    with caplog.at_level(logging.WARNING, logger="pipelines.compute.dask_cluster"):
        with dask_client({"gpu": True}) as client:
            assert _sum_of_squares(client) == 328350
    assert "GPU Dask cluster requested but" in caplog.text


def test_config_is_validated():
    with pytest.raises(ValueError, match="n_workers"):
        DaskConfig(n_workers=0)
