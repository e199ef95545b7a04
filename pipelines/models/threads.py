"""How many CPU threads a fit may use: the cores this process may run on, and BLAS held to them.

BLAS libraries size their pools from the machine's core count, not the process's affinity or
load, and their threads spin while they wait for each other: on two cores kept busy by other
processes a 150 x 150 eigendecomposition took 0.9 s on two OpenBLAS threads and 7 ms on one,
so a shared machine should set ``RECSYS_THREADS``.
:meth:`Recommender.fit <pipelines.models.base.Recommender.fit>` therefore holds BLAS to
:func:`fit_threads` (threadpoolctl) for every family; families with their own pools (ALS's block
workers, torch) narrow it further inside.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

from pipelines.constants import ENV_THREADS
from pipelines.errors import ConfigError

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def fit_threads(requested: int = 0) -> int:
    """``requested`` threads, else ``$RECSYS_THREADS``, else the cores this process may run on.

    Never sized from the load average: the thread count changes the order of floating-point
    sums in BLAS and torch, so a count that followed the load would make the same seed give
    different models run to run. On a shared machine set ``RECSYS_THREADS`` (or a family's
    ``num_threads``) instead.
    """
    if requested > 0:
        return requested
    configured = os.environ.get(ENV_THREADS, "").strip()
    if configured:
        try:
            value = int(configured)
        except ValueError:
            raise ConfigError(f"${ENV_THREADS} must be a positive integer, got {configured!r}") from None
        if value < 1:
            raise ConfigError(f"${ENV_THREADS} must be a positive integer, got {configured!r}")
        return value
    return available_cores()


@contextmanager
def blas_threads(limit: int | None = None) -> Iterator[None]:
    """Hold every BLAS library loaded in this process to ``limit`` threads (default: :func:`fit_threads`)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit or fit_threads(), user_api="blas"):
        yield
