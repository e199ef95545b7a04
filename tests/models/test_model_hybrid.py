"""Hybrid specifics: the blend's two ends, cold items, base model choice and validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.errors import ConfigError
from pipelines.models import create_model, model_names
from pipelines.models.hybrid import HybridRecommender

BASE = {"factors": 8, "iterations": 10}


@pytest.fixture(scope="module")
def cold_planted(planted):
    """The planted split with item 0's interactions removed: a cold item with metadata."""
    train = planted.train.tolil()
    train[:, 0] = 0
    train = train.tocsr()
    train.eliminate_zeros()
    return train, planted.item_features


def ranking(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    return np.argsort(-scores[:, columns], axis=1, kind="stable")


def test_weight_one_is_the_base_model_and_zero_the_content_model(cold_planted):
    train, features = cold_planted
    users = np.arange(20)
    warm = np.flatnonzero(np.asarray((train > 0).sum(axis=0)).ravel() > 0)
    collab_only = HybridRecommender(base_params=BASE, collab_weight=1.0).fit(train, item_features=features)
    als = create_model("als", BASE).fit(train)
    np.testing.assert_array_equal(ranking(collab_only.score(users), warm), ranking(als.score(users), warm))
    content_only = HybridRecommender(base_params=BASE, collab_weight=0.0).fit(train, item_features=features)
    content = create_model("content", {"user_profile": "ridge", "popularity_exponent": 0.0})
    content.fit(train, item_features=features)
    all_items = np.arange(train.shape[1])
    np.testing.assert_array_equal(ranking(content_only.score(users), all_items), ranking(content.score(users), all_items))


def test_cold_items_score_by_content_with_a_neutral_collaborative_part(cold_planted):
    train, features = cold_planted
    model = HybridRecommender(base_params=BASE).fit(train, item_features=features)
    assert not model.warm_[0] and model.warm_[1:].all()
    scores = model.score(np.arange(50))
    content = model.content_.content_scores(model.content_.user_profiles_[np.arange(50)])
    z_content = (content[:, 0] - content.mean(axis=1)) / content.std(axis=1)
    np.testing.assert_allclose(scores[:, 0], (1 - model.config.collab_weight) * z_content, rtol=1e-4, atol=1e-5)


def test_new_items_and_new_users(cold_planted):
    train, features = cold_planted
    model = HybridRecommender(base_params=BASE).fit(train, item_features=features)
    added = model.add_items(features[[5]])  # a twin of item 5, without interactions
    assert added.tolist() == [train.shape[1]] and model.n_items == train.shape[1] + 1
    assert model.score([0]).shape == (1, train.shape[1] + 1)
    seen = sp.hstack([train[[3, 4]], sp.csr_matrix((2, 1))]).tocsr()
    folded = model.score_new_users(seen)
    assert folded.shape == (2, train.shape[1] + 1) and np.isfinite(folded).all()
    # A fold-in of a known user's items agrees with the known user's ranking on the best items.
    known = model.score([3])[0]
    assert set(np.argsort(-known)[:10]) & set(np.argsort(-folded[0])[:10])


@pytest.mark.skipif("ease" not in model_names(), reason="EASE is not registered")
def test_other_collaborative_bases(cold_planted):
    train, features = cold_planted
    model = HybridRecommender(base="ease").fit(train, item_features=features)
    assert model.base_.name == "ease" and np.isfinite(model.score([0, 1])).all()


def test_sequence_bases_get_the_order(planted):
    model = HybridRecommender(base="item2vec", base_params={"window": 20, "epochs": 5})
    model.fit(planted.train, item_features=planted.item_features, interaction_order=planted.order)
    assert model.base_.name == "item2vec"


def test_bad_configurations_are_config_errors():
    with pytest.raises(ConfigError, match="base must be a collaborative model"):
        create_model("hybrid", {"base": "content"})
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("hybrid", {"base": "nope"})
    with pytest.raises(ConfigError, match="factors"):
        create_model("hybrid", {"base_params": {"factors": -1}})
    with pytest.raises(ConfigError, match="user_profile"):
        create_model("hybrid", {"content_params": {"user_profile": "median"}})
    with pytest.raises(ConfigError, match="collab_weight"):
        create_model("hybrid", {"collab_weight": 1.5})
    with pytest.raises(ConfigError, match='model "hybrid" needs item metadata'):
        create_model("hybrid").fit(sp.eye(4, format="csr", dtype=np.float32))


@pytest.mark.slow
def test_movielens_defaults_beat_its_own_base_model(movielens):
    from movielens_data import metrics_at_10

    from pipelines.features.weighting import apply_weighting

    data = movielens
    binary = apply_weighting(data.train, "none")  # what the ALS defaults were tuned with
    hybrid = create_model("hybrid").fit(binary, item_features=data.item_features)
    ndcg = metrics_at_10(hybrid, data.train, data.test)["ndcg@10"]
    als = metrics_at_10(hybrid.base_, data.train, data.test)["ndcg@10"]
    assert ndcg > als + 0.005, f"hybrid nDCG@10 {ndcg:.4f}, its ALS alone {als:.4f}"
