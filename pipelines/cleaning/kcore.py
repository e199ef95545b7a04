"""Iterative k-core filtering of a user-item graph (pure NumPy; the loop never touches Dask).

A user or item with fewer than ``k`` interactions is removed with all its interactions, which
can push others below ``k``; this repeats until nothing changes. Removal is always of whole
users or items, so the surviving rows are exactly those whose user and item both survive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.constants import ITEM, USER


def kcore_mask(user_codes: np.ndarray, item_codes: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the interactions in the k-core of the bipartite graph.

    Args:
        user_codes, item_codes: integer codes (0..n-1) of each interaction's user and item.
        k: minimum interactions per user and per item; ``k <= 1`` keeps everything.
    """
    alive = np.ones(len(user_codes), dtype=bool)
    if k <= 1 or len(user_codes) == 0:
        return alive
    n_users, n_items = int(user_codes.max()) + 1, int(item_codes.max()) + 1
    while True:
        user_counts = np.bincount(user_codes[alive], minlength=n_users)
        item_counts = np.bincount(item_codes[alive], minlength=n_items)
        weak = alive & ((user_counts[user_codes] < k) | (item_counts[item_codes] < k))
        if not weak.any():
            return alive
        alive &= ~weak


def kcore_members(pairs: pd.DataFrame, k: int) -> tuple[pd.Index, pd.Index]:
    """The user ids and item ids that survive the k-core of ``pairs`` (columns user_id, item_id)."""
    user_codes, users = pd.factorize(pairs[USER], sort=True)
    item_codes, items = pd.factorize(pairs[ITEM], sort=True)
    alive = kcore_mask(user_codes, item_codes, k)
    return pd.Index(users[np.unique(user_codes[alive])]), pd.Index(items[np.unique(item_codes[alive])])


def in_core(frame: pd.DataFrame, users: pd.Index, items: pd.Index) -> pd.DataFrame:
    """The rows of ``frame`` whose user and item are both k-core members."""
    return frame[frame[USER].isin(users) & frame[ITEM].isin(items)]
