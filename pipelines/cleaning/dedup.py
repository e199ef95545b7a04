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

    Returns the kept rows in their input order (a filter, not a reordering: moving every row
    of string columns cost more than finding the duplicates).
    """
    if frame.empty:
        return frame
    # One integer key per pair from hash codes of the ids; only rows of a repeated pair (few)
    # need the (timestamp, source_row) order.
    users = pd.factorize(frame[USER])[0].astype(np.int64)
    items = pd.factorize(frame[ITEM])[0].astype(np.int64)
    pair = users * (int(items.max()) + 1) + items
    repeated = pd.Series(pair).duplicated(keep=False).to_numpy()
    if not repeated.any():
        return frame
    keep = ~repeated
    rows = np.flatnonzero(repeated)
    rows = rows[np.lexsort((frame[SOURCE_ROW].to_numpy()[rows], frame[TIMESTAMP].to_numpy()[rows], pair[rows]))]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = pair[rows][1:] != pair[rows][:-1]
    keep[rows[last]] = True
    return frame[keep]


def keep_latest_frame(valid: dd.DataFrame) -> dd.DataFrame:
    """:func:`keep_latest` over a Dask frame: rows are shuffled by user so each pair meets once."""
    if valid.npartitions > 1:
        # The task-based shuffle: on one machine its n^2 small tasks cost less than P2P's
        # fixed start-up (extension, disk buffers) for the tens of partitions data here has.
        valid = valid.shuffle(on=USER, method=SHUFFLE_METHOD)
    return valid.map_partitions(keep_latest, meta=valid._meta)
