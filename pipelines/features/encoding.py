"""Contiguous integer indices for users and items, built from the clean data with Dask.

Ids are sorted (as strings) before numbering, so the same clean data always gives the same
encoding whatever its partitioning: ``user_idx`` runs 0..n_users-1, ``item_idx`` 0..n_items-1.
The index frames are small (one row per distinct id) and come back as pandas frames.

Two ways in: :func:`encode_in_one_pass` reads the data once (each partition factorizes its own
ids, then the small per-partition id lists are merged and sorted and the codes remapped in
NumPy): what the features step uses. :func:`build_encodings` + :func:`encode_interactions`
build an encoding, then apply it lazily, e.g. to data encoded against an existing index.
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipelines.constants import ITEM, ITEM_IDX, RATING, TIMESTAMP, USER, USER_IDX
from pipelines.data.scheduling import compute
from pipelines.errors import DataError

# Columns and dtypes of an encoded interaction frame (small enough for memory as these).
ENCODED_DTYPES = {USER_IDX: "int32", ITEM_IDX: "int32", RATING: "float32", TIMESTAMP: "int64"}


def build_encodings(interactions: dd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Distinct users and items of ``interactions`` numbered in sorted-id order.

    Takes a Dask frame with string columns ``user_id`` and ``item_id``; runs one
    computation for both ``unique()`` aggregates. Returns ``(user_index, item_index)``:
    pandas frames with columns ``user_id, user_idx`` and ``item_id, item_idx`` (int32), sorted
    by index. Raises DataError when a column is missing or the data is empty.
    """
    for column in (USER, ITEM):
        if column not in interactions.columns:
            raise DataError(
                f"interactions have no column {column!r} (columns: {list(interactions.columns)})"
            )
    # split_out=1: a tree reduction; the distinct ids are small, a shuffle would cost more.
    users, items = compute(
        interactions[USER].astype(str).unique(split_out=1),
        interactions[ITEM].astype(str).unique(split_out=1),
    )
    if len(users) == 0:
        raise DataError("interactions are empty: no user_id to encode")
    return _index_frame(users, USER, USER_IDX), _index_frame(items, ITEM, ITEM_IDX)


def _index_frame(ids: pd.Series, id_column: str, idx_column: str) -> pd.DataFrame:
    # Python's str order is code-point order, as NumPy's unicode sort and Arrow's byte order.
    values = np.sort(np.asarray(pd.Series(ids).dropna().astype(str).unique(), dtype=object))
    if len(values) >= np.iinfo(np.int32).max:
        raise DataError(f"{id_column} has {len(values)} distinct values: too many for int32")
    return pd.DataFrame(
        {
            id_column: pd.Series(values, dtype="str"),
            idx_column: np.arange(len(values), dtype=np.int32),
        }
    )


def _local_codes(part: pd.DataFrame, min_rating: float | None) -> dict[str, object]:
    """One partition's rows (rated at least ``min_rating``) with ids as codes into the
    partition's own distinct ids (a hash factorize: no sort, no global state)."""
    rows_read = len(part)
    if min_rating is not None:
        part = part[part[RATING] >= min_rating]
    users, user_ids = pd.factorize(part[USER].astype("str"))
    items, item_ids = pd.factorize(part[ITEM].astype("str"))
    if (users < 0).any() or (items < 0).any():
        column = USER if (users < 0).any() else ITEM
        raise DataError(f"interactions have a missing {column} (the clean contract has none)")
    return {
        "rows_read": rows_read, "users": users, "user_ids": user_ids, "items": items, "item_ids": item_ids,
        RATING: part[RATING].to_numpy(dtype=np.float32), TIMESTAMP: part[TIMESTAMP].to_numpy(dtype=np.int64),
    }


def _merge_codes(parts: list[dict], codes: str, ids: str, id_column: str, idx_column: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The index over every partition's distinct ids, and all rows' codes remapped into it."""
    index = _index_frame(pd.concat([pd.Series(part[ids]) for part in parts], ignore_index=True), id_column, idx_column)
    position = pd.Index(index[id_column])
    remapped = [position.get_indexer(part[ids]).astype(np.int32)[part[codes]] for part in parts]
    return index, np.concatenate(remapped) if remapped else np.zeros(0, dtype=np.int32)


def encode_in_one_pass(
    interactions: dd.DataFrame, min_rating: float | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Encode a Dask interaction frame in one computation: ``(encoded, user_index, item_index,
    rows_read)``.

    ``encoded`` has the columns and dtypes of ``ENCODED_DTYPES``, rows in partition order, only
    rows rated at least ``min_rating`` (when given); the indices are those of
    :func:`build_encodings` on the kept rows; ``rows_read`` counts rows before that filter.
    Raises DataError for a missing column, a missing id or no rows at all.
    """
    missing = [c for c in (USER, ITEM, RATING, TIMESTAMP) if c not in interactions.columns]
    if missing:
        raise DataError(f"interactions have no column(s) {missing} (columns: {list(interactions.columns)})")
    parts = interactions[[USER, ITEM, RATING, TIMESTAMP]].to_delayed()
    (parts,) = compute([dask.delayed(_local_codes)(part, min_rating) for part in parts])
    user_index, users = _merge_codes(parts, "users", "user_ids", USER, USER_IDX)
    if len(user_index) == 0:
        raise DataError("interactions are empty: no user_id to encode")
    item_index, items = _merge_codes(parts, "items", "item_ids", ITEM, ITEM_IDX)
    encoded = pd.DataFrame({
        USER_IDX: users, ITEM_IDX: items,
        RATING: np.concatenate([part[RATING] for part in parts]),
        TIMESTAMP: np.concatenate([part[TIMESTAMP] for part in parts]),
    })
    return encoded, user_index, item_index, sum(part["rows_read"] for part in parts)


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
    # Factorize first, then look up only the distinct ids: a hash pass over Arrow strings, where
    # a lookup of every row converted each to a Python string (most of the features step).
    index = sorted_ids if isinstance(sorted_ids, pd.Index) else pd.Index(np.asarray(sorted_ids, dtype=object))
    values = column.astype(str)
    codes, distinct = pd.factorize(values)
    pos = index.get_indexer(distinct)[codes] if len(codes) else np.zeros(0, dtype=np.intp)
    pos[codes < 0] = -1
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
