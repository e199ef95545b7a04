"""Duplicate (user, item) events: keep the latest one (pure functions, plus the Dask wiring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.constants import ITEM, SOURCE_ROW, TIMESTAMP, USER

SHUFFLE_METHOD = "tasks"

if TYPE_CHECKING:
    import dask.dataframe as dd


def keep_latest(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (user_id, item_id): the latest timestamp; ties go to the later ``source_row``.

    Returns the rows sorted by (user_id, item_id), so output order depends on content only.
    """
    if frame.empty:
        return frame
    # Sort integer codes, not the strings: factorize(sort=True) orders only the distinct ids,
    # so the row order equals sorting by the id strings, several times faster.
    users = pd.factorize(frame[USER], sort=True)[0]
    items = pd.factorize(frame[ITEM], sort=True)[0]
    order = np.lexsort((frame[SOURCE_ROW].to_numpy(), frame[TIMESTAMP].to_numpy(), items, users))
    users, items = users[order], items[order]
    last = np.ones(len(order), dtype=bool)  # the last row of each (user, item) run is the latest
    last[:-1] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    return frame.iloc[order[last]]


def keep_latest_frame(valid: dd.DataFrame) -> dd.DataFrame:
    """:func:`keep_latest` over a Dask frame: rows are shuffled by user so each pair meets once."""
    if valid.npartitions > 1:
        # The task-based shuffle: on one machine its n^2 small tasks cost less than P2P's
        # fixed start-up (extension, disk buffers) for the tens of partitions data here has.
        valid = valid.shuffle(on=USER, method=SHUFFLE_METHOD)
    return valid.map_partitions(keep_latest, meta=valid._meta)
