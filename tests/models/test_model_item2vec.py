"""item2vec specifics: neighbours in time become similar, recency, similarity modes, fold-in."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from pipelines.models.item2vec import Item2VecRecommender


SMALL = {"window": 1, "epochs": 30, "vector_size": 16}


@pytest.fixture(scope="module")
def fitted(chain):
    train, _, order = chain
    return Item2VecRecommender(**SMALL).fit(train, interaction_order=order)


def test_items_next_to_each_other_in_time_are_similar(fitted):
    """On the ring, item i's context is i-2..i+2: those must be its most similar items."""
    vectors = fitted.item_vectors_ / np.linalg.norm(fitted.item_vectors_, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argsort(-similarity, axis=1)[:, :4]
    ring_distance = np.minimum(np.abs(nearest - np.arange(60)[:, None]), 60 - np.abs(nearest - np.arange(60)[:, None]))
    assert np.mean(ring_distance <= 3) > 0.8


def test_fold_in_recommends_the_seeds_neighbourhood(fitted):
    seen = sp.csr_matrix((np.ones(2, np.float32), ([0, 0], [30, 31])), shape=(1, 60))
    scores = fitted.score_new_users(seen)[0]
    scores[[30, 31]] = -np.inf
    top = np.argsort(-scores)[:4]
    assert set(top) <= set(range(26, 36)), top


def test_recency_window_uses_the_latest_items(chain):
    train, _, order = chain
    recent = Item2VecRecommender(**SMALL, recency_window=1).fit(train, interaction_order=order)
    user = 3
    row = train[user]
    latest = row.indices[np.argmax(order[user].toarray()[0, row.indices])]
    single = sp.csr_matrix((np.ones(1, np.float32), ([0], [latest])), shape=(1, 60))
    np.testing.assert_allclose(recent.score([user])[0], recent.score_new_users(single)[0], rtol=1e-5)
    # A fold-in with the order keeps only the latest seed too.
    seeds = sp.csr_matrix((np.ones(2, np.float32), ([0, 0], [5, latest])), shape=(1, 60))
    ranks = sp.csr_matrix((np.array([1.0, 2.0]), ([0, 0], [5, latest])), shape=(1, 60))
    np.testing.assert_allclose(recent.score_new_users(seeds, interaction_order=ranks)[0], recent.score([user])[0], rtol=1e-5)


def test_cosine_similarity_and_items_without_vectors(chain):
    train, _, order = chain
    cut = train.copy().tolil()
    cut[:, 7] = 0  # item 7 is never seen: it has no vector
    cut = cut.tocsr()
    cut.eliminate_zeros()
    cut_order = order.multiply(cut > 0).tocsr()
    model = Item2VecRecommender(**SMALL, similarity="cosine").fit(cut, interaction_order=cut_order)
    assert not model.has_vector_[7] and model.has_vector_.sum() == 59
    scores = model.score(np.arange(10))
    assert np.isfinite(scores).all()
    assert (scores[:, 7] < np.delete(scores, 7, axis=1).min(axis=1)).all()
    assert np.abs(np.delete(scores, 7, axis=1)).max() <= 1.0 + 1e-5  # cosines


def test_loss_reaches_the_callback_and_order_is_warned(chain):
    train, _, order = chain
    seen: list[tuple] = []
    model = Item2VecRecommender(**{**SMALL, "epochs": 3}).fit(train, interaction_order=order, callback=lambda *a: seen.append(a))
    assert [a[0] for a in seen] == [0, 1, 2] and [a[1] for a in seen] == model.training_loss_
    with pytest.warns(RuntimeWarning, match="no interaction_order"):
        Item2VecRecommender(**{**SMALL, "epochs": 1}).fit(train)


def test_min_count_above_every_item_is_an_error(chain):
    train, _, order = chain
    with pytest.raises(ValueError, match="no item has min_count=1000 interactions"):
        Item2VecRecommender(min_count=1000).fit(train, interaction_order=order)


def test_config_bounds():
    for params, field in (({"window": 0}, "window"), ({"negative": 0}, "negative"), ({"similarity": "dot"}, "similarity"),
                          ({"recency_window": -1}, "recency_window"), ({"vector_size": 1}, "vector_size")):
        with pytest.raises(ValidationError, match=field):
            Item2VecRecommender(**params)
