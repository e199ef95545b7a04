"""Most-popular baseline: every user gets the same ranking of items.

The floor every other model has to beat, and the fallback for users a model has never seen.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from pipelines.models.base import IterationCallback, ModelConfig, Recommender, item_popularity


class PopularityConfig(ModelConfig):
    """Hyperparameters of :class:`PopularityRecommender` (``seed`` is unused: it is deterministic)."""

    score_by: Literal["users", "weights"] = "users"
    """``users``: the number of users with a positive value for the item (how many people chose
    it, whatever the weighting). ``weights``: the sum of the item's stored values, so upstream
    confidence weighting (ratings, play counts, BM25) counts."""


class PopularityRecommender(Recommender):
    """Scores each item by its popularity in the training matrix, identically for every user.

    After :meth:`fit`: ``item_scores_`` (what :meth:`score` returns per user) and
    ``item_popularity_`` (users per item, the shared unknown-user fallback; equal to
    ``item_scores_`` when ``score_by="users"``).
    """

    name: ClassVar[str] = "popularity"
    summary: ClassVar[str] = "Most popular items; the floor every model must beat and the unknown-user fallback"
    config_class: ClassVar[type[ModelConfig]] = PopularityConfig
    config: PopularityConfig

    def __init__(self, config: PopularityConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.item_scores_: np.ndarray | None = None
        self.item_popularity_: np.ndarray | None = None

    def fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: sp.csr_matrix | None = None,
        validation: sp.csr_matrix | None = None,
        callback: IterationCallback | None = None,
    ) -> "PopularityRecommender":
        """Count (or sum) each item's interactions in ``train`` (users x items); returns self.

        ``item_features`` and ``callback`` are accepted for the shared interface and unused (there
        are no iterations). Raises TypeError for a non-sparse ``train``, ValueError for an empty
        one or non-finite values.
        """
        if not sp.issparse(train):
            raise TypeError(f"train must be a SciPy sparse matrix (users x items), got {type(train).__name__}")
        matrix = sp.csr_matrix(train, dtype=np.float64)
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise ValueError(f"train must have at least one user and one item, got shape {matrix.shape}")
        if not np.isfinite(matrix.data).all():
            raise ValueError("train has non-finite values (NaN or inf)")
        self.item_popularity_ = item_popularity(matrix)
        if self.config.score_by == "users":
            self.item_scores_ = self.item_popularity_.copy()
        else:
            self.item_scores_ = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
        self.n_users, self.n_items = matrix.shape
        self.training_loss_ = []
        return self

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(user_idx), self.n_items))

    def _item_only_scores(self) -> np.ndarray | None:
        return self.item_scores_

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_scores_": self.item_scores_}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_scores_ = state["item_scores_"]
