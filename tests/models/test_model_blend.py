"""The blend family: weights chosen on held-out data, members refit, never worse than its best member."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.errors import ConfigError
from pipelines.evaluation.metrics import ranking_metrics
from pipelines.features.weighting import WeightingConfig, apply_weighting
from pipelines.models import create_model, load_model
from pipelines.models.blend import _simplex_grid

MEMBER_PARAMS = {"als": {"factors": 8, "iterations": 10}}


def planted_ndcg(model, planted) -> float:
    recommended, _ = model.recommend(np.arange(planted.n_users), k=10, exclude=planted.train)
    return ranking_metrics(recommended, planted.test, 10, planted.n_items)["ndcg@10"]


@pytest.fixture(scope="module")
def blend(planted):
    return create_model("blend", {"member_params": MEMBER_PARAMS}).fit(planted.train)


def test_blend_at_least_equals_its_best_member(blend, planted):
    alone = {}
    for name in blend.member_names_:
        member = create_model(name, blend.config.member_config(name))
        weighted = apply_weighting(planted.train, WeightingConfig(**member.preferred_weighting))
        alone[name] = planted_ndcg(member.fit(weighted), planted)
    # Weights chosen on a validation carve can cost a hair on test (within 0.005 of the best member).
    assert planted_ndcg(blend, planted) >= max(alone.values()) - 0.005, alone


def test_weights_come_from_validation(blend):
    weights = blend.weights_
    assert blend.member_names_ == ("ease", "als", "itemknn")  # no item features: no hybrid
    assert weights.shape == (3,) and weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
    # The grid's corners are the members alone: on validation the blend is never worse.
    members = [blend.validation_ndcg_[name] for name in blend.member_names_]
    assert blend.validation_ndcg_["blend"] >= max(members)
    assert set(blend.members_) == {n for n, w in zip(blend.member_names_, weights) if w > 0}


def test_members_are_refit_on_all_of_train(blend, planted):
    for member in blend.members_.values():
        assert member.item_popularity_.sum() == pytest.approx(planted.train.nnz)


def test_a_given_validation_is_used_without_refit(planted):
    train, validation = planted.train, planted.test  # any held-out matrix of the same shape
    model = create_model("blend", {"members": ["ease", "itemknn"]})
    model.fit(train, validation=validation)
    # Choosing on the test rows themselves: the blend's validation score is its test nDCG (up to
    # the order of items with tied blended scores).
    assert model.validation_ndcg_["blend"] == pytest.approx(planted_ndcg(model, planted), abs=2e-3)


@pytest.mark.slow
def test_hybrid_joins_when_item_features_are_given(planted):
    model = create_model("blend", {"member_params": {"hybrid": {"base_params": {"factors": 8, "iterations": 10}}}})
    model.fit(planted.train, item_features=planted.item_features)
    assert model.member_names_ == ("ease", "als", "itemknn", "hybrid")
    assert len(model.weights_) == 4 and "hybrid" in model.validation_ndcg_


def test_a_listed_member_needing_item_features_is_refused_without_them(planted):
    with pytest.raises(ConfigError, match=r"members \['content'\] need item features"):
        create_model("blend", {"members": ["ease", "content"]}).fit(planted.train)


def test_save_load_keeps_weights_and_validation_scores(blend, tmp_path):
    loaded = load_model(blend.save(tmp_path / "blend"))
    np.testing.assert_array_equal(loaded.weights_, blend.weights_)
    assert loaded.validation_ndcg_ == pytest.approx(blend.validation_ndcg_)
    np.testing.assert_array_equal(loaded.score(np.arange(5)), blend.score(np.arange(5)))


def test_new_users_fold_in_through_members(blend, planted):
    users = np.arange(50)
    folded = blend.score_new_users(planted.train[users])
    known = blend.score(users)
    seen = planted.train[users].toarray() > 0
    folded[seen], known[seen] = -np.inf, -np.inf
    top = lambda scores: np.argsort(-scores, axis=1)[:, :10]  # noqa: E731
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top(folded), top(known))])
    assert overlap >= 0.8  # a known user's rows folded in as a new user rank nearly alike


def test_simplex_grid_covers_every_weight_vector():
    grid = _simplex_grid(10, 3)
    assert len(grid) == 66 and len({tuple(p) for p in grid}) == 66
    assert all(p.min() >= 0 and p.sum() == pytest.approx(1.0) for p in grid)
    assert [tuple(p) for p in grid[:3]] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"members": ["ease", "nope"]}, "unknown model 'nope'"),
        ({"members": ["ease", "blend"]}, "cannot contain a blend"),
        ({"members": ["ease", "ease"]}, "each family once"),
        ({"member_params": {"als": {"factors": 4}}, "members": ["ease"]}, r"\['als'\] are not members"),
        ({"member_params": {"ease": {"regularization": -1}}}, "ease.*regularization"),
        ({"members": ["ease", "als", "itemknn", "svd", "nmf"], "weight_steps": 40}, "grid points"),
    ],
)
def test_bad_config_is_refused_naming_the_problem(params, message):
    with pytest.raises(ConfigError, match=message):
        create_model("blend", params)


@pytest.mark.parametrize("n_items", [150, 15])  # 15: every item listed
def test_short_list_search_ranks_as_the_whole_catalogue(n_items):
    from pipelines.models.blend import _Candidates, _normalise, _top_k

    rng = np.random.default_rng(0)
    blocks = [_normalise(rng.normal(size=(40, n_items)) + rng.normal(size=n_items), "rank") for _ in range(3)]
    seen = sp.random(40, n_items, density=0.2, random_state=1, format="csr")
    candidates = _Candidates(blocks, seen, k=10, depth=20)
    for weights in ([1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.5, 0.5]):
        full = sum(w * b for w, b in zip(weights, blocks))
        full[seen.nonzero()] = -np.inf
        got, want = candidates.top_k(np.array(weights)), _top_k(full, 10)
        # The same scores best first (tied items may come in another order).
        np.testing.assert_allclose(np.take_along_axis(full, got, 1), np.take_along_axis(full, want, 1), rtol=1e-6)
