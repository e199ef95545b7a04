"""Popularity specifics: what it counts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.models.popularity import PopularityRecommender

RATINGS = sp.csr_matrix(np.array([[5.0, 0, 1], [4.0, 0, 1], [0, 0, 1], [0, 3.0, 0]], dtype=np.float32))


def test_counts_users_per_item_by_default():
    model = PopularityRecommender().fit(RATINGS)
    np.testing.assert_array_equal(model.item_scores_, [2, 1, 3])
    np.testing.assert_array_equal(model.item_popularity_, [2, 1, 3])
    items, _ = model.recommend([0, 3], k=3)
    np.testing.assert_array_equal(items, [[2, 0, 1], [2, 0, 1]])


def test_weights_sum_the_stored_values_but_the_fallback_still_counts_users():
    model = PopularityRecommender(score_by="weights").fit(RATINGS)
    np.testing.assert_array_equal(model.item_scores_, [9, 3, 3])
    np.testing.assert_array_equal(model.score([1])[0], [9, 3, 3])
    np.testing.assert_array_equal(model.score([-1])[0], [2, 1, 3])  # unknown user: users per item


def test_ignores_item_features_and_callback():
    seen = []
    model = PopularityRecommender().fit(RATINGS, item_features=sp.eye(3, format="csr"), callback=seen.append)
    assert seen == [] and model.training_loss_ == []


def test_rejects_bad_score_by():
    with pytest.raises(ValueError, match="score_by"):
        PopularityRecommender(score_by="clicks")


def test_rejects_non_finite_values():
    bad = RATINGS.copy()
    bad.data[0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        PopularityRecommender().fit(bad)
