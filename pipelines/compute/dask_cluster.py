"""The one place that makes a Dask client.

Resolution order: an explicit scheduler address, ``$RECSYS_DASK_SCHEDULER``, a
``LocalCUDACluster`` when GPUs are asked for and present, else a local cluster.

The local cluster runs worker *threads* by default: under Airflow's LocalExecutor, spawned
worker processes re-run the ``airflow`` entry script and cannot reach the metadata database
(see STACK_NOTES). ``processes=True`` switches to forked worker processes, which work there.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.constants import ENV_DASK_SCHEDULER

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


class DaskConfig(BaseModel):
    """How a step gets its Dask cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler_address: str | None = Field(
        None, description="tcp://host:port of an existing scheduler; overrides the local cluster"
    )
    n_workers: int = Field(1, ge=1, le=256, description="local workers (processes mode) ")
    threads_per_worker: int | None = Field(
        None, ge=1, le=256, description="threads per local worker; default: all cores"
    )
    processes: bool = Field(False, description="forked worker processes instead of threads")
    memory_limit: str = Field("auto", description="per-worker memory limit, e.g. '4GiB'")
    gpu: bool = Field(False, description="use LocalCUDACluster (dask-cuda) when GPUs are present")
    fit_on: Literal["auto", "local", "cluster"] | None = Field(
        None,
        description="where each candidate's fit runs: 'local' in the calling process (the Airflow task), "
        "'cluster' as a Dask task on this config's cluster, 'auto' on the cluster only when an external "
        "scheduler is configured; None: $RECSYS_FIT_ON, else auto (see pipelines.training.remote)",
    )
    no_worker_timeout: float = Field(
        300.0, gt=0, description="seconds a fit on the cluster waits while the cluster has no worker, then fails"
    )


def resolve_scheduler_address(config: DaskConfig) -> str | None:
    """The external scheduler to use, if any: config first, then the environment."""
    return config.scheduler_address or os.environ.get(ENV_DASK_SCHEDULER) or None


@contextmanager
def dask_client(config: DaskConfig | dict | None = None) -> Iterator["Client"]:
    """A Dask client for the duration of a step; local clusters are closed on exit."""
    import dask
    from distributed import Client, LocalCluster

    config = DaskConfig.model_validate(config or {})
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
    if config.processes:
        # fork: workers inherit the parent's state instead of re-running the entry script.
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
    else:
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=threads,
            processes=False,
            dashboard_address="127.0.0.1:0",  # None still opens one on all interfaces
        )
    log.info("started local Dask cluster (%s)", "processes" if config.processes else "threads")
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
