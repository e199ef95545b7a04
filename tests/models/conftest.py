"""Data for the model tests: the planted split (pipelines.data.synthetic), chain data for the
sequence models, and MovieLens latest-small through :mod:`movielens_data` (skips when absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.data.synthetic import PlantedSplit, planted_split


def planted_fit_inputs(model_class: type, planted: PlantedSplit) -> dict:
    """The keyword inputs a family's fit takes besides ``train``: content features, time order."""
    inputs = {}
    if model_class.requires_item_features:
        inputs["item_features"] = planted.item_features
    if model_class.uses_interaction_order:
        inputs["interaction_order"] = planted.order
    return inputs


@pytest.fixture(scope="session")
def planted() -> PlantedSplit:
    return planted_split()


@pytest.fixture(scope="session")
def fit_inputs():
    """``fit_inputs(model_class, planted)``: the extra fit keywords a family needs on planted data."""
    return planted_fit_inputs


@pytest.fixture(scope="session")
def chain() -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """(train, test, train order) of 200 users walking a ring of 60 items, +1 (80%) or +2 a step.

    Each user's last step is held out (temporal leave-last-one-out), so the next item follows
    from the previous one: a sequence model predicts it, popularity cannot.
    """
    from pipelines.features.order import interaction_order_csr
    from pipelines.features.splits import temporal_last_n

    n_users, n_items, length = 200, 60, 12
    rng = np.random.default_rng(0)
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


@pytest.fixture(scope="session")
def movielens(movielens_dir):
    """ml-latest-small as :class:`movielens_data.MovieLensSplits` (loaded once; skips when absent)."""
    from movielens_data import movielens_splits

    return movielens_splits(movielens_dir)


#: Planted sets of several sizes and densities (users x items, items per user): the defaults
#: chosen at fit must beat popularity on each.
PLANTED_SHAPES = {
    "150x80": dict(n_users=150, n_items=80, per_user=24, test_per_user=6),
    "2000x500": dict(n_users=2000, n_items=500, per_user=30, test_per_user=8),
    "sparse-3000x1500": dict(n_users=3000, n_items=1500, per_user=8, test_per_user=3),
}


@pytest.fixture(scope="session", params=sorted(PLANTED_SHAPES))
def planted_shape(request) -> tuple[str, PlantedSplit]:
    """(name, split) for each of :data:`PLANTED_SHAPES`."""
    return request.param, planted_split(**PLANTED_SHAPES[request.param])


@pytest.fixture(scope="session")
def planted_ndcg():
    """``planted_ndcg(model, split)``: nDCG@10 on ``split.test``, training items excluded."""
    from pipelines.evaluation.metrics import ranking_metrics

    def ndcg(model, split: PlantedSplit) -> float:
        recommended, _ = model.recommend(np.arange(split.n_users), k=10, exclude=split.train)
        return ranking_metrics(recommended, split.test, 10, split.n_items)["ndcg@10"]

    return ndcg
