"""Tiny planted data and a toy model that reports validation nDCG per epoch, for the tuning tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from pipelines.features.store import FeatureSet
from pipelines.models.base import IterationCallback, ModelConfig, Recommender, item_popularity

TOY_FAMILY = "toy_epochs"
TOY_TARGET = "tuning_fixtures:EpochBlendRecommender"


def planted_features(
    n_users: int = 200, n_items: int = 100, rank: int = 4, per_user: int = 20, test_per_user: int = 5, seed: int = 0
) -> FeatureSet:
    """Users pick items by popularity * exp(taste . item) (Gumbel top-k); the last picks are test."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, rank))
    items = rng.normal(size=(n_items, rank))
    log_popularity = -0.5 * np.log(rng.permutation(n_items) + 1.0)
    keys = 2.0 * users @ items.T / np.sqrt(rank) + log_popularity + rng.gumbel(size=(n_users, n_items))
    picks = rng.permuted(np.argsort(-keys, axis=1)[:, :per_user], axis=1)
    ratings = rng.integers(1, 6, size=picks.shape).astype(np.float32)
    rows = np.repeat(np.arange(n_users)[:, None], per_user, axis=1)
    n_train = per_user - test_per_user

    def matrix(cols: slice) -> sp.csr_matrix:
        return sp.csr_matrix(
            (ratings[:, cols].ravel(), (rows[:, cols].ravel(), picks[:, cols].ravel())), shape=(n_users, n_items)
        )

    return FeatureSet(
        train=matrix(slice(0, n_train)),
        test=matrix(slice(n_train, per_user)),
        validation=None,
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        item_features=None,
    )


def write_feature_set(features: FeatureSet, folder: Path) -> Path:
    """Write ``features`` in the layout :func:`pipelines.features.store.load_feature_set` reads."""
    from pipelines.features import store

    folder.mkdir(parents=True)
    store.write_index(
        folder / store.USER_INDEX_FILE,
        pd.DataFrame({"user_id": features.user_ids, "user_idx": np.arange(features.n_users, dtype=np.int32)}),
        "user_id",
        "user_idx",
    )
    store.write_index(
        folder / store.ITEM_INDEX_FILE,
        pd.DataFrame({"item_id": features.item_ids, "item_idx": np.arange(features.n_items, dtype=np.int32)}),
        "item_id",
        "item_idx",
    )
    sp.save_npz(folder / store.TRAIN_NPZ, features.train)
    sp.save_npz(folder / store.TEST_NPZ, features.test)
    (folder / store.MANIFEST_JSON).write_text(json.dumps({"n_users": features.n_users, "n_items": features.n_items}))
    return folder


class EpochBlendConfig(ModelConfig):
    """Toy hyperparameters: how much noise to blend in, for how many epochs."""

    noise: float = Field(0.0, ge=0.0, le=1.0)
    """Weight of random scores against item co-occurrence: 1 is a random model."""
    epochs: int = Field(6, ge=1, le=50)
    """Epochs; a decaying extra noise makes every trial improve with them."""
    fail: bool = False
    """Raise in fit (to test failed trials)."""


class EpochBlendRecommender(Recommender):
    """Item co-occurrence blended with noise; reports validation nDCG@10 after every epoch."""

    name: ClassVar[str] = TOY_FAMILY
    config_class: ClassVar[type[ModelConfig]] = EpochBlendConfig
    config: EpochBlendConfig

    def fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: Any = None,
        validation: sp.csr_matrix | None = None,
        callback: IterationCallback | None = None,
    ) -> "EpochBlendRecommender":
        from pipelines.evaluation.evaluate import evaluate_model

        if self.config.fail:
            raise ValueError("fail=True: this toy model refuses to fit")
        binary = (sp.csr_matrix(train) > 0).astype(np.float32)
        signal = np.asarray((binary @ (binary.T @ binary)).todense(), dtype=np.float32)
        signal /= np.maximum(signal.max(axis=1, keepdims=True), 1e-9)
        rng = np.random.default_rng(self.config.seed)
        noise, decaying = rng.random(signal.shape, dtype=np.float32), rng.random(signal.shape, dtype=np.float32)
        self.n_users, self.n_items = train.shape
        self.item_popularity_ = item_popularity(binary)
        epochs = self.config.epochs
        for epoch in range(epochs):
            extra = (epochs - 1 - epoch) / epochs
            self.scores_ = (1 - self.config.noise) * signal + self.config.noise * noise + extra * decaying
            if callback is not None and validation is not None:
                ndcg = evaluate_model(self, train, validation, k=10)["ndcg@10"]
                callback(epoch, float("nan"), {"ndcg@10": ndcg})
        return self

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self.scores_[user_idx]

    def _state(self) -> dict[str, np.ndarray]:
        return {"scores_": self.scores_}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.scores_ = state["scores_"]
