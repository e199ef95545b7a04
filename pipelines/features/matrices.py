"""Users x items CSR matrices from encoded interactions.

Every matrix of a feature set has the shape of the FULL encoding, (n_users, n_items), so train,
test and validation rows and columns line up whatever each part contains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.constants import ITEM_IDX, RATING, USER_IDX
from pipelines.errors import DataError


def build_csr(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    values: np.ndarray | None,
    n_users: int,
    n_items: int,
) -> sp.csr_matrix:
    """A float32 CSR matrix of shape ``(n_users, n_items)``; duplicate cells are summed.

    ``values`` None means 1.0 for every cell. Indices are canonical (sorted, no duplicates).
    Raises DataError when an index falls outside the shape or lengths disagree.
    """
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    if values is None:
        data = np.ones(len(users), dtype=np.float32)
    else:
        data = np.asarray(values, dtype=np.float32)
    if not len(users) == len(items) == len(data):
        raise DataError(
            "user_idx, item_idx and values differ in length "
            f"({len(users)}, {len(items)}, {len(data)})"
        )
    for name, idx, bound in ((USER_IDX, users, n_users), (ITEM_IDX, items, n_items)):
        if len(idx) and (idx.min() < 0 or idx.max() >= bound):
            bad = idx[(idx < 0) | (idx >= bound)][0]
            raise DataError(f"{name} {bad} is outside [0, {bound})")
    matrix = sp.csr_matrix((data, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def interactions_to_csr(
    df: pd.DataFrame, n_users: int, n_items: int, implicit: bool = False
) -> sp.csr_matrix:
    """CSR of an encoded frame (``user_idx``, ``item_idx``, ``rating``): values are the ratings,
    or 1.0 when ``implicit``. Shape ``(n_users, n_items)`` of the full encoding."""
    needed = (USER_IDX, ITEM_IDX) if implicit else (USER_IDX, ITEM_IDX, RATING)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"interaction frame has no column(s) {missing} (columns: {list(df.columns)})"
        )
    values = None if implicit else df[RATING].to_numpy()
    return build_csr(df[USER_IDX].to_numpy(), df[ITEM_IDX].to_numpy(), values, n_users, n_items)
