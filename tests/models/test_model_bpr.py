"""BPR specifics: sampling, the vectorised update, per-epoch callbacks, early stopping, divergence.

MovieLens latest-small (stratified 75/25, seed 42, nDCG@10, training items excluded; the last
epoch's model). BPR reads only which entries are positive, so the weighting scheme does not matter. Per-epoch
validation nDCG@10 wanders by about +-0.01 between epochs at these step sizes.

| factors | learning_rate | regularization | epochs | batch_size | nDCG@10 |
| --- | --- | --- | --- | --- | --- |
| 64 | 0.05 | 0.01 | 50 | 1024 | 0.281 |
| 64 | 0.05 | 0.01 | 60 | 1024 | 0.297 |
| 64 | 0.05 | 0.001 | 60 | 1024 | 0.259 |
| 64 | 0.05 | 0.05 | 60 | 1024 | 0.253 |
| 64 | 0.1 | 0.01 | 120 | 1024 | 0.298 |
| 128 | 0.05 | 0.003 | 60 | 1024 | 0.289 |
| 128 | 0.1 | 0.01 | 120 | 1024 | 0.315 |
| 128 | 0.05 | 0.01 | 100 | 1024 | 0.316 |
| **128** | **0.05** | **0.01** | **100** | **4096** | **0.319** |
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from pipelines.errors import ConfigError
from pipelines.evaluation.metrics import ranking_metrics
from pipelines.features.weighting import apply_weighting
from pipelines.models import create_model, load_model
from pipelines.models.bpr import BprRecommender, _sum_rows, _TripleSampler

FAST = {"factors": 8, "epochs": 8, "learning_rate": 0.05}


def test_negatives_are_never_positives_when_there_is_room():
    """A quarter of user 0's items are positives: eleven draws leave one with odds 4**-11."""
    dense = np.zeros((3, 40), dtype=np.float32)
    dense[0, ::4] = 1.0
    dense[1, 7] = 1.0
    dense[2, :] = 1.0  # no room at all: the draws give up instead of looping forever
    sampler = _TripleSampler(sp.csr_matrix(dense))
    users = np.repeat([0, 1, 2], 500)
    negatives = sampler.negatives(users, np.random.default_rng(0))
    assert not (negatives[:500] % 4 == 0).any()
    assert not (negatives[500:1000] == 7).any() and len(set(negatives[500:1000])) == 39
    assert ((0 <= negatives[1000:]) & (negatives[1000:] < 40)).all()


def test_row_sums_match_add_at():
    rng = np.random.default_rng(1)
    rows, updates = rng.integers(0, 7, 50), rng.normal(size=(50, 3)).astype(np.float32)
    expected = np.zeros((7, 3), dtype=np.float32)
    np.add.at(expected, rows, updates)
    distinct, summed = _sum_rows(rows, updates)
    np.testing.assert_array_equal(distinct, np.unique(rows))
    np.testing.assert_allclose(summed, expected[distinct], rtol=1e-6, atol=1e-6)


def test_loss_falls_and_reaches_the_callback_every_epoch(planted):
    heard = []
    model = BprRecommender(**FAST).fit(planted.train, callback=lambda epoch, loss: heard.append((epoch, loss)))
    assert [epoch for epoch, _ in heard] == list(range(FAST["epochs"]))
    assert [loss for _, loss in heard] == model.training_loss_
    assert model.training_loss_[-1] < 0.9 * model.training_loss_[0]
    assert model.validation_ndcg_ == [] and model.best_epoch_ is None


def test_validation_stops_early_and_keeps_the_best_epoch(planted, tmp_path):
    heard = []
    model = BprRecommender(factors=8, epochs=200, learning_rate=0.05, patience=2).fit(
        planted.train, validation=planted.test, callback=lambda *args: heard.append(args)
    )
    assert len(heard) < 200, "patience 2 should stop long before 200 epochs"
    assert all(len(args) == 3 and set(args[2]) == {"ndcg@10"} for args in heard)
    history = [args[2]["ndcg@10"] for args in heard]
    assert history == model.validation_ndcg_
    assert model.best_epoch_ == int(np.argmax(history)) == len(history) - 3  # then two without gain
    recommended, _ = model.recommend(np.arange(planted.n_users), k=10, exclude=planted.train)
    kept = ranking_metrics(recommended, planted.test, 10, planted.n_items)["ndcg@10"]
    assert kept == pytest.approx(max(history))
    loaded = load_model(model.save(tmp_path / "bpr"))
    assert loaded.best_epoch_ == model.best_epoch_ and loaded.validation_ndcg_ == pytest.approx(history)


def test_only_positive_entries_count(planted):
    weighted = planted.train.copy()
    weighted.data = weighted.data * 3.5
    a = BprRecommender(**FAST).fit(planted.train)
    b = BprRecommender(**FAST).fit(weighted)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


def test_bad_validation_and_divergence_are_reported(planted):
    with pytest.raises(ValueError, match=r"validation must have the shape of train \(300, 150\), got \(300, 149\)"):
        BprRecommender(**FAST).fit(planted.train, validation=planted.test[:, :149])
    with pytest.raises(TypeError, match="validation must be a SciPy sparse matrix"):
        BprRecommender(**FAST).fit(planted.train, validation=planted.test.toarray())
    diverging = BprRecommender(factors=4, epochs=50, learning_rate=10.0, regularization=10.0)
    with pytest.raises(FloatingPointError, match=r"BPR diverged at epoch \d+ .*lower learning_rate"):
        diverging.fit(planted.train)
    assert not diverging.is_fitted


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"factors": 0}, "factors"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"regularization": -0.01}, "regularization"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"patience": 0}, "patience"),
        ({"negatives": 3}, "negatives"),
    ],
)
def test_bad_hyperparameters_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        BprRecommender(**params)
    with pytest.raises(ConfigError, match=rf"invalid parameters for model 'bpr': {field}"):
        create_model("bpr", params)


@pytest.mark.slow
def test_defaults_beat_popularity_on_movielens(movielens_train_test, movielens_metrics):
    train, _ = movielens_train_test
    model = create_model("bpr").fit(apply_weighting(train, "none"))
    ndcg = movielens_metrics(model)["ndcg@10"]
    assert ndcg >= 0.30, f"BPR nDCG@10 {ndcg:.4f} below 0.30 (measured 0.319; popularity 0.207)"
