"""GRU4Rec specifics: next-item prediction on the temporal split, order handling, early stopping.

Chain data (the ``chain`` fixture): the next item follows from the last one,
and the temporal leave-last-one-out split holds out each user's latest.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from pipelines.compute.torch_device import cuda_available
from pipelines.evaluation.metrics import ranking_metrics
from pipelines.models import create_model
from pipelines.models.deep.sequence import SequenceRecommender


TINY = {"epochs": 10, "patience": 0, "hidden_size": 32, "embedding_dim": 32, "max_length": 20,
        "learning_rate": 0.01, "batch_size": 32, "loss": "sampled", "n_negatives": 20, "scoring": "last"}


@pytest.fixture(scope="module")
def fitted(chain):
    train, _, order = chain
    return SequenceRecommender(**TINY).fit(train, interaction_order=order)


def hit_rate(model, train, test) -> float:
    recommended, _ = model.recommend(np.arange(train.shape[0]), k=10, exclude=train)
    return ranking_metrics(recommended, test, 10, train.shape[1])["hit_rate@10"]


def test_predicts_the_next_item_on_the_temporal_split(chain, fitted):
    train, test, _ = chain
    popularity = create_model("popularity").fit(train)
    assert hit_rate(fitted, train, test) >= 0.9
    assert hit_rate(popularity, train, test) < 0.3


def test_fold_in_follows_the_order_of_the_seeds(fitted):
    """Two walks as seeds, 10-11-12 and 30-31-32: the next item continues the later one."""
    walks = np.array([10, 11, 12, 30, 31, 32])
    seen = sp.csr_matrix((np.ones(6, np.float32), (np.zeros(6, int), walks)), shape=(1, 60))

    def best(order: list[int]) -> int:
        ranks = sp.csr_matrix((np.arange(1.0, 7.0), (np.zeros(6, int), order)), shape=(1, 60))
        scores = fitted.score_new_users(seen, interaction_order=ranks)[0]
        scores[walks] = -np.inf
        return int(np.argmax(scores))

    assert best([10, 11, 12, 30, 31, 32]) in (33, 34)
    assert best([30, 31, 32, 10, 11, 12]) in (13, 14)
    empty = fitted.score_new_users(sp.csr_matrix((1, 60), dtype=np.float32))
    np.testing.assert_array_equal(empty[0], fitted.item_popularity_)


def test_mean_scoring_averages_the_next_item_distributions(fitted):
    import torch

    mean = SequenceRecommender(**{**TINY, "scoring": "mean"})
    for attribute in ("net_", "device_", "sequences_", "item_popularity_", "n_users", "n_items"):
        setattr(mean, attribute, getattr(fitted, attribute))
    history = fitted.sequences_[5]
    with torch.no_grad():
        logits = fitted.net_.logits(fitted.net_.hidden_states(torch.as_tensor(history[None, :] + 1)))[0]
        expected = torch.softmax(logits, dim=-1).mean(dim=0).numpy()
    np.testing.assert_allclose(mean.score([5])[0], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fitted.score([5])[0], logits[-1].numpy(), rtol=1e-5, atol=1e-6)


def test_early_stopping_reports_and_keeps_the_best_epoch(chain):
    train, test, order = chain
    seen: list[tuple] = []
    model = SequenceRecommender(**{**TINY, "epochs": 6, "patience": 1}).fit(
        train, interaction_order=order, validation=test, callback=lambda *args: seen.append(args)
    )
    assert all(len(args) == 3 and set(args[2]) == {"ndcg@10"} for args in seen)
    assert len(seen) == len(model.training_loss_) == len(model.validation_ndcg_)
    assert model.validation_ndcg_[model.best_epoch_] == max(model.validation_ndcg_)
    # Without validation data a share of users' latest items is held out instead.
    carved = SequenceRecommender(**{**TINY, "epochs": 2, "patience": 2, "validation_fraction": 0.5}).fit(
        train, interaction_order=order
    )
    assert len(carved.validation_ndcg_) == 2 and carved.best_epoch_ is not None


def test_full_softmax_learns_as_well(chain):
    train, test, order = chain
    model = SequenceRecommender(**{**TINY, "loss": "full"}).fit(train, interaction_order=order)
    assert hit_rate(model, train, test) >= 0.9


def test_order_is_checked_and_its_absence_warned(chain):
    train, _, order = chain
    with pytest.warns(RuntimeWarning, match="no interaction_order"):
        SequenceRecommender(**{**TINY, "epochs": 1}).fit(train)
    shifted = sp.csr_matrix(order.toarray()[:, ::-1])
    with pytest.raises(ValueError, match="interaction_order does not cover the same"):
        SequenceRecommender(**TINY).fit(train, interaction_order=shifted)
    with pytest.raises(ValueError, match="interaction_order has shape"):
        SequenceRecommender(**TINY).fit(train, interaction_order=order[:5])
    with pytest.raises(TypeError, match="validation must be a SciPy sparse matrix"):
        SequenceRecommender(**TINY).fit(train, interaction_order=order, validation=np.ones(3))


def test_config_bounds_and_device():
    for params, field in (({"hidden_size": 1}, "hidden_size"), ({"dropout": 1.0}, "dropout"),
                          ({"loss": "hinge"}, "loss"), ({"device": "tpu"}, "device"), ({"max_length": 1}, "max_length")):
        with pytest.raises(ValidationError, match=field):
            SequenceRecommender(**params)
    assert "device" not in SequenceRecommender().config.hyperparameters()


def test_gpu_request_without_cuda_falls_back_to_the_cpu(chain):
    ok, _ = cuda_available()
    if ok:
        pytest.skip("CUDA is present: no fallback to see")
    train, _, order = chain
    with pytest.warns(RuntimeWarning, match="falling back to the CPU"):
        model = SequenceRecommender(**{**TINY, "epochs": 1, "device": "gpu"}).fit(train, interaction_order=order)
    assert model.device_.type == "cpu"


@pytest.mark.gpu
def test_cuda_fit_learns_the_chain(chain):
    ok, reason = cuda_available()
    if not ok:
        pytest.skip(f"no usable CUDA device: {reason}")
    train, test, order = chain
    model = SequenceRecommender(**{**TINY, "device": "cuda"}).fit(train, interaction_order=order)
    assert model.device_.type == "cuda"
    assert hit_rate(model, train, test) >= 0.9


@pytest.mark.slow
def test_movielens_next_item_scoring_beats_popularity(movielens):
    """``last`` scoring on leave-last-one-out (next item), where it is meant to work."""
    from movielens_data import metrics_at_10

    data = movielens
    last = create_model("sequence", {"scoring": "last"}).fit(data.last_train, interaction_order=data.last_order)
    popularity = create_model("popularity").fit(data.last_train)
    seq_last = metrics_at_10(last, data.last_train, data.last_test)
    pop_last = metrics_at_10(popularity, data.last_train, data.last_test)
    assert seq_last["hit_rate@10"] >= 1.8 * pop_last["hit_rate@10"], (seq_last, pop_last)
