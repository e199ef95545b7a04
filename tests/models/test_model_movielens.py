"""Acceptance: ALS with its default hyperparameters on MovieLens latest-small.

Protocol of Microsoft Recommenders' MovieLens benchmarks: ``python_stratified_split`` (per user,
75% of the ratings at random to train, seed 42), top-10 with training items excluded, every test
rating relevant. Reference: ALS with 64 factors and 15 iterations scores nDCG@10 0.347 there,
popularity 0.21.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.evaluation.metrics import ranking_metrics
from pipelines.features.splits import stratified_split
from pipelines.features.weighting import apply_weighting
from pipelines.models import create_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def movielens_split(movielens_dir: Path) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    ratings = pd.read_csv(movielens_dir / "ratings.csv")
    user_ids, users = np.unique(ratings["userId"].to_numpy(), return_inverse=True)
    item_ids, items = np.unique(ratings["movieId"].to_numpy(), return_inverse=True)
    frame = pd.DataFrame({"user_idx": users, "row": np.arange(len(users))})
    train_rows, _ = stratified_split(frame, test_fraction=0.25, seed=42)
    is_train = np.zeros(len(users), dtype=bool)
    is_train[train_rows["row"].to_numpy()] = True
    shape = (len(user_ids), len(item_ids))

    def matrix(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((ratings["rating"].to_numpy()[mask], (users[mask], items[mask])), shape=shape)

    return matrix(is_train), matrix(~is_train)


def ndcg_at_10(model, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    recommended, _ = model.recommend(np.arange(train.shape[0]), k=10, exclude=train)
    return ranking_metrics(recommended, test, 10, train.shape[1])["ndcg@10"]


def test_split_matches_recommenders(movielens_split):
    train, test = movielens_split
    assert (train.nnz, test.nnz) == (75_630, 25_206)  # what python_stratified_split gives
    assert (train.multiply(test)).nnz == 0


def test_als_defaults_reach_the_reference_ndcg(movielens_split):
    train, test = movielens_split
    confidences = apply_weighting(train, "none")  # binary: the weighting the defaults were tuned with
    als = create_model("als").fit(confidences)
    popularity = create_model("popularity").fit(train)
    als_ndcg, popularity_ndcg = ndcg_at_10(als, train, test), ndcg_at_10(popularity, train, test)
    assert popularity_ndcg == pytest.approx(0.21, abs=0.01)
    assert als_ndcg >= 0.33, f"ALS nDCG@10 {als_ndcg:.4f} below the 0.33 target (popularity {popularity_ndcg:.4f})"
