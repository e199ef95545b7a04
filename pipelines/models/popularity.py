"""Most-popular baseline: every user gets the same ranking of items.

The floor every other model has to beat, and the fallback for users a model has never seen.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from pipelines.models.base import ModelConfig, Recommender


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

    train_dtype: ClassVar[str] = "float64"  # sums of weights, then float32 scores
    item_scores_: np.ndarray | None = None

    def _fit(self, train: sp.csr_matrix, **unused: Any) -> None:
        """Count (or sum) each item's interactions: no iterations, nothing else is used."""
        if self.config.score_by == "users":
            self.item_scores_ = self.item_popularity_.copy()
        else:
            self.item_scores_ = np.asarray(train.sum(axis=0), dtype=np.float32).ravel()

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(user_idx), self.n_items))

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_scores_": self.item_scores_}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_scores_ = state["item_scores_"]
