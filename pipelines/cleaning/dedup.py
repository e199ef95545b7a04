"""Duplicate (user, item) events: keep the latest one (pure functions, plus the Dask wiring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.constants import ITEM, SOURCE_ROW, TIMESTAMP, USER

if TYPE_CHECKING:
    import dask.dataframe as dd


def keep_latest(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (user_id, item_id): the latest timestamp; ties go to the later ``source_row``.

    Returns the kept rows in their input order (a filter, not a reordering: moving every row
    of string columns cost more than finding the duplicates).
    """
    if frame.empty:
        return frame
    # One integer key per pair from hash codes of the ids, sorted once (a stable sort: files
    # ordered by user or time are nearly sorted by it, and hashing it cost twice as much);
    # only rows of a repeated pair (few) need the (timestamp, source_row) order.
    users = pd.factorize(frame[USER])[0].astype(np.int64)
    items = pd.factorize(frame[ITEM])[0].astype(np.int64)
    pair = users * (int(items.max()) + 1) + items
    order = np.argsort(pair, kind="stable")
    sorted_pair = pair[order]
    same_as_next = sorted_pair[1:] == sorted_pair[:-1]
    if not same_as_next.any():
        return frame
    in_group = np.zeros(len(order), dtype=bool)
    in_group[:-1] |= same_as_next
    in_group[1:] |= same_as_next
    keep = np.ones(len(order), dtype=bool)
    rows = order[in_group]
    keep[rows] = False
    rows = rows[np.lexsort((frame[SOURCE_ROW].to_numpy()[rows], frame[TIMESTAMP].to_numpy()[rows], pair[rows]))]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = pair[rows][1:] != pair[rows][:-1]
    keep[rows[last]] = True
    return frame[keep]


def keep_latest_frame(valid: dd.DataFrame) -> dd.DataFrame:
    """:func:`keep_latest` over a Dask frame: rows are shuffled by user so each pair meets once."""
    if valid.npartitions > 1:
        # Dask's default shuffle (P2P on a distributed client). The task-based one was measured
        # slower here: 13.0 s against 4.6 s to clean 2M rows on two forked workers.
        valid = valid.shuffle(on=USER)
    return valid.map_partitions(keep_latest, meta=valid._meta)
