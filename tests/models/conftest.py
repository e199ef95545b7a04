"""Planted-factor interaction data for the model tests, generated with NumPy in a fixture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp


@dataclass(frozen=True)
class PlantedData:
    """A users x items split: ``train`` (binary confidences) and held-out ``test`` interactions.

    ``item_features`` (items x 2*rank, the planted item tastes split into positive and negative
    parts, like genre weights) feeds content models; ``order`` ranks each user's training picks
    in time (see :mod:`pipelines.features.order`) for sequence models.
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    item_features: sp.csr_matrix | None = None
    order: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]


def planted_split(
    n_users: int = 300, n_items: int = 150, rank: int = 4, per_user: int = 24, test_per_user: int = 6, seed: int = 0
) -> PlantedData:
    """Users pick items with probability ~ popularity * exp(taste . item) (Gumbel top-k).

    Taste is strong relative to popularity, so a factor model must beat the popularity ranking;
    the last ``test_per_user`` picks of each user (in random order) are held out.
    """
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, rank))
    items = rng.normal(size=(n_items, rank))
    log_popularity = -0.5 * np.log(rng.permutation(n_items) + 1.0)
    keys = 2.0 * users @ items.T / np.sqrt(rank) + log_popularity + rng.gumbel(size=(n_users, n_items))
    picks = np.argsort(-keys, axis=1)[:, :per_user]
    picks = rng.permuted(picks, axis=1)  # held-out picks are random, not the strongest ones
    rows = np.repeat(np.arange(n_users), per_user).reshape(n_users, per_user)
    n_train = per_user - test_per_user

    def matrix(cols: np.ndarray, row_ids: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix(
            (np.ones(cols.size, dtype=np.float32), (row_ids.ravel(), cols.ravel())), shape=(n_users, n_items)
        )

    ranks = np.tile(np.arange(1, n_train + 1, dtype=np.float32), (n_users, 1))
    order = sp.csr_matrix((ranks.ravel(), (rows[:, :n_train].ravel(), picks[:, :n_train].ravel())), shape=(n_users, n_items))
    return PlantedData(
        train=matrix(picks[:, :n_train], rows[:, :n_train]),
        test=matrix(picks[:, n_train:], rows[:, n_train:]),
        item_features=sp.csr_matrix(np.hstack([np.maximum(items, 0), np.maximum(-items, 0)]), dtype=np.float32),
        order=order,
    )


def planted_fit_inputs(model_class: type, planted: PlantedData) -> dict:
    """The keyword inputs a family's fit takes besides ``train``: content features, time order."""
    inputs = {}
    if model_class.requires_item_features:
        inputs["item_features"] = planted.item_features
    if getattr(model_class, "uses_interaction_order", False):
        inputs["interaction_order"] = planted.order
    return inputs


@pytest.fixture(scope="session")
def planted() -> PlantedData:
    return planted_split()


@pytest.fixture(scope="session")
def fit_inputs():
    """``fit_inputs(model_class, planted)``: the extra fit keywords a family needs on planted data."""
    return planted_fit_inputs


@pytest.fixture(scope="session")
def movielens_train_test(movielens_dir) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """ml-latest-small as (train, test) rating matrices: per-user stratified 75/25 split, seed 42.

    The protocol of ``test_model_movielens.py`` (Microsoft Recommenders' ``python_stratified_split``);
    skips when the data folder is absent.
    """
    import pandas as pd

    from pipelines.features.splits import stratified_split

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


@pytest.fixture(scope="session")
def movielens_metrics(movielens_train_test):
    """``metrics(model)``: top-10 metrics of a model fitted on the MovieLens train split, training items excluded."""
    from pipelines.evaluation.metrics import ranking_metrics

    train, test = movielens_train_test

    def metrics(model) -> dict[str, float]:
        recommended, _ = model.recommend(np.arange(train.shape[0]), k=10, exclude=train)
        return ranking_metrics(recommended, test, 10, train.shape[1])

    return metrics
