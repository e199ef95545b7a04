"""Duplicate (user, item) events: keep the latest one (pure functions, plus the Dask wiring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from pipelines.constants import ITEM, SOURCE_ROW, TIMESTAMP, USER

if TYPE_CHECKING:
    import dask.dataframe as dd


def keep_latest(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (user_id, item_id): the latest timestamp; ties go to the later ``source_row``.

    Returns the rows sorted by (user_id, item_id), so output order depends on content only.
    """
    ordered = frame.sort_values([USER, ITEM, TIMESTAMP, SOURCE_ROW], kind="stable")
    return ordered.drop_duplicates([USER, ITEM], keep="last")


def keep_latest_frame(valid: dd.DataFrame) -> dd.DataFrame:
    """:func:`keep_latest` over a Dask frame: rows are shuffled by user so each pair meets once."""
    by_user = valid.shuffle(on=USER)
    return by_user.map_partitions(keep_latest, meta=valid._meta)
