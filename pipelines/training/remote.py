"""Where a candidate's fit runs: in the calling process, or as one Dask task on the cluster.

``fit_on`` (:class:`~pipelines.compute.dask_cluster.DaskConfig`, else ``$RECSYS_FIT_ON``, else
"auto"): "local" fits in this process (the Airflow task); "cluster" submits the fit to the
cluster :func:`~pipelines.compute.dask_cluster.dask_client` gives (the local one when no address
is set); "auto" is "cluster" when an external scheduler is configured, else "local" (no client,
no overhead).

On the cluster the task is :func:`pipelines.training.run.fit_candidate`: load the feature set,
fit, evaluate, save the bundle under ``<lake>/models/<run_key>/<model>``, hand back plain values.
So the worker needs the ``pipelines`` package and the lake at the same path as the Airflow task
(shared storage once workers run on other machines); MLflow is logged by the Airflow task from
the bundle it reads back, so workers need no route to MLflow and no credentials.

GPU: a candidate asking for "gpu" or "auto" goes to a worker declaring the ``GPU`` resource
(``dask worker --resources GPU=1``, or dask-cuda's ``dask cuda worker --resources GPU=1``) when
the cluster has one. A "gpu" request on a cluster without one runs on any worker with a warning,
as a GPU request on a machine without a GPU falls back to the CPU.

Failures: an error raised by the fit is raised here with its own type (ConfigError and DataError
fail the Airflow task without retries). A worker dying mid-fit makes the scheduler rerun the fit
on another worker, up to ``distributed.scheduler.allowed-failures`` times, then KilledWorker; a
cluster left without workers for ``no_worker_timeout`` seconds fails the wait. Both are ordinary
errors, which Airflow retries.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Mapping

from pipelines.constants import ENV_DEVICE, ENV_FIT_ON
from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client, Future

    from pipelines.compute.dask_cluster import DaskConfig
    from pipelines.training.config import TrainConfig
    from pipelines.training.run import CandidateFit

log = logging.getLogger(__name__)

FIT_ON_CHOICES = ("auto", "local", "cluster")
GPU_RESOURCE = "GPU"
_POLL_SECONDS = 1.0


def fit_placement(dask: "DaskConfig") -> str:
    """"local" or "cluster": where candidate fits run for ``dask`` (see the module docstring).

    Raises ConfigError for a ``$RECSYS_FIT_ON`` other than auto, local or cluster.
    """
    from pipelines.compute.dask_cluster import resolve_scheduler_address

    choice = dask.fit_on or os.environ.get(ENV_FIT_ON, "").strip().lower() or "auto"
    if choice not in FIT_ON_CHOICES:
        raise ConfigError(f"${ENV_FIT_ON} must be one of {', '.join(FIT_ON_CHOICES)}; got {choice!r}")
    if choice == "auto":
        return "cluster" if resolve_scheduler_address(dask) else "local"
    return choice


def requested_device(config: "TrainConfig") -> str:
    """"gpu", "auto" or "cpu": the device ``config``'s family will ask for (its params, its
    config's default, then ``$RECSYS_DEVICE``); "cpu" for families without a device."""
    from pipelines.models import model_class

    fields = model_class(config.model).config_class.model_fields
    if "device" not in fields:
        return "cpu"
    value = config.model_params().get("device", fields["device"].default)
    value = str(value or os.environ.get(ENV_DEVICE) or "cpu").strip().lower()
    if value == "gpu" or value.startswith("cuda"):
        return "gpu"
    return "auto" if value == "auto" else "cpu"


def gpu_workers(client: "Client") -> list[str]:
    """Addresses of the workers that declare at least one ``GPU`` resource."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return sorted(addr for addr, info in workers.items()
                  if (info.get("resources") or {}).get(GPU_RESOURCE, 0) >= 1)


def fit_resources(client: "Client", config: "TrainConfig") -> dict[str, float] | None:
    """The Dask resources the fit of ``config`` needs: ``{"GPU": 1}`` for a gpu or auto device
    when some worker declares a GPU, else None (any worker; a gpu request logs a warning)."""
    device = requested_device(config)
    if device == "cpu":
        return None
    if gpu_workers(client):
        return {GPU_RESOURCE: 1}
    if device == "gpu":
        log.warning(
            "%s asks for a GPU but no worker of the Dask cluster declares a %s resource: it fits on a CPU "
            "worker. Start GPU workers with `dask worker ... --resources %s=1` (or dask-cuda's "
            "`dask cuda worker ... --resources %s=1`).", config.model, GPU_RESOURCE, GPU_RESOURCE, GPU_RESOURCE,
        )
    return None


def fit_task_key(model: str, run_key: str) -> str:
    """``fit-<model>-<token>-<run_key>``: Dask groups the tasks by ``fit-<model>``; the token keeps
    a retry of the Airflow task from attaching to an earlier attempt's task."""
    return f"fit-{model}-{uuid.uuid4().hex[:8]}-{run_key}"


def fit_on_cluster(
    config: "TrainConfig",
    features_uri: str,
    out_root: str | None,
    run_key: str,
    lineage: Mapping[str, Any] | None,
    merge_validation: bool,
    warm_start: Any,
    dask: "DaskConfig",
) -> tuple["CandidateFit", str]:
    """Run :func:`~pipelines.training.run.fit_candidate` as one Dask task; (its result, the
    scheduler's address). ``out_root`` is made absolute here: the worker must write where this
    process will read. Raises the fit's own error, KilledWorker, or RuntimeError when the cluster
    has no worker for ``dask.no_worker_timeout`` seconds."""
    from pathlib import Path

    from pipelines.compute.dask_cluster import dask_client
    from pipelines.paths import lake
    from pipelines.training.run import fit_candidate

    root = str(Path(out_root or lake()).resolve())
    with dask_client(dask) as client:
        resources = fit_resources(client, config)
        key = fit_task_key(config.model, run_key)
        log.info("fitting %s on the Dask cluster %s as %s%s", config.model, client.scheduler.address, key,
                 f" with resources {resources}" if resources else "")
        future = client.submit(fit_candidate, config, features_uri, root, run_key, dict(lineage or {}),
                               merge_validation, warm_start, key=key, pure=False, resources=resources)
        try:
            fitted = wait_for_fit(client, future, dask.no_worker_timeout)
        finally:
            future.release()
        return fitted, client.scheduler.address


def wait_for_fit(client: "Client", future: "Future", no_worker_timeout: float) -> Any:
    """The result of ``future``, or its error; RuntimeError once the cluster has had no worker
    for ``no_worker_timeout`` seconds (Dask would otherwise wait for one forever)."""
    from distributed import wait

    alone_since: float | None = None
    while not future.done():
        try:
            wait(future, timeout=_POLL_SECONDS)
        except TimeoutError:
            pass
        if future.done():
            break
        if client.nthreads():
            alone_since = None
        elif alone_since is None:
            alone_since = time.monotonic()
        elif time.monotonic() - alone_since > no_worker_timeout:
            future.cancel()
            raise RuntimeError(
                f"{future.key}: the Dask cluster at {client.scheduler.address} has had no worker for "
                f"{no_worker_timeout:.0f} s; start workers (or raise DaskConfig.no_worker_timeout) and retry"
            )
    return future.result()
