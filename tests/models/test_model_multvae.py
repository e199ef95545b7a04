"""Mult-VAE specifics: KL annealing, NumPy inference against the network, fold-in, validation.

The contract suite (test_model_contract.py) covers fit/recommend/save/load and the shared
loop's early stopping is tested in test_model_ncf.py; these tests run on the tiny planted data.
The MovieLens acceptance test is marked slow.
"""

from __future__ import annotations


import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

torch = pytest.importorskip("torch", reason="torch is not installed (the deep models need it)")

from pipelines.errors import ConfigError  # noqa: E402
from pipelines.evaluation.metrics import ranking_metrics  # noqa: E402
from pipelines.models import create_model, load_model  # noqa: E402
from pipelines.models.deep.config import ANNEAL_SHARE  # noqa: E402
from pipelines.models.deep.multvae import MultVaeConfig, MultVaeRecommender  # noqa: E402
from pipelines.models.deep.training import load_checkpoint  # noqa: E402

FAST = {"epochs": 8, "encoder_dims": (32,), "latent_dim": 8, "batch_size": 32, "num_threads": 1}


def ndcg(scores: np.ndarray, seen: sp.csr_matrix, relevant: sp.csr_matrix) -> float:
    scores = scores.copy()
    scores[seen.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return ranking_metrics(top, relevant, 10, scores.shape[1])["ndcg@10"]


@pytest.fixture(scope="module")
def fitted(planted) -> MultVaeRecommender:
    return MultVaeRecommender(**FAST).fit(planted.train)


def test_kl_weight_anneals_linearly_to_its_cap():
    config = MultVaeConfig(beta_cap=0.2, anneal_steps=100)
    assert [config.beta(step) for step in (0, 50, 100, 1_000)] == pytest.approx([0.0, 0.1, 0.2, 0.2])
    assert MultVaeConfig(beta_cap=0.3, anneal_steps=0).beta(0) == 0.3
    # Default: the same share of the epochs whatever the data size (steps per epoch).
    for steps_per_epoch in (3, 300):
        default = MultVaeConfig(beta_cap=0.2, epochs=10)
        half_way = round(ANNEAL_SHARE * 10 * steps_per_epoch / 2)
        assert default.beta(half_way, steps_per_epoch) == pytest.approx(0.1, rel=0.02)


def test_decoder_mirrors_the_encoder_unless_given():
    assert MultVaeConfig(encoder_dims=(600, 300)).decoder_widths() == (300, 600)
    assert MultVaeConfig(encoder_dims=(600,), decoder_dims=(100, 200)).decoder_widths() == (100, 200)
    assert MultVaeConfig(encoder_dims=()).decoder_widths() == ()


def test_numpy_scores_match_the_torch_network(fitted, planted):
    """Serving scores with NumPy from the exported weights; they must equal the network's."""
    from pipelines.models.deep.multvae_module import MultVaeModule, sparse_rows

    module = MultVaeModule(fitted.config, planted.n_items)
    module.load_state_dict({name: torch.from_numpy(array) for name, array in fitted.module_state_.items()})
    module.eval()
    users = np.arange(40)
    with torch.no_grad():
        expected = module.score(sparse_rows(planted.train[users], torch.device("cpu"))).numpy()
    np.testing.assert_allclose(fitted.score(users), expected, rtol=1e-4, atol=1e-4)


def test_fold_in_is_the_known_user_computation(fitted, planted):
    users = np.arange(30)
    # Same code; only BLAS blocking differs (all users at fit time, 30 here).
    np.testing.assert_allclose(fitted.score_new_users(planted.train[users]), fitted.score(users), rtol=1e-5, atol=1e-6)
    empty = fitted.score_new_users(sp.csr_matrix((2, planted.n_items), dtype=np.float32))
    np.testing.assert_array_equal(empty, np.tile(fitted.item_popularity_, (2, 1)))
    with pytest.raises(ValueError, match=r"seen must have one column per item of the model \(150\)"):
        fitted.score_new_users(sp.csr_matrix((1, 5)))
    with pytest.raises(TypeError, match="seen must be a SciPy sparse matrix"):
        fitted.score_new_users(np.ones((1, planted.n_items)))


def test_latents_encode_held_out_training_items_too(planted):
    """The hold-out only decides the epoch: the final user latents see the whole training row."""
    model = MultVaeRecommender(**FAST, validation_fraction=0.3).fit(planted.train)
    np.testing.assert_allclose(model.score(np.arange(10)), model.score_new_users(planted.train[:10]), rtol=1e-5, atol=1e-6)


def test_callback_validation_and_checkpoint(planted, tmp_path):
    calls = []
    model = MultVaeRecommender(**FAST, patience=100, checkpoint_dir=str(tmp_path)).fit(
        planted.train, validation=planted.test, callback=lambda *args: calls.append(args)
    )
    assert [epoch for epoch, _, _ in calls] == list(range(FAST["epochs"]))
    assert [m["ndcg@10"] for _, _, m in calls] == model.validation_ndcg_
    best = model.best_epoch_
    assert model.validation_ndcg_[best] == pytest.approx(
        ndcg(model.score(np.arange(planted.n_users)), planted.train, planted.test), abs=1e-6
    )
    checkpoint = load_checkpoint(tmp_path / "multvae-best.pt")
    assert (checkpoint["epoch"], checkpoint["model_args"]) == (best, {"n_items": planted.n_items})
    assert checkpoint["config"]["encoder_dims"] == [32]
    np.testing.assert_array_equal(checkpoint["state_dict"]["decoder.0.weight"].numpy(), model.module_state_["decoder.0.weight"])


def test_deeper_network_trains_and_round_trips(planted, tmp_path):
    model = MultVaeRecommender(**{**FAST, "encoder_dims": (48, 24)}, decoder_dims=(16,)).fit(planted.train)
    loaded = load_model(model.save(tmp_path / "vae"))
    np.testing.assert_array_equal(loaded.score(np.arange(5)), model.score(np.arange(5)))
    np.testing.assert_array_equal(loaded.score_new_users(planted.train[:5]), model.score_new_users(planted.train[:5]))
    assert loaded.best_epoch_ == model.best_epoch_


def test_ratings_are_binarised(fitted, planted):
    """Positive values are interactions whatever their size: weighting does not change the model."""
    weighted = planted.train.copy()
    weighted.data = weighted.data * np.random.default_rng(0).uniform(1, 5, size=weighted.nnz).astype(np.float32)
    again = MultVaeRecommender(**FAST).fit(weighted)
    np.testing.assert_array_equal(again.score(np.arange(10)), fitted.score(np.arange(10)))


def test_rejects_non_finite_values_with_their_position(planted):
    bad = planted.train.copy().tolil()
    bad[4, 7] = np.nan
    with pytest.raises(ValueError, match=r"non-finite value at \(user 4, item 7\)"):
        MultVaeRecommender(**FAST).fit(bad.tocsr())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"encoder_dims": (600, -1)}, "encoder_dims"),
        ({"decoder_dims": (0,)}, "decoder_dims"),
        ({"dropout": -0.1}, "dropout"),
        ({"beta_cap": -1.0}, "beta_cap"),
        ({"anneal_steps": -5}, "anneal_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"weight_decay": float("inf")}, "weight_decay"),
        ({"validation_users": 0}, "validation_users"),
        ({"device": "cuda:x"}, "device"),
        ({"factors": 64}, "factors"),
    ],
)
def test_bad_hyperparameters_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        MultVaeRecommender(**params)
    with pytest.raises(ConfigError, match=rf"invalid parameters for model 'multvae': {field}"):
        create_model("multvae", params)


@pytest.mark.gpu
def test_fits_on_cuda_like_on_the_cpu(planted):
    from pipelines.compute.torch_device import cuda_available

    ok, reason = cuda_available()
    if not ok:
        pytest.skip(f"no usable CUDA device: {reason}")
    users = np.arange(planted.n_users)
    cpu = MultVaeRecommender(**FAST, device="cpu").fit(planted.train)
    gpu = MultVaeRecommender(**FAST, device="cuda").fit(planted.train)
    assert isinstance(gpu.user_latent_, np.ndarray)
    assert ndcg(gpu.score(users), planted.train, planted.test) == pytest.approx(
        ndcg(cpu.score(users), planted.train, planted.test), abs=0.05
    )
