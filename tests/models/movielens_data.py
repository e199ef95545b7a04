"""MovieLens latest-small as the slow model tests use it: split, time order, content features.

Protocol of ``test_model_movielens.py``: per-user stratified 75/25 split with seed 42
(Microsoft Recommenders' ``python_stratified_split``), top-10 with training items excluded.
Sequence models also get the temporal leave-last-one-out split. Loaded once per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.data.movielens import read_movielens_items
from pipelines.evaluation.metrics import ranking_metrics
from pipelines.features.content import item_content_features
from pipelines.features.order import interaction_order_csr
from pipelines.features.splits import stratified_split, temporal_last_n


@dataclass(frozen=True)
class MovieLensSplits:
    """Stratified ``train``/``test`` (+ ``order``), temporal ``last_train``/``last_test``
    (+ ``last_order``), and ``item_features`` from movies.csv and tags.csv."""

    train: sp.csr_matrix
    test: sp.csr_matrix
    order: sp.csr_matrix
    last_train: sp.csr_matrix
    last_test: sp.csr_matrix
    last_order: sp.csr_matrix
    item_features: sp.csr_matrix


@lru_cache(maxsize=1)
def movielens_splits(folder: Path) -> MovieLensSplits:
    ratings = pd.read_csv(folder / "ratings.csv")
    user_ids, users = np.unique(ratings["userId"].to_numpy(), return_inverse=True)
    item_ids, items = np.unique(ratings["movieId"].to_numpy(), return_inverse=True)
    frame = pd.DataFrame(
        {"user_idx": users, "item_idx": items, "rating": ratings["rating"].to_numpy(), "timestamp": ratings["timestamp"].to_numpy()}
    )
    shape = (len(user_ids), len(item_ids))

    def matrix(part: pd.DataFrame) -> sp.csr_matrix:
        return sp.csr_matrix((part["rating"].to_numpy(), (part["user_idx"].to_numpy(), part["item_idx"].to_numpy())), shape=shape)

    train, test = stratified_split(frame, test_fraction=0.25, seed=42)
    last_train, last_test = temporal_last_n(frame, 1)
    index = pd.DataFrame({"item_id": item_ids.astype(str), "item_idx": np.arange(len(item_ids))})
    features, _ = item_content_features(read_movielens_items(folder), index)
    return MovieLensSplits(
        train=matrix(train), test=matrix(test), order=interaction_order_csr(train, *shape),
        last_train=matrix(last_train), last_test=matrix(last_test), last_order=interaction_order_csr(last_train, *shape),
        item_features=features,
    )


def metrics_at_10(model, train: sp.csr_matrix, test: sp.csr_matrix) -> dict[str, float]:
    """Ranking metrics at 10 over every user, training items excluded."""
    recommended, _ = model.recommend(np.arange(train.shape[0]), k=10, exclude=train)
    return ranking_metrics(recommended, test, 10, train.shape[1])
