"""Item-based nearest neighbours (Sarwar et al. 2001; Deshpande and Karypis 2004) with cosine similarity.

The similarity of items i and j is the cosine of their columns of the training matrix, optionally
shrunk towards zero when the items share little support:

    s_ij = x_i . x_j / (|x_i| |x_j| + shrinkage)

Each item keeps only its ``neighbours`` most similar items (a sparse items x items matrix ``S``,
zero diagonal), and a user's scores are their training row times ``S``: every seen item votes for
its neighbours. A new user is folded in the same way from their seed items, with no refit.

Similarities are computed a band of items at a time, so memory stays near the size of the kept
matrix (``n_items x neighbours``) plus one dense band bounded by ``block_elements``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines.models.base import ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_seen, csr_from_state, csr_state

log = logging.getLogger(__name__)


class ItemKnnConfig(ModelConfig):
    """Hyperparameters of :class:`ItemKnnRecommender`, then its runtime options (``seed`` is unused).
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    neighbours: int = Field(400, ge=1, le=10_000)
    """Most similar items kept per item (fewer when an item co-occurs with fewer)."""
    shrinkage: float = Field(1000.0, ge=0.0, le=1e6, allow_inf_nan=False)
    """Added to the cosine's denominator: damps similarities resting on few common users."""

    # -- runtime options: how to compute, not what ------------------------------------------
    block_elements: int = Field(2**24, ge=1)
    """Largest dense band of the similarity computation, in elements (x 4 bytes): rows of the
    band = ``block_elements // n_items`` (at least one)."""

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
    #: The defaults were tuned on BM25 input (implicit's k1 100, b 0.8); binary does far worse.
    preferred_weighting: ClassVar[dict[str, Any]] = {"scheme": "bm25", "k1": 100.0, "b": 0.8}

    similarity_: sp.csr_matrix | None = None
    user_items_: sp.csr_matrix | None = None

    def _fit(self, train: sp.csr_matrix, **unused: Any) -> None:
        """Build every item's neighbourhood from ``train`` (weighted upstream); no iterations."""
        cfg = self.config
        self.similarity_ = top_k_cosine(train, cfg.neighbours, cfg.shrinkage, cfg.block_elements)
        self.user_items_ = train

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return (self.user_items_[user_idx] @ self.similarity_).toarray()

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Fold-in: ``seen @ S`` for new users' seed items (n_new x n_items, weighted as train was)."""
        self._check_fitted()
        return (check_seen(seen, self.n_items) @ self.similarity_).toarray().astype(np.float32, copy=False)

    def _state(self) -> dict[str, np.ndarray]:
        return {**csr_state(self.similarity_, "similarity_"), **csr_state(self.user_items_, "user_items_")}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.similarity_ = csr_from_state(state, "similarity_")
        self.user_items_ = csr_from_state(state, "user_items_")


def top_k_cosine(
    user_items: sp.csr_matrix, neighbours: int, shrinkage: float, block_elements: int = 2**24
) -> sp.csr_matrix:
    """Items x items CSR of each item's ``neighbours`` largest shrunk cosine similarities.

    Row i holds item i's neighbours (never i itself); only positive similarities are kept, so an
    item that shares no user with others has an empty row. Each row is selected on its own, so the
    result does not depend on the band size.
    """
    n_items = user_items.shape[1]
    item_users = user_items.T.tocsr().astype(np.float32)
    norms = np.sqrt(np.asarray(item_users.multiply(item_users).sum(axis=1), dtype=np.float32).ravel())
    keep = min(neighbours, max(n_items - 1, 1))
    band = max(1, block_elements // n_items)
    indptr = [np.zeros(1, dtype=np.int64)]
    indices, values = [], []
    for start in range(0, n_items, band):
        stop = min(start + band, n_items)
        dots = (item_users[start:stop] @ item_users.T).toarray()
        denominator = np.outer(norms[start:stop], norms)
        denominator += np.float32(shrinkage)
        np.maximum(denominator, np.finfo(np.float32).tiny, out=denominator)  # empty items: 0 / tiny = 0
        dots /= denominator
        rows = np.arange(stop - start)
        dots[rows, rows + start] = 0  # an item is not its own neighbour
        if keep < n_items:
            top = np.argpartition(-dots, keep - 1, axis=1)[:, :keep]
        else:
            top = np.broadcast_to(np.arange(n_items), dots.shape)
        top_values = np.take_along_axis(dots, top, axis=1)
        positive = top_values > 0
        indices.append(top[positive])
        values.append(top_values[positive])
        indptr.append(indptr[-1][-1] + np.cumsum(positive.sum(axis=1)))
    similarity = sp.csr_matrix(
        (np.concatenate(values).astype(np.float32), np.concatenate(indices), np.concatenate(indptr)),
        shape=(n_items, n_items),
    )
    similarity.sort_indices()
    return similarity

