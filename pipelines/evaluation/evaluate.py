"""Evaluate a fitted recommender on held-out interactions with :func:`ranking_metrics`.

The model ranks every item for each evaluated user, with the user's training items excluded
(the usual protocol: a model gets no credit for re-finding what it was trained on), and the
top-k lists are scored against the test matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from pipelines.evaluation.metrics import ranking_metrics, ranking_metrics_at_ks

if TYPE_CHECKING:
    from pipelines.models.base import Recommender


def users_with_test_items(test: sp.spmatrix) -> np.ndarray:
    """Row indices of ``test`` holding at least one stored non-zero (int64, ascending)."""
    test = sp.csr_matrix(test, copy=True)
    test.eliminate_zeros()
    counts = np.diff(test.indptr)
    return np.flatnonzero(counts > 0).astype(np.int64)


def _prepare(
    train: sp.spmatrix, test: sp.spmatrix, users: np.ndarray | None
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    if train.shape != test.shape:
        raise ValueError(
            f"train has shape {train.shape} but test has {test.shape}; they must align"
        )
    train, test = sp.csr_matrix(train), sp.csr_matrix(test)
    if users is None:
        users = users_with_test_items(test)
    else:
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        out_of_range = (users < 0) | (users >= test.shape[0])
        if out_of_range.any():
            raise ValueError(
                f"users holds index {users[out_of_range][0]} outside "
                f"[0, {test.shape[0]}) (the rows of test)"
            )
    return train, test, users


def _recommend(
    model: "Recommender", train: sp.csr_matrix, users: np.ndarray, k: int, batch_size: int | None
) -> np.ndarray:
    if len(users) == 0:
        return np.full((0, k), -1, dtype=np.int64)
    items, _ = model.recommend(users, k, exclude=train, batch_size=batch_size)
    return np.asarray(items)


def evaluate_model(
    model: "Recommender",
    train: sp.spmatrix,
    test: sp.spmatrix,
    k: int = 10,
    users: np.ndarray | None = None,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Top-``k`` metrics of ``model`` on ``test`` (users x items, aligned with ``train``).

    ``users`` defaults to every user with at least one test item; given users without test
    items are ignored by the averages. Recommendations exclude each user's ``train`` items.
    Returns :func:`ranking_metrics`' dict (``precision@k`` ... ``coverage@k``, ``n_users``).
    Raises ValueError when shapes disagree or a user index is out of range.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    train, test, users = _prepare(train, test, users)
    recommended = _recommend(model, train, users, k, batch_size)
    return ranking_metrics(recommended, test[users], k, n_items=test.shape[1])


def metrics_at_ks(
    model: "Recommender",
    train: sp.spmatrix,
    test: sp.spmatrix,
    ks: Iterable[int] = (1, 5, 10, 20),
    users: np.ndarray | None = None,
    batch_size: int | None = None,
) -> dict[int, dict[str, float]]:
    """:func:`evaluate_model` at several cut-offs from ONE ranking at ``max(ks)``.

    Returns ``{k: metrics}`` in ascending k (for a metric-at-K plot). A top-k list is a prefix
    of the longer list, so slicing matches separate calls up to the order of tied scores.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be non-empty positive integers, got {ks}")
    train, test, users = _prepare(train, test, users)
    recommended = _recommend(model, train, users, ks[-1], batch_size)
    return ranking_metrics_at_ks(recommended, test[users], ks, n_items=test.shape[1])
