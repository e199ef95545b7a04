"""The one place that makes a Dask client.

Resolution order: an explicit scheduler address, an Airflow connection (``scheduler_conn_id``,
else ``$RECSYS_DASK_CONN_ID``), ``$RECSYS_DASK_SCHEDULER``, a ``LocalCUDACluster`` when GPUs are
asked for and present, else a local cluster.

The local cluster runs worker *threads* by default: under Airflow's LocalExecutor, spawned
worker processes re-run the ``airflow`` entry script and cannot reach the metadata database
(see STACK_NOTES). ``processes=True`` switches to forked worker processes, which work there.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.constants import ENV_DASK_CONN_ID, ENV_DASK_SCHEDULER
from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_PORT = 8786
# Dask comm protocols a connection's conn_type or schema may name; anything else means tcp.
_PROTOCOLS = ("tcp", "tls", "ucx", "ws", "wss")


class DaskConfig(BaseModel):
    """How a step gets its Dask cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler_address: str | None = Field(
        None, description="tcp://host:port of an existing scheduler; overrides the local cluster"
    )
    scheduler_conn_id: str | None = Field(
        None, description="Airflow connection whose host and port (conn_type or schema tcp/tls) give the "
        "scheduler address; None: $RECSYS_DASK_CONN_ID. Used when scheduler_address is not given",
    )
    n_workers: int = Field(1, ge=1, le=256, description="local workers (processes mode) ")
    threads_per_worker: int | None = Field(
        None, ge=1, le=256, description="threads per local worker; default: all cores"
    )
    processes: bool = Field(False, description="forked worker processes instead of threads")
    memory_limit: str = Field(
        "auto", description="per-worker memory limit of the local cluster, e.g. '4GiB' ('auto': the machine's "
        "memory split among the workers); workers spill to disk, then pause, as they near it "
        "(distributed.worker.memory.* fractions). External workers set their own: dask worker --memory-limit",
    )
    gpu: bool = Field(False, description="use LocalCUDACluster (dask-cuda) when GPUs are present")
    fit_on: Literal["auto", "local", "cluster"] | None = Field(
        None,
        description="where each candidate's fit runs: 'local' in the calling process (the Airflow task), "
        "'cluster' as a Dask task on this config's cluster, 'auto' on the cluster only when an external "
        "scheduler is configured; None: $RECSYS_FIT_ON, else auto (see pipelines.training.remote)",
    )
    memory_stall_timeout: float = Field(
        180.0, gt=0, description="seconds a data step waits while a worker is paused at its memory limit and "
        "nothing runs, then cancels and fails with WorkerMemoryError (see pipelines.data.scheduling)",
    )
    no_worker_timeout: float = Field(
        300.0, gt=0, description="seconds a fit on the cluster waits while the cluster has no worker, then fails"
    )


def resolve_scheduler_address(config: DaskConfig) -> str | None:
    """The external scheduler to use, if any.

    In order: ``config.scheduler_address``; the Airflow connection ``config.scheduler_conn_id``,
    else ``$RECSYS_DASK_CONN_ID``; ``$RECSYS_DASK_SCHEDULER``; None (a local cluster).

    Raises:
        ConfigError: a connection id is given but no such connection exists, or it has no host.
    """
    if config.scheduler_address:
        return config.scheduler_address
    conn_id = config.scheduler_conn_id or os.environ.get(ENV_DASK_CONN_ID, "").strip()
    if conn_id:
        return scheduler_address_from_connection(conn_id)
    return os.environ.get(ENV_DASK_SCHEDULER) or None


def scheduler_address_from_connection(conn_id: str) -> str:
    """``protocol://host:port`` from the Airflow connection ``conn_id``, looked up as Airflow does:
    the ``AIRFLOW_CONN_<ID>`` environment variable first (a URI such as ``tcp://host:8786``, or
    JSON), then Airflow's connections (metadata database or secrets backend).

    The protocol is the connection's schema or conn_type when it names one Dask speaks (tcp, tls,
    ucx, ws, wss), else tcp; the port defaults to 8786.

    Raises:
        ConfigError: the connection is not defined anywhere, or has no host (names the id and how
            to define it).
    """
    how = (f"create it with `airflow connections add {conn_id} --conn-uri tcp://HOST:{DEFAULT_SCHEDULER_PORT}` "
           f"or set AIRFLOW_CONN_{conn_id.upper()}=tcp://HOST:{DEFAULT_SCHEDULER_PORT}")
    env = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if env:
        conn_type, host, port, schema = _parts_from_env(conn_id, env)
    else:
        try:
            from airflow.sdk import Connection  # lazily: importing Airflow costs seconds
        except ImportError:
            raise ConfigError(
                f"Dask scheduler conn_id {conn_id!r}: no AIRFLOW_CONN_{conn_id.upper()} variable and Airflow is "
                f"not installed; set AIRFLOW_CONN_{conn_id.upper()}=tcp://HOST:{DEFAULT_SCHEDULER_PORT}"
            ) from None
        try:
            conn = Connection.get(conn_id)
        except Exception as exc:  # the SDK raises different types inside and outside a task
            raise ConfigError(
                f"Dask scheduler conn_id {conn_id!r}: no such Airflow connection (nor AIRFLOW_CONN_{conn_id.upper()}, "
                f"{exc.__class__.__name__}); {how}"
            ) from None
        conn_type, host, port, schema = conn.conn_type, conn.host, conn.port, conn.schema
    if not host:
        raise ConfigError(f"Dask scheduler conn_id {conn_id!r} has no host; {how}")
    protocol = next((p for p in (schema, conn_type) if p and p.lower() in _PROTOCOLS), "tcp").lower()
    return f"{protocol}://{host}:{int(port) if port else DEFAULT_SCHEDULER_PORT}"


def _parts_from_env(conn_id: str, value: str) -> tuple[str | None, str | None, int | None, str | None]:
    """(conn_type, host, port, schema) of an ``AIRFLOW_CONN_<ID>`` value (URI or JSON, as Airflow accepts them)."""
    from urllib.parse import unquote, urlsplit

    if value.lstrip().startswith("{"):
        try:
            conn = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"AIRFLOW_CONN_{conn_id.upper()} is neither a URI nor valid JSON: {exc.msg}") from None
        return conn.get("conn_type"), conn.get("host"), conn.get("port"), conn.get("schema")
    try:
        url = urlsplit(value.strip())
        port = url.port
    except ValueError as exc:
        raise ConfigError(f"AIRFLOW_CONN_{conn_id.upper()} is not a valid URI: {exc}") from None
    host = unquote(url.hostname) if url.hostname else None
    return url.scheme.replace("-", "_") or None, host, port, unquote(url.path.lstrip("/")) or None


@contextmanager
def dask_client(config: DaskConfig | dict | None = None) -> Iterator["Client"]:
    """A Dask client for the duration of a step; local clusters are closed on exit."""
    import dask

    from pipelines.data.scheduling import STALL_TIMEOUT_KEY

    config = DaskConfig.model_validate(config or {})
    with dask.config.set({STALL_TIMEOUT_KEY: config.memory_stall_timeout}):
        with _client(config) as client:
            yield client


@contextmanager
def _client(config: DaskConfig) -> Iterator["Client"]:
    import dask
    from distributed import Client, LocalCluster

    address = resolve_scheduler_address(config)
    if address:
        log.info("connecting to external Dask scheduler %s", address)
        with Client(address, timeout="30s") as client:
            yield client
        return

    if config.gpu:
        cluster = _cuda_cluster_or_none()
        if cluster is not None:
            with cluster, Client(cluster) as client:
                yield client
            return

    threads = config.threads_per_worker or os.cpu_count() or 1
    with dask.config.set(_shuffle_buffers(config.memory_limit, threads)):
        with _local_client(config, threads) as client:
            yield client


def _shuffle_buffers(memory_limit: str, threads: int) -> dict[str, int]:
    """P2P shuffle buffers scaled to a worker's memory limit (at most Dask's defaults).

    A P2P shuffle (the cleaning step's dedup) buffers outgoing shards (``p2p.comm.buffer``, 1 GiB
    by default) and shards awaiting disk (``p2p.storage.buffer``, 100 MiB) outside the memory
    Dask can spill, and keeps receiving into a paused worker: under a limit of a few hundred MiB
    the default buffers alone could exceed it. Here they take at most 10% and 5% of the limit.
    """
    import dask
    from dask.utils import parse_bytes
    from distributed.worker_memory import parse_memory_limit

    limit = parse_memory_limit(memory_limit, threads, logger=log)
    if not limit:
        return {}
    comm = parse_bytes(dask.config.get("distributed.p2p.comm.buffer"))
    storage = parse_bytes(dask.config.get("distributed.p2p.storage.buffer"))
    return {"distributed.p2p.comm.buffer": min(comm, limit // 10),
            "distributed.p2p.storage.buffer": min(storage, limit // 20)}


@contextmanager
def _local_client(config: DaskConfig, threads: int) -> Iterator["Client"]:
    import dask
    from distributed import Client, LocalCluster

    if config.processes:
        # fork: workers inherit the parent's state instead of re-running the entry script. Held for
        # the cluster's whole life: a nanny restarting a worker (memory limit, crash) reads it again.
        with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
            cluster = LocalCluster(
                n_workers=config.n_workers,
                threads_per_worker=threads,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # None still opens one on all interfaces
                worker_dashboard_address="127.0.0.1:0",
                memory_limit=config.memory_limit,
            )
            log.info("started local Dask cluster (processes)")
            with cluster, Client(cluster) as client:
                yield client
        return
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=threads,
        processes=False,
        dashboard_address="127.0.0.1:0",  # None still opens one on all interfaces
        memory_limit=config.memory_limit,
    )
    log.info("started local Dask cluster (threads)")
    with cluster, Client(cluster) as client:
        yield client


def _cuda_cluster_or_none():
    """A LocalCUDACluster when dask-cuda and a GPU are present; otherwise None with a warning."""
    from pipelines.compute.backend import gpu_available

    ok, reason = gpu_available()
    if not ok:
        log.warning("GPU Dask cluster requested but %s; using a CPU cluster", reason)
        return None
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as exc:
        log.warning("GPU Dask cluster requested but dask-cuda is missing (%s); using a CPU cluster", exc)
        return None
    return LocalCUDACluster(dashboard_address="127.0.0.1:0")
