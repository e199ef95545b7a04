"""evaluate_model and metrics_at_ks over a Recommender with fixed scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.evaluation.evaluate import evaluate_model, metrics_at_ks, users_with_test_items
from pipelines.models.base import Recommender


class FixedScores(Recommender):
    """Scores every (user, item) from a dense matrix given at construction."""

    name = "fixed_scores"

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.scores = np.asarray(scores, dtype=np.float32)
        self.calls = 0

    def fit(self, train, *, item_features=None, callback=None):  # noqa: ANN001
        self.n_users, self.n_items = train.shape
        return self

    def recommend(self, user_idx, k=10, exclude=None, batch_size=2048):  # noqa: ANN001
        self.calls += 1
        return super().recommend(user_idx, k, exclude=exclude, batch_size=batch_size)

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self.scores[user_idx]

    def _state(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.scores = state["scores"]


@pytest.fixture
def data() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    gen = np.random.default_rng(0)
    dense = (gen.random((40, 30)) < 0.3).astype(np.float32)
    split = gen.random(dense.shape) < 0.25
    train = sp.csr_matrix(dense * ~split)
    test = sp.csr_matrix(dense * split)
    return train, test


def test_oracle_is_perfect_despite_seen_items(data: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, test = data
    # Training items score highest of all: only the exclusion keeps the oracle perfect.
    scores = 2.0 * train.toarray() + test.toarray()
    model = FixedScores(scores).fit(train)
    m = evaluate_model(model, train, test, k=30, batch_size=7)
    assert m["n_users"] == len(users_with_test_items(test))
    assert m["ndcg@30"] == pytest.approx(1.0) and m["recall@30"] == pytest.approx(1.0)
    assert m["map@30"] == pytest.approx(1.0)


def test_anti_oracle_scores_zero(data: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, test = data
    model = FixedScores(-test.toarray()).fit(train)
    m = evaluate_model(model, train, test, k=3)
    assert m["precision@3"] == 0.0 and m["ndcg@3"] == 0.0 and m["hit_rate@3"] == 0.0


def test_metrics_at_ks_recommends_once_and_matches(data: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, test = data
    scores = np.random.default_rng(1).random(train.shape)  # no ties
    model = FixedScores(scores).fit(train)
    curve = metrics_at_ks(model, train, test, ks=(10, 1, 5))
    assert list(curve) == [1, 5, 10] and model.calls == 1
    for k, metrics in curve.items():
        assert metrics == evaluate_model(model, train, test, k=k)
    assert curve[1]["recall@1"] <= curve[5]["recall@5"] <= curve[10]["recall@10"]


def test_explicit_users_and_errors(data: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, test = data
    model = FixedScores(np.random.default_rng(2).random(train.shape)).fit(train)
    users = users_with_test_items(test)[:5]
    assert evaluate_model(model, train, test, k=5, users=users)["n_users"] == 5
    with pytest.raises(ValueError, match="outside"):
        evaluate_model(model, train, test, users=np.array([99]))
    with pytest.raises(ValueError, match="must align"):
        evaluate_model(model, train, test[:10])
    with pytest.raises(ValueError, match="ks must be"):
        metrics_at_ks(model, train, test, ks=())
