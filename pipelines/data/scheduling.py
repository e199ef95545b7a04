"""How the data steps run their one Dask computation.

A step never starts a cluster itself: it uses the client it is given, else whatever Dask
would use anyway (the active distributed client when there is one, otherwise the local
threaded scheduler), so the same code runs in tests, the CLI and Airflow tasks.
"""

from __future__ import annotations

from typing import Any


def compute(*collections: Any, client: Any = None) -> tuple[Any, ...]:
    """``dask.compute(*collections)`` on ``client`` when given (a ``distributed.Client``).

    All collections are computed together, so the tasks they share run once.
    """
    import dask

    if client is not None:
        return dask.compute(*collections, scheduler=client)
    return dask.compute(*collections)
