"""Top-k ranking metrics: the one implementation training, tests and benchmarks share.

Conventions follow Microsoft Recommenders' ``python_evaluation`` (``relevancy_method="top_k"``,
binary relevance), so numbers compare with its MovieLens benchmark tables. For a user with
``R`` relevant (test) items, top-k list ``rec`` and ``hit_j`` = 1 when the item at rank j
(1-based) is relevant:

- ``precision@k`` = hits / k (k, not the list length: empty slots count as misses)
- ``recall@k``    = hits / R
- ``ndcg@k``      = sum_j hit_j / log2(j + 1), divided by the ideal DCG of min(k, R) hits
- ``map@k``       = sum over hits of (precision at that hit's rank) / R. This is Recommenders'
  historic ``map_at_k`` (dividing by all R relevant items, as Spark's meanAveragePrecision does),
  not the "AP@k" variant that divides by min(k, R); it is lower whenever R > k.
- ``hit_rate@k``  = 1 if any hit
- ``coverage@k``  = distinct recommended items over the evaluated users / ``n_items``

Per-user values are averaged over users with at least one relevant item (Recommenders averages
over users present in both truth and predictions; a user whose list is all empty slots counts
here with zeros). Everything is vectorised: no Python loop over users. Several cut-offs come
from one hit matrix of the longest list (:func:`ranking_metrics_at_ks`): a top-k list is a
prefix of a longer one.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

METRIC_NAMES = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")


def hit_matrix(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean (n_users, list length): is ``recommended[u, j]`` a stored item of ``relevant[u]``?

    Slots holding -1 (or any index outside the columns of ``relevant``) are misses.
    """
    relevant = sp.csr_matrix(relevant)
    relevant.eliminate_zeros()
    relevant.sum_duplicates()  # canonical: sorted column indices per row
    n_rows, n_cols = relevant.shape
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(relevant.indptr))
    # Row-major keys of the relevant cells are sorted, so membership is one searchsorted.
    keys = rows * n_cols + relevant.indices.astype(np.int64)
    rec = np.asarray(recommended, dtype=np.int64)
    valid = (rec >= 0) & (rec < n_cols)
    query = np.arange(n_rows, dtype=np.int64)[:, None] * n_cols + np.where(valid, rec, 0)
    if len(keys) == 0:
        return np.zeros(rec.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return valid & (keys[pos] == query)


def _check_inputs(
    recommended: np.ndarray, relevant: sp.spmatrix, ks: list[int], n_items: int
) -> np.ndarray:
    if not ks or ks[0] < 1:
        raise ValueError(f"k must be >= 1, got {ks[0] if ks else 'no k'}")
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D (n_users, k), got shape {rec.shape}")
    if not sp.issparse(relevant):
        raise TypeError(f"relevant must be a SciPy sparse matrix, got {type(relevant).__name__}")
    if relevant.shape[0] != rec.shape[0]:
        raise ValueError(
            f"recommended has {rec.shape[0]} rows but relevant has {relevant.shape[0]}; "
            "slice relevant to the evaluated users"
        )
    rec = rec[:, : ks[-1]].astype(np.int64, copy=False)
    ordered = np.sort(rec, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ValueError(
            f"recommended row {row} repeats an item; a top-k list holds each item once"
        )
    return rec


def ranking_metrics(
    recommended: np.ndarray, relevant: sp.spmatrix, k: int, n_items: int
) -> dict[str, float]:
    """Top-``k`` metrics of ranked lists against binary relevance.

    ``recommended``: (n_users, >= k) item indices, best first, -1 for an empty slot (only the
    first k columns are used; fewer columns count as empty slots). ``relevant``: sparse
    (n_users, n_items_total), row u = the relevant items of ``recommended``'s row u (every stored
    non-zero is relevant). ``n_items``: catalogue size for coverage. Returns ``precision@k``,
    ``recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k``, ``coverage@k`` (floats) and ``n_users``
    (users with >= 1 relevant item: the ones averaged); metrics are 0.0 when there are none.
    Raises ValueError on mismatched shapes, k < 1 or a list repeating an item.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return ranking_metrics_at_ks(recommended, relevant, (k,), n_items)[k]


def ranking_metrics_at_ks(
    recommended: np.ndarray, relevant: sp.spmatrix, ks: tuple[int, ...] | list[int], n_items: int
) -> dict[int, dict[str, float]]:
    """:func:`ranking_metrics` at every cut-off of ``ks`` (``{k: metrics}``, ascending k) from
    one hit matrix of the first ``max(ks)`` columns: each list is checked and matched once.

    Raises ValueError like :func:`ranking_metrics` (any k < 1 included).
    """
    ks = sorted({int(k) for k in ks})
    rec = _check_inputs(recommended, relevant, ks, n_items)
    relevant = sp.csr_matrix(relevant)
    relevant.eliminate_zeros()
    n_relevant = np.diff(relevant.indptr).astype(np.float64)
    evaluated = n_relevant > 0
    n_users = int(evaluated.sum())
    if not evaluated.any():
        return {k: {**{f"{name}@{k}": 0.0 for name in METRIC_NAMES}, "n_users": 0} for k in ks}

    rec = rec[evaluated]
    hits = hit_matrix(rec, relevant[evaluated]).astype(np.float64)
    n_rel = n_relevant[evaluated]
    width = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, ks[-1] + 2, dtype=np.float64))  # ranks 1..max(ks)
    ideal_cumulative = np.cumsum(discounts)
    ranks = np.arange(1, width + 1, dtype=np.float64)
    # Running sums along each list: the value at column k-1 is the metric's sum over the top k.
    cum_hits = np.cumsum(hits, axis=1)
    cum_dcg = np.cumsum(hits * discounts[:width], axis=1)
    cum_precision = np.cumsum(cum_hits / ranks * hits, axis=1)
    # The best (first) rank of each recommended item: coverage@k counts those below k.
    valid = (rec >= 0) & (rec < n_items)
    columns = np.broadcast_to(np.arange(width), rec.shape)
    first_rank = np.full(n_items, width, dtype=np.int64)
    np.minimum.at(first_rank, rec[valid], columns[valid])
    distinct_by_rank = np.cumsum(np.bincount(first_rank, minlength=width + 1)[:width])

    result: dict[int, dict[str, float]] = {}
    for k in ks:
        upto = min(k, width) - 1  # columns past the list's width are empty slots: no more hits
        n_hits = cum_hits[:, upto] if width else np.zeros(len(n_rel))
        dcg = cum_dcg[:, upto] if width else np.zeros(len(n_rel))
        average_precision = (cum_precision[:, upto] if width else np.zeros(len(n_rel))) / n_rel
        idcg = ideal_cumulative[np.minimum(n_rel, k).astype(np.int64) - 1]
        result[k] = {
            f"precision@{k}": float(np.mean(n_hits / k)),
            f"recall@{k}": float(np.mean(n_hits / n_rel)),
            f"ndcg@{k}": float(np.mean(dcg / idcg)),
            f"map@{k}": float(np.mean(average_precision)),
            f"hit_rate@{k}": float(np.mean(n_hits > 0)),
            f"coverage@{k}": float(distinct_by_rank[upto] / n_items) if width else 0.0,
            "n_users": n_users,
        }
    return result
