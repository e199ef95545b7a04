"""How many CPU threads a fit may use: the cores this process may run on, and BLAS held to them.

BLAS libraries size their pools from the machine's core count, not the process's affinity or
load, and their threads spin while they wait for each other: on two cores kept busy by other
processes a 150 x 150 eigendecomposition took 0.9 s on two OpenBLAS threads and 7 ms on one.
:meth:`Recommender.fit <pipelines.models.base.Recommender.fit>` therefore holds BLAS to
:func:`idle_cores` (threadpoolctl) for every family; families with their own pools (ALS's block
workers, torch) narrow it further inside.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def idle_cores(requested: int) -> int:
    """``requested`` threads, or for 0 the cores the 1-minute load average leaves idle (at least one).

    Threads that wait for each other at every operation (torch's OpenMP workers) are slower,
    not faster, on cores other processes keep busy: 20 times, for a small model on two busy cores.
    """
    if requested > 0:
        return requested
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        busy = 0.0
    threads = max(1, min(cores, int(cores - busy + 0.5)))
    log.debug("threads: %d (%d cores, load average %.1f)", threads, cores, busy)
    return threads


@contextmanager
def blas_threads(limit: int | None = None) -> Iterator[None]:
    """Hold every BLAS library loaded in this process to ``limit`` threads (default: the idle cores)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit or idle_cores(0), user_api="blas"):
        yield
