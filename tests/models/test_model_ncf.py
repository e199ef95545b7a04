"""NCF specifics and the shared deep training loop (early stopping, callback, checkpoints).

The contract suite (test_model_contract.py) covers fit/recommend/save/load; these tests run on
the same tiny planted data with a few epochs. The MovieLens acceptance test is marked slow.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

torch = pytest.importorskip("torch", reason="torch is not installed (the deep models need it)")

from pipelines.errors import ConfigError  # noqa: E402
from pipelines.evaluation.metrics import ranking_metrics  # noqa: E402
from pipelines.models import create_model, load_model  # noqa: E402
from pipelines.models.deep.ncf import NcfConfig, NcfRecommender  # noqa: E402
from pipelines.models.deep.training import load_checkpoint  # noqa: E402

FAST = {"epochs": 6, "embedding_dim": 16, "batch_size": 256, "num_threads": 1}


def ndcg(scores: np.ndarray, seen: sp.csr_matrix, relevant: sp.csr_matrix) -> float:
    scores = scores.copy()
    scores[seen.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return ranking_metrics(top, relevant, 10, scores.shape[1])["ndcg@10"]


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    """A fit that stops early (high learning rate, patience 2), with its callback calls and checkpoint."""
    folder = tmp_path_factory.mktemp("ncf-checkpoints")
    calls: list[tuple] = []
    model = NcfRecommender(**{**FAST, "epochs": 40}, patience=2, learning_rate=0.05, checkpoint_dir=str(folder))
    model.fit(planted.train, callback=lambda *args: calls.append(args))
    return model, calls, folder / "ncf-best.pt"


@pytest.fixture(scope="module")
def fitted(trained) -> NcfRecommender:
    return trained[0]


def test_callback_gets_loss_and_validation_ndcg_each_epoch(trained):
    model, calls, _ = trained
    assert [epoch for epoch, _, _ in calls] == list(range(len(model.training_loss_)))
    assert [loss for _, loss, _ in calls] == model.training_loss_
    assert [metrics["ndcg@10"] for _, _, metrics in calls] == model.validation_ndcg_
    assert min(model.training_loss_) < model.training_loss_[0]


def test_early_stopping_keeps_the_best_epoch_and_its_checkpoint(trained, planted):
    model, _, path = trained
    epochs_run = len(model.training_loss_)
    assert epochs_run < 40, "training should stop once validation nDCG stalls"
    assert model.best_epoch_ == int(np.argmax(model.validation_ndcg_)) == epochs_run - 3  # patience 2
    checkpoint = load_checkpoint(path)
    assert checkpoint["epoch"] == model.best_epoch_
    assert checkpoint["best_metric"] == pytest.approx(max(model.validation_ndcg_))
    assert checkpoint["config"] == model.config.model_dump(mode="json")
    assert checkpoint["model_args"] == {"n_users": planted.n_users, "n_items": planted.n_items}
    for name, array in model.module_state_.items():  # the final model is the checkpointed one
        np.testing.assert_array_equal(checkpoint["state_dict"][name].numpy(), array)


def test_given_validation_is_used_and_checked(planted):
    seen = []
    model = NcfRecommender(**FAST, patience=100).fit(
        planted.train, validation=planted.test, callback=lambda e, l, m: seen.append(m["ndcg@10"])
    )
    scores = model.score(np.arange(planted.n_users))
    assert seen[model.best_epoch_] == pytest.approx(ndcg(scores, planted.train, planted.test), abs=1e-6)
    with pytest.raises(ValueError, match=r"validation has shape \(3, 3\) but train has \(300, 150\)"):
        NcfRecommender(**FAST).fit(planted.train, validation=sp.eye(3, format="csr"))


def test_no_validation_runs_every_epoch_and_keeps_the_last(planted):
    calls = []
    model = NcfRecommender(**FAST, validation_fraction=0.0).fit(planted.train, callback=lambda *a: calls.append(a))
    assert len(calls) == FAST["epochs"] and all(metrics is None for _, _, metrics in calls)
    assert model.best_epoch_ == FAST["epochs"] - 1 and model.validation_ndcg_ == []


def test_history_fold_in_matches_known_users(fitted, planted):
    """With the default history input, a known user folded in from their row scores the same."""
    users = np.arange(25)
    np.testing.assert_allclose(fitted.score_new_users(planted.train[users]), fitted.score(users), rtol=1e-4, atol=1e-5)
    empty = fitted.score_new_users(sp.csr_matrix((2, planted.n_items), dtype=np.float32))
    np.testing.assert_array_equal(empty, np.tile(fitted.item_popularity_, (2, 1)))
    with pytest.raises(ValueError, match=r"seen must have one column per item of the model \(150\)"):
        fitted.score_new_users(sp.csr_matrix((1, 7)))


@pytest.mark.parametrize(
    "options",
    [
        {"user_input": "id", "loss": "bpr", "n_negatives": 4},  # ridge fold-in
        {"user_input": "history", "tower_layers": (16, 8), "loss": "softmax", "n_negatives": 32, "l2_regularization": 0.001},
        {"user_input": "id+history", "loss": "bce", "n_negatives": 4},
    ],
    ids=["id-bpr", "history-towers-sampled-softmax", "id+history-bce"],
)
def test_other_architectures_and_losses_learn_and_fold_in(planted, options):
    model = NcfRecommender(**{**FAST, "epochs": 10}, **options).fit(planted.train)
    assert min(model.training_loss_) < model.training_loss_[0]
    popularity = create_model("popularity").fit(planted.train)
    users = np.arange(planted.n_users)
    pop_ndcg = ndcg(popularity.score(users), planted.train, planted.test)
    assert ndcg(model.score(users), planted.train, planted.test) > pop_ndcg + 0.05
    folded = model.score_new_users(planted.train)  # every user treated as new, seen through their items
    if options["user_input"] == "history":  # the NumPy tower must agree with torch's
        np.testing.assert_allclose(folded, model.score(users), rtol=1e-4, atol=1e-5)
    elif options["user_input"] == "id":
        assert ndcg(folded, planted.train, planted.test) > pop_ndcg + 0.03


def test_seeds_decide_the_model_and_leave_global_state_alone(fitted, planted):
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    other = NcfRecommender(fitted.config, seed=7, checkpoint_dir=None).fit(planted.train)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    assert not np.array_equal(other.user_vectors_, fitted.user_vectors_)


def test_default_threads_do_not_follow_the_load(monkeypatch):
    """The thread count sets the order of float sums: it must not change with the machine's load."""
    from pipelines.errors import ConfigError
    from pipelines.models import threads

    monkeypatch.delenv("RECSYS_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    for load in (0.0, 2.2, 9.0):
        monkeypatch.setattr(threads.os, "getloadavg", lambda load=load: (load, load, load))
        assert threads.fit_threads() == 4
    monkeypatch.setenv("RECSYS_THREADS", "1")
    assert threads.fit_threads() == 1
    assert threads.fit_threads(3) == 3  # an explicit count is taken as given
    monkeypatch.setenv("RECSYS_THREADS", "zero")
    with pytest.raises(ConfigError, match="RECSYS_THREADS"):
        threads.fit_threads()
