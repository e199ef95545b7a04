"""The time order of each user's interactions, as a CSR matrix beside the training matrix.

Models take a users x items CSR matrix of values (ratings or confidences), which carries no time.
Sequence models (item2vec, GRU4Rec) need each user's items in the order they happened, so the
features step also writes ``train_order.npz``: the same sparsity pattern as ``train.npz`` with
values = the 1-based rank of the interaction in its user's time order (1 = earliest). Ties in
time are broken by ``item_idx``, as :func:`pipelines.features.splits.temporal_last_n` does.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.constants import ITEM_IDX, TIMESTAMP, USER_IDX
from pipelines.errors import DataError

log = logging.getLogger(__name__)


def interaction_order_csr(frame: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Users x items float32 CSR whose values are each interaction's 1-based rank in time.

    Takes an encoded frame (``user_idx``, ``item_idx``, ``timestamp``; one row per pair) and the
    shape of the full encoding. Raises DataError naming a missing column or a repeated pair.
    """
    missing = [c for c in (USER_IDX, ITEM_IDX, TIMESTAMP) if c not in frame.columns]
    if missing:
        raise DataError(f"interaction frame has no column(s) {missing} (columns: {list(frame.columns)})")
    users = frame[USER_IDX].to_numpy(dtype=np.int64)
    items = frame[ITEM_IDX].to_numpy(dtype=np.int64)
    timestamps = frame[TIMESTAMP].to_numpy(dtype=np.int64)
    order = _time_order(users, items, timestamps)
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]]) if len(order) else np.zeros(0, int)
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes) + 1
    matrix = sp.csr_matrix(
        (rank.astype(np.float32), (sorted_users, items[order])), shape=(n_users, n_items)
    )
    if matrix.nnz != len(order):
        raise DataError("interaction frame repeats a (user_idx, item_idx) pair; the order needs one row per pair")
    matrix.sort_indices()
    return matrix


def _time_order(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Row order by (user, timestamp, item). The encoded frames arrive sorted by (user, item),
    so a stable sort on one int64 (user, timestamp) key keeps items in order for equal times:
    a radix sort instead of a three-key lexsort. Other inputs take the lexsort."""
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    span = int(timestamps.max()) - int(timestamps.min()) + 1
    by_user_item = np.all((users[1:] > users[:-1]) | ((users[1:] == users[:-1]) & (items[1:] > items[:-1])))
    if by_user_item and span * (int(users.max()) + 1) < 2**62:
        return np.argsort(users * span + (timestamps - timestamps.min()), kind="stable")
    return np.lexsort((items, timestamps, users))


def check_interaction_order(order: sp.spmatrix, train: sp.csr_matrix) -> sp.csr_matrix:
    """Validate ``order`` against the (canonical) ``train`` matrix; returns it as a canonical CSR.

    It must be sparse, have train's shape and hold a positive finite rank for exactly the stored
    entries of ``train``. Raises TypeError or ValueError naming the first user at fault.
    """
    if not sp.issparse(order):
        raise TypeError(f"interaction_order must be a SciPy sparse matrix (users x items), got {type(order).__name__}")
    if order.shape != train.shape:
        raise ValueError(f"interaction_order has shape {order.shape}, train has {train.shape}; they must match")
    matrix = sp.csr_matrix(order, dtype=np.float64, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if matrix.nnz and not (np.isfinite(matrix.data).all() and (matrix.data > 0).all()):
        raise ValueError("interaction_order values must be positive finite ranks (1 = earliest)")
    same = np.array_equal(matrix.indptr, train.indptr) and np.array_equal(matrix.indices, train.indices)
    if not same:
        counts_differ = np.flatnonzero(np.diff(matrix.indptr) != np.diff(train.indptr))
        if len(counts_differ):
            user = int(counts_differ[0])
        else:
            # Same row lengths, different items: find the first stored entry that differs.
            entry = int(np.flatnonzero(matrix.indices != train.indices)[0])
            user = int(np.searchsorted(train.indptr, entry, side="right") - 1)
        raise ValueError(
            f"interaction_order does not cover the same (user, item) entries as train (first at user {user}); "
            "build both from the same training rows"
        )
    return matrix


def user_sequences(
    train: sp.csr_matrix, order: sp.csr_matrix | None, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Each user's items (int64 item indices) in time order, earliest first.

    ``train`` must be canonical (sorted indices); ``order`` is a validated rank matrix from
    :func:`check_interaction_order`. Without ``order``, each user's items come in a random order
    drawn from ``rng`` (required then): the caller has already warned that no time order was given.
    """
    if order is None and rng is None:
        raise ValueError("user_sequences needs an rng when no interaction order is given")
    sequences = []
    for user in range(train.shape[0]):
        lo, hi = train.indptr[user], train.indptr[user + 1]
        items = train.indices[lo:hi].astype(np.int64)
        if order is not None:
            items = items[np.argsort(order.data[lo:hi], kind="stable")]
        else:
            items = rng.permutation(items)
        sequences.append(items)
    return sequences


def time_ordered_sequences(
    train: sp.csr_matrix, interaction_order: sp.spmatrix | None, seed: int, model: str
) -> list[np.ndarray]:
    """Each user's items in time order for sequence model ``model`` (canonical ``train``).

    Validates ``interaction_order`` against ``train`` (see :func:`check_interaction_order`).
    Without it, warns that the order is a seeded shuffle (the model then learns co-occurrence,
    not sequence) and shuffles each user's items with ``seed``.
    """
    if interaction_order is None:
        message = (
            f"{model} got no interaction_order: each user's items are taken in a seeded random order, "
            "so the model learns co-occurrence but not sequence (pass the features step's train_order)"
        )
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return user_sequences(train, None, np.random.default_rng(seed))
    return user_sequences(train, check_interaction_order(interaction_order, train))
