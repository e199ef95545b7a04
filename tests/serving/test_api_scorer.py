"""The API's hot path (:class:`ServingModel`) answers exactly what the bundle answers, for each kind of family.

It scores one known user from the family's score block, excludes the training items, folds
in seed items for a new user, falls back to popularity, and explains each item by a history
item when the family has an item relation (none for popularity).
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.serving.scorer import SOURCE_MODEL, SOURCE_POPULARITY, SOURCE_SEEDS, ServingModel
from tests.serving.test_api_support import trained_bundle

FAMILIES = ["als", "svd", "itemknn", "ease", "popularity"]


@pytest.fixture(scope="module", params=FAMILIES)
def served(request):
    bundle = trained_bundle(request.param)
    return bundle, ServingModel(bundle, "m", "1")


def test_known_user_matches_the_bundle_and_is_explained_by_its_history(served):
    bundle, model = served
    for user in ("u0", "u17", "u123"):
        rec = model.recommend(user, 7)
        expected = bundle.recommend([user], k=7)
        assert rec.source == SOURCE_MODEL
        assert [model.item_ids[i] for i in rec.items] == expected["item_id"].tolist()
        np.testing.assert_allclose(rec.scores, expected["score"], rtol=1e-5)
        history = set(bundle.seen[int(user[1:])].indices.tolist())
        if model.relation is None:
            assert (rec.because == -1).all()
        else:
            assert set(rec.because.tolist()) <= history and (rec.because >= 0).any()


def test_new_users_fold_in_seeds_or_get_popularity(served):
    bundle, model = served
    rec = model.recommend("new", 5, ["i4", "i9", "unknown-item"])
    expected = bundle.recommend_for_seed_items(["i4", "i9"], k=5)
    assert rec.source == SOURCE_SEEDS
    assert [model.item_ids[i] for i in rec.items] == expected["item_id"].tolist()
    assert not {"i4", "i9"} & {model.item_ids[i] for i in rec.items}
    popular = model.recommend("new", 5, ["unknown-item"])
    counts = np.asarray((bundle.seen > 0).sum(axis=0)).ravel()
    assert popular.source == SOURCE_POPULARITY
    assert sorted(counts[popular.items].tolist(), reverse=True) == sorted(counts, reverse=True)[:5]


def test_payload_is_json_ready(served):
    _, model = served
    items = model.items_payload(model.recommend("u3", 3))
    assert [item["rank"] for item in items] == [1, 2, 3]
    assert all(isinstance(item["score"], float) and isinstance(item["item_id"], str) for item in items)
