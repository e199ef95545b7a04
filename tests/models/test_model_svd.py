"""PureSVD specifics: agreement with an exact SVD, fold-in, the rank guard, the loss, GPU parity.

MovieLens latest-small (stratified 75/25, seed 42, nDCG@10 / MAP@10, training items excluded),
6 power iterations. Quality moves by about +-0.005 between neighbouring ``factors`` (the subspace
changes); 40 is the default. ``linear`` weighting (1 + rating) is slightly better than binary.

| factors | weighting | nDCG@10 | MAP@10 |
| --- | --- | --- | --- |
| 8 | none | 0.306 | 0.069 |
| 24 | none | 0.339 | 0.081 |
| 32 | none | 0.340 | 0.083 |
| **40** | **none** | **0.352** | **0.091** |
| 48 | none | 0.345 | 0.092 |
| 64 | none | 0.337 | 0.092 |
| 40 | linear (1 + rating) | 0.357 | 0.092 |
| 32 | log | 0.350 | 0.088 |
| 32 | bm25 (k1 100, b 0.8) | 0.323 | 0.080 |
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sparse_linalg
from pydantic import ValidationError

from pipelines.compute.backend import ArrayBackend, gpu_available
from pipelines.errors import ConfigError
from pipelines.models import create_model, load_model
from pipelines.models import svd as svd_module
from pipelines.models.svd import SvdRecommender


@pytest.fixture(scope="module")
def low_rank() -> sp.csr_matrix:
    """Sparse near-rank-6 data: six user groups each rating their own item group (block diagonal),
    blocks of clearly different strength, a little noise on the stored entries."""
    rng = np.random.default_rng(4)
    user_group, item_group = np.arange(150) % 6, np.arange(90) % 6
    strength = np.array([8.0, 5.0, 3.0, 2.0, 1.0, 0.5])
    dense = np.outer(rng.random(150) + 0.5, rng.random(90) + 0.5) * strength[user_group][:, None]
    dense *= user_group[:, None] == item_group[None, :]
    dense[dense > 0] += 0.05 * rng.random(int((dense > 0).sum()))
    return sp.csr_matrix(dense.astype(np.float32))


def test_matches_an_exact_truncated_svd(low_rank):
    model = SvdRecommender(factors=4).fit(low_rank)
    _, exact_values, right = sparse_linalg.svds(low_rank.astype(np.float64), k=4)
    np.testing.assert_allclose(model.singular_values_, np.sort(exact_values)[::-1], rtol=1e-4)
    projector = right.T @ right  # V V^T does not depend on the singular vectors' signs
    np.testing.assert_allclose(model.item_factors_ @ model.item_factors_.T, projector, atol=1e-4)
    np.testing.assert_allclose(model.item_factors_.T @ model.item_factors_, np.eye(4), atol=1e-5)
    np.testing.assert_allclose(model.score([3]), low_rank[3] @ projector, atol=1e-3)


def test_fold_in_scores_new_users_like_known_ones(low_rank, tmp_path):
    model = SvdRecommender(factors=5).fit(low_rank)
    np.testing.assert_allclose(model.score_new_users(low_rank[:6]), model.score(np.arange(6)), rtol=1e-4, atol=1e-5)
    loaded = load_model(model.save(tmp_path / "svd"))
    np.testing.assert_array_equal(loaded.singular_values_, model.singular_values_)
    np.testing.assert_array_equal(loaded.score_new_users(low_rank[:6]), model.score_new_users(low_rank[:6]))


def test_callback_hears_the_unexplained_energy_once(low_rank):
    heard = []
    model = SvdRecommender(factors=5).fit(low_rank, callback=lambda iteration, loss: heard.append((iteration, loss)))
    total = float(np.square(low_rank.data, dtype=np.float64).sum())
    expected = 1 - float(np.square(model.singular_values_, dtype=np.float64).sum()) / total
    assert heard == [(0, pytest.approx(expected))] and model.training_loss_ == [heard[0][1]]
    assert 0 < expected < 0.05  # the four strongest blocks hold nearly all the energy


def test_factors_must_stay_below_the_matrix_rank_bound():
    with pytest.raises(ValueError, match=r"factors must be below min\(n_users, n_items\) = 5 .* got 5"):
        SvdRecommender(factors=5).fit(sp.random(5, 9, density=0.5, format="csr", random_state=0))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"factors": 0}, "factors"),
        ({"factors": 5000}, "factors"),
        ({"power_iterations": -1}, "power_iterations"),
        ({"oversamples": -1}, "oversamples"),
        ({"device": "tpu"}, "device"),
        ({"n_components": 8}, "n_components"),
    ],
)
def test_bad_hyperparameters_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        SvdRecommender(**params)
    with pytest.raises(ConfigError, match=rf"invalid parameters for model 'svd': {field}"):
        create_model("svd", params)


class _NumpyPosingAsGpu(ArrayBackend):
    @property
    def is_gpu(self) -> bool:
        return True

    def to_host(self, array):
        return np.asarray(array)


def test_gpu_code_path_runs_and_agrees_on_numpy(low_rank, monkeypatch):
    cpu = SvdRecommender(factors=4).fit(low_rank)
    monkeypatch.setattr(svd_module, "get_backend", lambda device: _NumpyPosingAsGpu("cupy", np, sp))
    posing = SvdRecommender(factors=4, device="gpu").fit(low_rank)
    np.testing.assert_allclose(posing.score(np.arange(10)), cpu.score(np.arange(10)), atol=1e-5)


@pytest.mark.gpu
def test_gpu_fit_matches_cpu(low_rank):
    ok, reason = gpu_available()
    if not ok:
        pytest.skip(f"no usable GPU: {reason}")
    cpu = SvdRecommender(factors=4, device="cpu").fit(low_rank)
    gpu = SvdRecommender(factors=4, device="gpu").fit(low_rank)
    assert isinstance(gpu.item_factors_, np.ndarray) and gpu.item_factors_.dtype == np.float32
    np.testing.assert_allclose(gpu.singular_values_, cpu.singular_values_, rtol=1e-4)
    np.testing.assert_allclose(gpu.score(np.arange(10)), cpu.score(np.arange(10)), atol=1e-4)


def test_default_rank_is_chosen_on_validation_and_beats_popularity(planted_shape, planted_ndcg, tmp_path):
    """Left None, the rank is chosen on a carve of train from one decomposition: the model beats
    popularity on planted data of every size and density, the choice is recorded and saved,
    and the same seed chooses the same rank."""
    from pipelines.models import create_model

    name, split = planted_shape
    model = create_model("svd").fit(split.train)
    assert model.config.factors is None
    chosen = model.factors_
    assert model.fitted_params() == {"factors": chosen} and model.item_factors_.shape[1] == chosen
    popularity = create_model("popularity").fit(split.train)
    assert planted_ndcg(model, split) > planted_ndcg(popularity, split) + 0.03, name
    assert load_model(model.save(tmp_path / "svd")).factors_ == chosen
    assert create_model("svd").fit(split.train).factors_ == chosen


def test_an_explicit_rank_skips_the_search_and_the_choice_stays_below_the_bound(monkeypatch):
    """The chosen rank is one of the candidates below min(n_users, n_items); an explicit
    ``factors`` is used as given, without the validation search."""
    from pipelines.models import svd as svd_module

    small = sp.random(40, 12, density=0.4, format="csr", random_state=3, dtype=np.float32)
    chosen = SvdRecommender().fit(small).factors_
    assert chosen in svd_module._CANDIDATE_FACTORS and chosen < 12
    monkeypatch.setattr(svd_module, "choose_factors", lambda *a: pytest.fail("searched despite an explicit rank"))
    assert SvdRecommender(factors=3).fit(small).factors_ == 3
