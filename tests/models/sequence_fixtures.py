"""Time-ordered synthetic data for the sequence model tests (item2vec, GRU4Rec)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.features.order import interaction_order_csr
from pipelines.features.splits import temporal_last_n


def chain_split(n_users: int = 200, n_items: int = 60, length: int = 12, seed: int = 0):
    """(train, test, train order) of users walking a ring of items, +1 (80%) or +2 a step.

    Each user's last step is held out (temporal leave-last-one-out), so the next item follows
    from the previous one: a sequence model predicts it, popularity cannot.
    """
    rng = np.random.default_rng(seed)
    starts = rng.integers(n_items, size=n_users)
    steps = np.where(rng.random((n_users, length - 1)) < 0.8, 1, 2)
    items = (starts[:, None] + np.c_[np.zeros(n_users, dtype=int), np.cumsum(steps, axis=1)]) % n_items
    frame = pd.DataFrame(
        {"user_idx": np.repeat(np.arange(n_users), length), "item_idx": items.ravel(), "rating": 1.0,
         "timestamp": np.tile(np.arange(length), n_users) * 100}
    )
    train, test = temporal_last_n(frame, 1)

    def matrix(part: pd.DataFrame) -> sp.csr_matrix:
        values = part["rating"].to_numpy(np.float32)
        return sp.csr_matrix((values, (part["user_idx"], part["item_idx"])), shape=(n_users, n_items))

    return matrix(train), matrix(test), interaction_order_csr(train, n_users, n_items)
