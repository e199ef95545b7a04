"""Contiguous integer indices for users and items, built from the clean data with Dask.

Ids are sorted (as strings) before numbering, so the same clean data always gives the same
encoding whatever its partitioning: ``user_idx`` runs 0..n_users-1, ``item_idx`` 0..n_items-1.
The index frames are small (one row per distinct id) and come back as pandas frames; the
interactions stay a lazy Dask frame until the caller computes them.
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipelines.constants import ITEM, ITEM_IDX, RATING, TIMESTAMP, USER, USER_IDX
from pipelines.errors import DataError

# Columns and dtypes of an encoded interaction frame (small enough for memory as these).
ENCODED_DTYPES = {USER_IDX: "int32", ITEM_IDX: "int32", RATING: "float32", TIMESTAMP: "int64"}


def build_encodings(interactions: dd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Distinct users and items of ``interactions`` numbered in sorted-id order.

    Takes a Dask frame with string columns ``user_id`` and ``item_id``; runs one
    ``dask.compute`` for both ``unique()`` aggregates. Returns ``(user_index, item_index)``:
    pandas frames with columns ``user_id, user_idx`` and ``item_id, item_idx`` (int32), sorted
    by index. Raises DataError when a column is missing or the data is empty.
    """
    for column in (USER, ITEM):
        if column not in interactions.columns:
            raise DataError(
                f"interactions have no column {column!r} (columns: {list(interactions.columns)})"
            )
    # split_out=1: a tree reduction; the distinct ids are small, a shuffle would cost more.
    users, items = dask.compute(
        interactions[USER].astype(str).unique(split_out=1),
        interactions[ITEM].astype(str).unique(split_out=1),
    )
    if len(users) == 0:
        raise DataError("interactions are empty: no user_id to encode")
    return _index_frame(users, USER, USER_IDX), _index_frame(items, ITEM, ITEM_IDX)


def _index_frame(ids: pd.Series, id_column: str, idx_column: str) -> pd.DataFrame:
    values = np.sort(np.asarray(pd.Series(ids).dropna().to_numpy(), dtype=str))
    if len(values) >= np.iinfo(np.int32).max:
        raise DataError(f"{id_column} has {len(values)} distinct values: too many for int32")
    return pd.DataFrame(
        {
            id_column: pd.Series(values, dtype=object).astype(str),
            idx_column: np.arange(len(values), dtype=np.int32),
        }
    )


def encode_partition(
    part: pd.DataFrame, user_ids: np.ndarray | pd.Index, item_ids: np.ndarray | pd.Index
) -> pd.DataFrame:
    """Replace ``user_id``/``item_id`` of one pandas partition by their indices.

    ``user_ids``/``item_ids`` are the sorted ids (arrays or ``pd.Index``; position = index). Returns a frame with
    the columns and dtypes of ``ENCODED_DTYPES``. Raises DataError naming the first id that the
    encoding does not know (a bug upstream: the encoding is built from the same data).
    """
    users = _positions(part[USER], user_ids, USER)
    items = _positions(part[ITEM], item_ids, ITEM)
    return pd.DataFrame(
        {
            USER_IDX: users.astype(np.int32),
            ITEM_IDX: items.astype(np.int32),
            RATING: part[RATING].to_numpy(dtype=np.float32),
            TIMESTAMP: part[TIMESTAMP].to_numpy(dtype=np.int64),
        },
        index=part.index,
    )


def _positions(column: pd.Series, sorted_ids: np.ndarray | pd.Index, name: str) -> np.ndarray:
    # A hash lookup: searchsorted over NumPy unicode arrays compared strings char by char and
    # cost most of the features step.
    index = sorted_ids if isinstance(sorted_ids, pd.Index) else pd.Index(np.asarray(sorted_ids, dtype=object))
    values = column.astype(str)
    pos = index.get_indexer(values)
    unknown = pos < 0
    if unknown.any():
        raise DataError(f"{name} {values.iloc[int(np.argmax(unknown))]!r} is not in the encoding")
    return pos


def encode_interactions(
    interactions: dd.DataFrame, user_index: pd.DataFrame, item_index: pd.DataFrame
) -> dd.DataFrame:
    """Lazily map a Dask interaction frame onto the encodings (one ``map_partitions``).

    Takes the clean columns ``user_id, item_id, rating, timestamp`` and the frames returned by
    :func:`build_encodings`; returns a lazy frame with ``user_idx, item_idx`` (int32),
    ``rating`` (float32) and ``timestamp`` (int64). Raises DataError for a missing column.
    """
    missing = [c for c in (USER, ITEM, RATING, TIMESTAMP) if c not in interactions.columns]
    if missing:
        raise DataError(
            f"interactions have no column(s) {missing} (columns: {list(interactions.columns)})"
        )
    # Built once and shared by every partition (hash tables of the ids, position = index).
    user_ids = pd.Index(user_index.sort_values(USER_IDX)[USER].astype(str))
    item_ids = pd.Index(item_index.sort_values(ITEM_IDX)[ITEM].astype(str))
    meta = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in ENCODED_DTYPES.items()})
    return interactions[[USER, ITEM, RATING, TIMESTAMP]].map_partitions(
        encode_partition, user_ids, item_ids, meta=meta
    )
