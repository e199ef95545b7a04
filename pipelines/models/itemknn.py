"""Item-based nearest neighbours (Sarwar et al. 2001; Deshpande and Karypis 2004) with cosine similarity.

The similarity of items i and j is the cosine of their columns of the training matrix, optionally
shrunk towards zero when the items share little support:

    s_ij = x_i . x_j / (|x_i| |x_j| + shrinkage)

Each item keeps only its ``neighbours`` most similar items (a sparse items x items matrix ``S``,
zero diagonal), and a user's scores are their training row times ``S``: every seen item votes for
its neighbours. A new user is folded in the same way from their seed items, with no refit.

Similarities are computed a band of items at a time as a sparse product (pairs of items that share
no user are never formed), so memory stays near the size of the kept matrix
(``n_items x neighbours``) plus one band of at most ``block_elements`` entries.

``shrinkage`` is chosen at fit unless set (:func:`choose_shrinkage`): the numerators ``x_i . x_j``
do not depend on it, so one pass over a validation carve of train builds the neighbourhoods of
every candidate, a log grid relative to the mean ``|x_i|^2`` (the size of the cosine's
denominator the shrinkage competes with).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines import seeding
from pipelines.models.base import ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_seen, csr_from_state, csr_state, mean_gram_diagonal

log = logging.getLogger(__name__)

# Choosing the shrinkage on validation: share of each user's items held out, most users scored,
# the candidate multiples of the mean squared item norm (1/64 to 256, a factor 4 apart: the
# curve is flat near its peak), and the multiple used when nothing can be held out.
_CARVE_FRACTION = 0.2
_VALIDATION_USERS = 2_000
_GRID = tuple(4.0**k for k in range(-3, 5))
_FALLBACK_MULTIPLE = 1.0


class ItemKnnConfig(ModelConfig):
    """Hyperparameters of :class:`ItemKnnRecommender`, then its runtime options (``seed`` draws the
    validation carve when ``shrinkage`` is chosen at fit).
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    neighbours: int = Field(400, ge=1, le=10_000)
    """Most similar items kept per item (fewer when an item co-occurs with fewer)."""
    shrinkage: float | None = Field(None, ge=0.0, le=1e9, allow_inf_nan=False)
    """Added to the cosine's denominator: damps similarities resting on few common users. None
    (the default): chosen at fit on a validation carve of the training data, on a grid scaled to
    its mean squared item norm (in units of the weighted input), then used for the fit on all of
    it; the value used is ``shrinkage_``."""

    # -- runtime options: how to compute, not what ------------------------------------------
    block_elements: int = Field(2**24, ge=1)
    """Most entries of one band of the similarity computation (a sparse band holds at most this
    many, about 12 bytes each, times three while its similarities are selected): rows of the band =
    ``block_elements // n_items`` (at least one)."""

    runtime_options: ClassVar[frozenset[str]] = frozenset({"block_elements"})


class ItemKnnRecommender(Recommender):
    """Scores are ``X[u] @ S`` with ``S`` the sparse top-``neighbours`` cosine similarities.

    After :meth:`fit`: ``similarity_`` (CSR float32, n_items x n_items, row i = item i's
    neighbours), ``user_items_`` (the training rows, to score known users) and ``item_popularity_``.
    """

    name: ClassVar[str] = "itemknn"
    summary: ClassVar[str] = "Item-item cosine nearest neighbours; sparse, explainable, any catalogue size"
    config_class: ClassVar[type[ModelConfig]] = ItemKnnConfig
    config: ItemKnnConfig
    #: BM25 input (implicit's k1 100, b 0.8) ranks far better than binary here.
    preferred_weighting: ClassVar[dict[str, Any]] = {"scheme": "bm25", "k1": 100.0, "b": 0.8}

    similarity_: sp.csr_matrix | None = None
    user_items_: sp.csr_matrix | None = None
    shrinkage_: float | None = None

    def _fit(self, train: sp.csr_matrix, **unused: Any) -> None:
        """Build every item's neighbourhood from ``train`` (weighted upstream) with ``shrinkage``,
        or, when it is None, what :func:`choose_shrinkage` picks on a carve of ``train``."""
        cfg = self.config
        if cfg.shrinkage is None:
            self.shrinkage_ = choose_shrinkage(train, cfg.neighbours, cfg.seed, cfg.block_elements)
        else:
            self.shrinkage_ = float(cfg.shrinkage)
        self.similarity_ = top_k_cosine(train, cfg.neighbours, self.shrinkage_, cfg.block_elements)
        self.user_items_ = train

    def fitted_params(self) -> dict[str, Any]:
        """The shrinkage used (chosen on validation when the config leaves it None)."""
        return {"shrinkage": self.shrinkage_}

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return (self.user_items_[user_idx] @ self.similarity_).toarray()

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Fold-in: ``seen @ S`` for new users' seed items (n_new x n_items, weighted as train was)."""
        self._check_fitted()
        return (check_seen(seen, self.n_items) @ self.similarity_).toarray().astype(np.float32, copy=False)

    def _state(self) -> dict[str, np.ndarray]:
        shrinkage = self.shrinkage_ if self.shrinkage_ is not None else self.config.shrinkage
        return {
            **csr_state(self.similarity_, "similarity_"),
            **csr_state(self.user_items_, "user_items_"),
            "shrinkage_": np.asarray(shrinkage, dtype=np.float64),
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.similarity_ = csr_from_state(state, "similarity_")
        self.user_items_ = csr_from_state(state, "user_items_")
        self.shrinkage_ = float(state["shrinkage_"]) if "shrinkage_" in state else self.config.shrinkage


def choose_shrinkage(user_items: sp.csr_matrix, neighbours: int, seed: int, block_elements: int = 2**24) -> float:
    """The shrinkage with the best validation nDCG@10 on a seeded carve of ``user_items``, for all of it.

    ``_CARVE_FRACTION`` of each user's items is held out (at most ``_VALIDATION_USERS`` users
    scored); every candidate, a multiple of the carve's mean squared item norm from
    :data:`_GRID`, gets its neighbourhoods from one pass (:func:`top_k_cosines`). The best multiple is
    returned times the mean squared item norm of all of ``user_items``.
    """
    from pipelines.models.validation import split_for_early_stopping, validation_ndcg

    kept, validation = split_for_early_stopping(user_items, None, _CARVE_FRACTION, _VALIDATION_USERS, seeding.rng(seed))
    if validation is None:  # nobody has two items: nothing to validate on
        return _FALLBACK_MULTIPLE * mean_gram_diagonal(user_items)
    scale = mean_gram_diagonal(kept)
    similarities = top_k_cosines(kept, neighbours, [m * scale for m in _GRID], block_elements)
    measured = {
        multiple: validation_ndcg(lambda users: (kept[users] @ similarity).toarray(), validation)
        for multiple, similarity in zip(_GRID, similarities)
    }
    best = max(_GRID, key=measured.__getitem__)
    chosen = best * mean_gram_diagonal(user_items)
    log.info(
        "itemknn: shrinkage %.4g (%.3g x the mean squared item norm) chosen on validation (nDCG@10 by multiple %s)",
        chosen, best, {f"{m:.3g}": round(v, 4) for m, v in measured.items()},
    )
    return float(chosen)


def top_k_cosine(
    user_items: sp.csr_matrix, neighbours: int, shrinkage: float, block_elements: int = 2**24
) -> sp.csr_matrix:
    """Items x items CSR of each item's ``neighbours`` largest shrunk cosine similarities.

    Row i holds item i's neighbours (never i itself); only positive similarities are kept, so an
    item that shares no user with others has an empty row. Each row is selected on its own, so the
    result does not depend on the band size.
    """
    return top_k_cosines(user_items, neighbours, [shrinkage], block_elements)[0]


def top_k_cosines(
    user_items: sp.csr_matrix, neighbours: int, shrinkages: list[float], block_elements: int = 2**24
) -> list[sp.csr_matrix]:
    """:func:`top_k_cosine` for each of ``shrinkages``, from one pass: each band's numerators
    ``x_i . x_j`` (a sparse product: items that share no user are never formed) are computed once
    and divided by each shrunk denominator in turn."""
    n_items = user_items.shape[1]
    item_users = user_items.T.tocsr().astype(np.float32)
    norms = np.sqrt(np.asarray(item_users.multiply(item_users).sum(axis=1), dtype=np.float32).ravel())
    keep = min(neighbours, max(n_items - 1, 1))
    band = max(1, block_elements // n_items)
    parts = [([np.zeros(1, dtype=np.int64)], [], []) for _ in shrinkages]  # (indptr, indices, values)
    for start in range(0, n_items, band):
        stop = min(start + band, n_items)
        numerators = (item_users[start:stop] @ item_users.T).tocsr()
        numerators.sum_duplicates()
        rows = np.repeat(np.arange(stop - start), np.diff(numerators.indptr))
        off_diagonal = numerators.indices != rows + start  # an item is not its own neighbour
        rows, columns = rows[off_diagonal], numerators.indices[off_diagonal]
        values = numerators.data[off_diagonal].astype(np.float32, copy=False)
        product = norms[start:stop][rows] * norms[columns]
        for shrinkage, (indptr, indices, kept_values) in zip(shrinkages, parts):
            denominator = np.maximum(product + np.float32(shrinkage), np.finfo(np.float32).tiny)  # empty: 0 / tiny
            similarity = values / denominator
            chosen = _top_per_row(rows, similarity, stop - start, keep)
            indices.append(columns[chosen])
            kept_values.append(similarity[chosen])
            indptr.append(indptr[-1][-1] + np.cumsum(np.bincount(rows[chosen], minlength=stop - start)))
    similarities = []
    for indptr, indices, values in parts:
        similarity = sp.csr_matrix(
            (np.concatenate(values).astype(np.float32), np.concatenate(indices), np.concatenate(indptr)),
            shape=(n_items, n_items),
        )
        similarity.sort_indices()
        similarities.append(similarity)
    return similarities


def _top_per_row(rows: np.ndarray, values: np.ndarray, n_rows: int, keep: int) -> np.ndarray:
    """Positions of each row's ``keep`` largest positive ``values`` (``rows`` sorted, one entry
    per value), in row order. Rows with no more than ``keep`` positives keep them all; only the
    longer ones are partitioned."""
    positive = np.flatnonzero(values > 0)
    counts = np.bincount(rows[positive], minlength=n_rows)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    chosen = np.ones(len(positive), dtype=bool)
    for row in np.flatnonzero(counts > keep):
        lo, hi = bounds[row], bounds[row + 1]
        dropped = np.argpartition(-values[positive[lo:hi]], keep - 1)[keep:]
        chosen[lo + dropped] = False
    return positive[chosen]
