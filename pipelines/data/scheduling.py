"""How the data steps run their Dask computations.

A step never starts a cluster itself: it uses the client it is given, else whatever Dask
would use anyway (the active distributed client when there is one, otherwise the local
threaded scheduler), so the same code runs in tests, the CLI and Airflow tasks.

On a distributed cluster the computation is watched for the one failure Dask does not report:
workers that reach their memory limit *pause* (``distributed.worker.memory.pause``, 80% by
default) and wait for memory to be freed. Results that can be spilled to disk are spilled, but
working memory inside running tasks, shuffle buffers and memory the allocator keeps cannot be,
so when a worker is paused and the scheduler sees no task transition for
``recsys.memory-stall-timeout`` seconds, nothing will ever finish (the other workers wait for
the paused one's tasks): the computation is cancelled and
:class:`~pipelines.errors.WorkerMemoryError` names the limit and each worker's memory instead
of hanging the step.

Partitions follow the workers' memory. The lake's Parquet files are written in row groups of
:data:`ROW_GROUP_ROWS`, and a step reading them (:func:`read_lake`) takes as many row groups per
partition as one worker thread can hold (:func:`rows_per_partition`): the memory limit left
after what the worker already uses, split among its threads, at
:data:`WORKING_BYTES_PER_ROW`, capped at :data:`MAX_PARTITION_ROWS`. So a lower limit means
smaller tasks rather than paused workers, and the data itself never has to fit: results spill.
Partitioning never changes a step's output, only how it is computed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pipelines.errors import WorkerMemoryError

log = logging.getLogger(__name__)

#: dask config key: seconds with a worker paused and no task transition before giving up.
STALL_TIMEOUT_KEY = "recsys.memory-stall-timeout"
DEFAULT_STALL_TIMEOUT = 180.0
_POLL_SECONDS = 2.0

ROW_GROUP_ROWS = 100_000  # rows per row group of every Parquet file the steps write to the lake
MAX_PARTITION_ROWS = 1_000_000  # the most rows one task takes, however much memory there is
# Working memory per row of a partition at its step's peak (cleaning: text columns, the parsed
# copies and the dedup shuffle's buffers), measured at ~330 B/row on 1M-row partitions; with room.
WORKING_BYTES_PER_ROW = 1024


def compute(*collections: Any, client: Any = None) -> tuple[Any, ...]:
    """``dask.compute(*collections)`` on ``client`` (a ``distributed.Client``), else on the
    active distributed client, else on Dask's local scheduler.

    All collections are computed together, so the tasks they share run once.

    Raises:
        WorkerMemoryError: on a distributed cluster, a worker stayed paused at its memory limit
            with no progress anywhere for the stall timeout (the computation is cancelled).
    """
    import dask

    client = client if client is not None else _active_client()
    if client is None:
        return dask.compute(*collections)
    futures = client.compute(list(collections))
    try:
        _wait_watching_memory(client, futures, float(dask.config.get(STALL_TIMEOUT_KEY, DEFAULT_STALL_TIMEOUT)))
        return tuple(client.gather(futures))
    except BaseException:
        client.cancel(futures)
        raise


def _active_client() -> Any:
    """The distributed client Dask would use by default, or None (without importing distributed)."""
    import sys

    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # no client
        return None


def _wait_watching_memory(client: Any, futures: list[Any], stall_timeout: float) -> None:
    """Wait for ``futures``; raise when the cluster stalls paused at its memory limit."""
    from distributed import wait

    last_transitions = None
    progress_at = time.monotonic()
    while True:
        try:
            wait(futures, timeout=_POLL_SECONDS)
            return
        except TimeoutError:
            pass
        state = _memory_state(client)
        now = time.monotonic()
        if state is None:  # the scheduler does not let us look: plain waiting
            continue
        workers = state["workers"]
        # A paused worker holds the tasks assigned to it (a P2P shuffle pins its outputs to
        # workers): the others can sit idle, so one paused worker is enough to stall.
        paused = any(w["status"] == "paused" for w in workers)
        if not paused or state["transitions"] != last_transitions:
            last_transitions, progress_at = state["transitions"], now
            continue
        if now - progress_at >= stall_timeout:
            raise WorkerMemoryError(_stall_message(workers, now - progress_at))


def _stall_message(workers: list[dict[str, Any]], seconds: float) -> str:
    import dask
    from dask.utils import format_bytes

    pause = dask.config.get("distributed.worker.memory.pause")
    each = "; ".join(
        f"{w['name']}: process {format_bytes(w['process'])} of limit "
        f"{format_bytes(w['limit']) if w['limit'] else 'none'}"
        f" (results in memory {format_bytes(w['managed'])}, spilled {format_bytes(w['spilled'])})"
        for w in workers
    )
    return (
        f"Dask workers paused at their memory limit and nothing ran for {seconds:.0f} s, so the step would "
        f"never finish: {each}. Workers pause at {pause:.0%} of the limit; what holds it is memory Dask cannot "
        f"spill (working memory inside tasks, shuffle buffers, the worker's own footprint). Raise the limit (DaskConfig.memory_limit for the local cluster, "
        f"dask worker --memory-limit for an external one), use fewer threads per worker, or add workers; "
        f"the computation was cancelled ({STALL_TIMEOUT_KEY}={dask.config.get(STALL_TIMEOUT_KEY, DEFAULT_STALL_TIMEOUT):g} s)"
    )


def _memory_state(client: Any) -> dict[str, Any] | None:
    try:
        return client.run_on_scheduler(_scheduler_memory_state)
    except Exception as exc:  # noqa: BLE001 - e.g. a scheduler that refuses pickled functions
        log.debug("cannot read the scheduler's worker states (%s); not watching for memory stalls", exc)
        return None


def _scheduler_memory_state(dask_scheduler: Any = None) -> dict[str, Any]:
    """Runs on the scheduler: its transition counter and each worker's status and memory."""
    workers = []
    for ws in dask_scheduler.workers.values():
        memory = ws.memory
        workers.append({
            "name": str(ws.name), "status": ws.status.name, "limit": ws.memory_limit,
            "process": memory.process, "managed": memory.managed, "spilled": memory.spilled,
        })
    return {"transitions": dask_scheduler.transition_counter, "workers": workers}


def rows_per_partition(client: Any = None) -> int:
    """Rows per partition the workers of ``client`` (else the active client) can afford.

    Per worker: ``memory_limit * distributed.worker.memory.pause`` less the memory the worker
    process already uses, split among its threads, over :data:`WORKING_BYTES_PER_ROW`; the least
    over workers, between :data:`ROW_GROUP_ROWS` and :data:`MAX_PARTITION_ROWS`. Without a
    distributed client or a memory limit: :data:`MAX_PARTITION_ROWS`.
    """
    import dask

    client = client if client is not None else _active_client()
    if client is None:
        return MAX_PARTITION_ROWS
    pause = dask.config.get("distributed.worker.memory.pause") or 1.0
    budgets = []
    for worker in client.scheduler_info()["workers"].values():
        limit = worker.get("memory_limit") or 0
        if limit:
            used = worker.get("metrics", {}).get("memory", 0)
            budgets.append(max(limit * pause - used, 0) / max(worker.get("nthreads", 1), 1))
    if not budgets:
        return MAX_PARTITION_ROWS
    rows = int(min(budgets) // WORKING_BYTES_PER_ROW)
    return max(ROW_GROUP_ROWS, min(MAX_PARTITION_ROWS, rows))


def read_lake(files: list[Any], client: Any = None, **kwargs: Any) -> Any:
    """The lake's Parquet ``files`` as a Dask frame, partitioned by :func:`rows_per_partition`
    (whole row groups; a file written before row groups were used is one partition)."""
    import dask.dataframe as dd

    groups = max(1, rows_per_partition(client) // ROW_GROUP_ROWS)
    return dd.read_parquet([str(f) for f in files], index=False, split_row_groups=groups, **kwargs)
