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
    users = pd.factorize(frame[USER], sort=True)[0].astype(np.int64)
    items = pd.factorize(frame[ITEM], sort=True)[0].astype(np.int64)
    pair = users * (int(items.max()) + 1) + items
    order = np.argsort(pair, kind="stable")  # one integer key: a radix sort
    sorted_pair = pair[order]
    repeated = sorted_pair[1:] == sorted_pair[:-1]
    in_group = np.zeros(len(order), dtype=bool)  # rows of a pair seen more than once
    in_group[:-1] |= repeated
    in_group[1:] |= repeated
    keep = np.zeros(len(order), dtype=bool)
    keep[order[~in_group]] = True
    if in_group.any():  # only the few repeated pairs need the (timestamp, source_row) order
        rows = order[in_group]
        rows = rows[np.lexsort((frame[SOURCE_ROW].to_numpy()[rows], frame[TIMESTAMP].to_numpy()[rows], pair[rows]))]
        last = np.ones(len(rows), dtype=bool)
        last[:-1] = pair[rows][1:] != pair[rows][:-1]
        keep[rows[last]] = True
    return frame.iloc[order[keep[order]]]


def keep_latest_frame(valid: dd.DataFrame) -> dd.DataFrame:
    """:func:`keep_latest` over a Dask frame: rows are shuffled by user so each pair meets once."""
    if valid.npartitions > 1:
        # The task-based shuffle: on one machine its n^2 small tasks cost less than P2P's
        # fixed start-up (extension, disk buffers) for the tens of partitions data here has.
        valid = valid.shuffle(on=USER, method=SHUFFLE_METHOD)
    return valid.map_partitions(keep_latest, meta=valid._meta)
