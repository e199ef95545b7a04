"""Content model specifics: cosine and ridge scores, the popularity prior, new items, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from pipelines.errors import ConfigError
from pipelines.models import create_model, load_model
from pipelines.models.content import ContentRecommender

# Items 0-2 are "comedy", 3-5 "drama"; item 6 has no metadata.
FEATURES = sp.csr_matrix(
    np.array([[1, 0, 1], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
)
TRAIN = sp.csr_matrix(
    np.array([[5, 0, 0, 0, 0, 0, 0], [4, 3, 0, 0, 0, 0, 0], [0, 0, 0, 5, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
)


def unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1)


def test_pure_content_scores_are_cosines():
    model = ContentRecommender(popularity_exponent=0).fit(TRAIN, item_features=FEATURES)
    items = unit(FEATURES.toarray())
    profile = unit(items[[0, 1]].sum(axis=0, keepdims=True))
    np.testing.assert_allclose(model.score([1])[0], (profile @ items.T)[0], rtol=1e-6)
    top, _ = model.recommend([0, 2], k=2, exclude=TRAIN)
    assert set(top[0]) == {1, 2} and set(top[1]) == {4, 5}


def test_popularity_prior_and_user_without_items():
    model = ContentRecommender(popularity_exponent=1.0, cold_item_quantile=0.0).fit(TRAIN, item_features=FEATURES)
    cosine = ContentRecommender(popularity_exponent=0).fit(TRAIN, item_features=FEATURES).score([0])[0]
    # Items 0, 1, 3 have users (2, 1, 1); the others get the least popular interacted item's prior.
    np.testing.assert_allclose(model.item_prior_, [3, 2, 2, 2, 2, 2, 2])
    np.testing.assert_allclose(model.score([0])[0], cosine * model.item_prior_, rtol=1e-6)
    np.testing.assert_array_equal(model.score([3])[0], model.item_popularity_)  # no items: popular ones


def test_values_weighting_moves_the_profile():
    weighted = ContentRecommender(popularity_exponent=0, profile_weighting="values").fit(TRAIN, item_features=FEATURES)
    binary = ContentRecommender(popularity_exponent=0).fit(TRAIN, item_features=FEATURES)
    # User 1 rated item 0 (which also has feature 2) higher than item 1: feature 2 weighs more.
    assert weighted.score([1])[0, 4] > binary.score([1])[0, 4]


def test_ridge_scores_match_the_closed_form(tmp_path):
    model = ContentRecommender(user_profile="ridge", popularity_exponent=0, ridge_lambda=0.5, min_feature_items=1)
    model.fit(TRAIN, item_features=FEATURES)
    items = unit(FEATURES.toarray().astype(np.float64))
    targets = (TRAIN.toarray() > 0).astype(np.float64)
    weights = np.linalg.solve(items.T @ items + 0.5 * np.eye(3), items.T @ targets[1])
    expected = items @ weights
    got = model.score([1])[0]
    np.testing.assert_allclose(got / np.linalg.norm(got), expected / np.linalg.norm(expected), rtol=1e-5)
    loaded = load_model(model.save(tmp_path / "ridge"))  # the factor is rebuilt after loading
    np.testing.assert_allclose(loaded.score([0, 1, 2]), model.score([0, 1, 2]), rtol=1e-6)


def test_ridge_drops_features_of_a_single_item():
    model = ContentRecommender(user_profile="ridge").fit(TRAIN, item_features=FEATURES)
    np.testing.assert_array_equal(model.ridge_features_, [0, 1, 2])  # each feature is on 2+ items
    rare = sp.hstack([FEATURES, sp.csr_matrix(np.eye(7, 1, dtype=np.float32))]).tocsr()
    model = ContentRecommender(user_profile="ridge").fit(TRAIN, item_features=rare)
    np.testing.assert_array_equal(model.ridge_features_, [0, 1, 2])


def test_new_items_get_a_profile_and_can_be_recommended(tmp_path):
    model = ContentRecommender(popularity_exponent=1.0).fit(TRAIN, item_features=FEATURES)
    added = model.add_items(sp.csr_matrix(np.array([[0, 2, 0]], dtype=np.float32)))  # a drama
    np.testing.assert_array_equal(added, [7])
    assert model.n_items == 8 and model.item_popularity_[7] == 0
    top, _ = model.recommend([2], k=3, exclude=sp.hstack([TRAIN, sp.csr_matrix((4, 1))]).tocsr())
    assert 7 in top[0]
    loaded = load_model(model.save(tmp_path / "content"))
    np.testing.assert_allclose(loaded.score([0, 2]), model.score([0, 2]))
    with pytest.raises(ValueError, match="must have 3 columns"):
        model.add_items(sp.csr_matrix(np.ones((1, 4), dtype=np.float32)))


def test_fold_in_matches_a_known_user():
    model = ContentRecommender().fit(TRAIN, item_features=FEATURES)
    np.testing.assert_allclose(model.score_new_users(TRAIN[[1, 2]]), model.score([1, 2]), rtol=1e-6)


def test_metadata_is_required():
    with pytest.raises(ConfigError, match=r'model "content" needs item metadata \(genres, titles or tags\); the source has none'):
        ContentRecommender().fit(TRAIN)
    with pytest.raises(ConfigError, match="needs item metadata"):
        ContentRecommender().fit(TRAIN, item_features=sp.csr_matrix((7, 0), dtype=np.float32))
    with pytest.raises(ValueError, match="item_features has 3 rows but train has 7 items"):
        ContentRecommender().fit(TRAIN, item_features=FEATURES[:3])
    with pytest.raises(TypeError, match="item_features must be a SciPy sparse matrix"):
        ContentRecommender().fit(TRAIN, item_features=FEATURES.toarray())
    with pytest.raises(ValidationError, match="popularity_exponent"):
        ContentRecommender(popularity_exponent=-1)
    with pytest.raises(ConfigError, match="user_profile"):
        create_model("content", {"user_profile": "median"})
