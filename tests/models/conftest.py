"""Planted-factor interaction data for the model tests, generated with NumPy in a fixture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp


@dataclass(frozen=True)
class PlantedData:
    """A users x items split: ``train`` (binary confidences) and held-out ``test`` interactions."""

    train: sp.csr_matrix
    test: sp.csr_matrix

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

    return PlantedData(
        train=matrix(picks[:, :n_train], rows[:, :n_train]),
        test=matrix(picks[:, n_train:], rows[:, n_train:]),
    )


@pytest.fixture(scope="session")
def planted() -> PlantedData:
    return planted_split()
