"""Confidence weighting values, BM25 parity with implicit, input untouched."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.errors import ConfigError, DataError
from pipelines.features.weighting import WeightingConfig, apply_weighting


@pytest.fixture
def ratings() -> sp.csr_matrix:
    return sp.csr_matrix(np.array([[4.0, 0, 1.0, 0], [0, 2.0, 0, 0], [5.0, 3.0, 0, 0.5]], dtype=np.float32))


def test_none_linear_log_values(ratings: sp.csr_matrix) -> None:
    before = ratings.copy()
    assert apply_weighting(ratings, "none").toarray().tolist() == (ratings > 0).astype(float).toarray().tolist()
    linear = apply_weighting(ratings, "linear", alpha=2.0)
    assert linear[0, 0] == pytest.approx(9.0) and linear[2, 3] == pytest.approx(2.0) and linear[0, 1] == 0
    log = apply_weighting(ratings, "log", alpha=3.0, epsilon=0.5)
    assert log[1, 1] == pytest.approx(1 + 3.0 * np.log1p(4.0))
    assert log.nnz == ratings.nnz and log.dtype == np.float32 and sp.isspmatrix_csr(log)
    assert (ratings != before).nnz == 0  # the input is never modified


def bm25_by_hand(x: np.ndarray, k1: float, b: float) -> np.ndarray:
    n_users = x.shape[0]
    idf = np.log(n_users) - np.log1p((x > 0).sum(axis=0))
    length = x.sum(axis=1)
    norm = (1 - b) + b * length / length.mean()
    weighted = x * (k1 + 1) / (k1 * norm[:, None] + x) * idf[None, :]
    return np.where(x > 0, weighted, 0.0)


def test_bm25_values(ratings: sp.csr_matrix) -> None:
    expected = bm25_by_hand(ratings.toarray().astype(np.float64), 100.0, 0.8)
    assert np.allclose(apply_weighting(ratings, "bm25").toarray(), expected, rtol=1e-5)
    scaled = apply_weighting(ratings, WeightingConfig(scheme="bm25", alpha=2.0, k1=1.2, b=0.75))
    assert np.allclose(scaled.toarray(), 2.0 * bm25_by_hand(ratings.toarray().astype(np.float64), 1.2, 0.75), rtol=1e-5)


def test_bm25_matches_implicit() -> None:
    nn = pytest.importorskip("implicit.nearest_neighbours")
    gen = np.random.default_rng(0)
    dense = np.where(gen.random((40, 30)) < 0.2, gen.integers(1, 6, (40, 30)), 0).astype(np.float32)
    matrix = sp.csr_matrix(dense)
    theirs = sp.csr_matrix(nn.bm25_weight(matrix, K1=100, B=0.8)).toarray()
    assert np.allclose(apply_weighting(matrix, "bm25").toarray(), theirs, rtol=1e-5, atol=1e-6)


def test_bad_parameters_are_named(ratings: sp.csr_matrix) -> None:
    with pytest.raises(ConfigError, match=r"alpha must be in \(0, inf\)"):
        apply_weighting(ratings, "linear", alpha=0)
    with pytest.raises(ConfigError, match=r"b must be in \[0, 1\]"):
        apply_weighting(ratings, "bm25", b=2)
    with pytest.raises(ConfigError, match="scheme"):
        apply_weighting(ratings, "tfidf")
    with pytest.raises(ConfigError, match="gamma"):
        apply_weighting(ratings, "log", gamma=1)
    with pytest.raises(DataError, match="non-negative"):
        apply_weighting(sp.csr_matrix(np.array([[-1.0]])), "log")
