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
from pipelines.models import create_model, load_model
from pipelines.models.bpr import _MAX_STEP, BprRecommender, _row_steps, _TripleSampler

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


def test_row_steps_sum_clip_and_shrink_like_proximal_sgd():
    """Summed like np.add.at, each row's step clipped to norm _MAX_STEP, shrunk by 1 / (1 + decay * touches)."""
    rng = np.random.default_rng(1)
    rows, updates = rng.integers(0, 7, 50), rng.normal(scale=0.01, size=(50, 3)).astype(np.float32)
    rows[:5], updates[:5] = 9, 10.0  # row 9: a step far above the clip
    expected = np.zeros((10, 3), dtype=np.float32)
    np.add.at(expected, rows, updates)
    distinct, summed, shrink = _row_steps(rows, updates, decay=0.5)
    np.testing.assert_array_equal(distinct, np.unique(rows))
    np.testing.assert_allclose(summed[:-1], expected[distinct[:-1]], rtol=1e-5, atol=1e-6)
    assert np.linalg.norm(summed[-1]) == pytest.approx(_MAX_STEP)
    np.testing.assert_allclose(shrink[:, 0], 1 / (1 + 0.5 * np.bincount(rows)[distinct]))


def test_loss_falls_and_reaches_the_callback_every_epoch(planted):
    heard = []
    model = BprRecommender(**FAST).fit(planted.train, callback=lambda epoch, loss, metrics: heard.append((epoch, loss)))
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


def test_bad_validation_is_refused(planted):
    with pytest.raises(ValueError, match=r"validation has shape \(300, 149\) but train has \(300, 150\)"):
        BprRecommender(**FAST).fit(planted.train, validation=planted.test[:, :149])
    with pytest.raises(TypeError, match="validation must be a SciPy sparse matrix"):
        BprRecommender(**FAST).fit(planted.train, validation=planted.test.toarray())


@pytest.mark.parametrize(
    "params",
    [{"regularization": 10.0}, {"learning_rate": 10.0}, {"learning_rate": 10.0, "regularization": 10.0},
     {"learning_rate": 1e-9, "regularization": 10.0}, {"learning_rate": 10.0, "batch_size": 2**20}],
    ids=["old-form-regularization", "largest-step", "largest-both", "smallest-step", "one-batch"],
)
def test_never_diverges_on_an_accepted_value(planted, params):
    """The form used to pass regularization 10, which made plain SGD diverge at epoch 1."""
    model = BprRecommender(factors=8, epochs=5, **params).fit(planted.train)
    assert np.isfinite(model.training_loss_).all()
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()
    assert np.isfinite(model.score(np.arange(10))).all()


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
