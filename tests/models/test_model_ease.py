"""EASE^R specifics: the closed form (both solution paths), the regularization and the use of the
values chosen on validation, fold-in, the size guard, GPU parity. Measured quality of the
defaults: ``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from pipelines.compute.backend import ArrayBackend, gpu_available
from pipelines.errors import ConfigError
from pipelines.features.weighting import WeightingConfig, apply_weighting
from pipelines.models import create_model, load_model
from pipelines.models import ease as ease_module
from pipelines.models.ease import EaseConfig, EaseRecommender


def reference_weights(matrix: sp.csr_matrix, regularization: float) -> np.ndarray:
    """Steck's five lines, in float64."""
    dense = matrix.toarray().astype(np.float64)
    gram = dense.T @ dense
    precision = np.linalg.inv(gram + regularization * np.eye(gram.shape[0]))
    weights = precision / -np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    return weights


def random_matrix(n_users: int, n_items: int, seed: int = 1) -> sp.csr_matrix:
    matrix = sp.random(n_users, n_items, density=0.15, format="csr", dtype=np.float32, random_state=seed)
    matrix.data = 1.0 + 4.0 * matrix.data
    return matrix


@pytest.mark.parametrize("shape", [(120, 40), (30, 60)], ids=["gram-inverse", "woodbury"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_match_the_closed_form(shape, dtype):
    """More users than items inverts X^T X + lambda I; fewer takes the Woodbury path. Same B."""
    matrix = random_matrix(*shape)
    model = EaseRecommender(regularization=7.0, dtype=dtype).fit(matrix)
    assert model.item_weights_.dtype == np.float32 and model.item_weights_.flags.c_contiguous
    assert (np.diag(model.item_weights_) == 0).all()
    reference = reference_weights(matrix, 7.0)
    np.testing.assert_allclose(model.item_weights_, reference, atol=2e-6 if dtype == "float32" else 1e-8)
    np.testing.assert_allclose(model.score([0, 5]), matrix[[0, 5]] @ reference, rtol=1e-4, atol=1e-5)


def test_fold_in_scores_new_users_like_known_ones(tmp_path):
    matrix = random_matrix(50, 30)
    model = EaseRecommender(regularization=5.0).fit(matrix)
    np.testing.assert_allclose(model.score_new_users(matrix[:7]), model.score(np.arange(7)), rtol=1e-6)
    loaded = load_model(model.save(tmp_path / "ease"))
    np.testing.assert_array_equal(loaded.item_weights_, model.item_weights_)
    np.testing.assert_array_equal(loaded.score_new_users(matrix[:7]), model.score_new_users(matrix[:7]))
    with pytest.raises(ValueError, match=r"one column per item of the model \(30\)"):
        model.score_new_users(sp.csr_matrix((2, 31), dtype=np.float32))


@pytest.mark.parametrize("shape", [(120, 40), (30, 60)], ids=["gram-eigen", "kernel-eigen"])
def test_one_eigendecomposition_scores_every_regularization_exactly(shape):
    """The spectral form behind the validation search gives EASE's own scores off the seen items."""
    matrix = random_matrix(*shape)
    spectral = ease_module._SpectralEase(matrix)
    unseen = matrix[:8].toarray() == 0
    for regularization in (0.5, 7.0, 300.0):
        want = matrix[:8] @ reference_weights(matrix, regularization)
        np.testing.assert_allclose(spectral.scores(matrix[:8], regularization)[unseen], want[unseen], rtol=2e-3,
                                   atol=1e-4 * np.abs(want).max())  # float32 eigenvectors: error relative to the scale


def test_regularization_is_chosen_on_validation_and_scales_with_the_data(planted, tmp_path):
    """Default: chosen on a carve of train, logged as a fitted parameter, kept on save. Confidences
    c times larger make the Gram matrix c^2 larger: the choice follows, and the ranking is the same."""
    model = create_model("ease").fit(planted.train)
    chosen = model.regularization_
    assert model.config.regularization is None
    assert model.fitted_params() == {"regularization": chosen, "binarize": False}  # 1s only: nothing to drop
    mean_diagonal = planted.train.power(2).sum() / planted.n_items
    assert mean_diagonal / 32 <= chosen <= 128 * np.sqrt(2) * mean_diagonal
    scaled = create_model("ease").fit(planted.train * 3.0)
    assert scaled.regularization_ == pytest.approx(9.0 * chosen)
    users = np.arange(planted.n_users)
    np.testing.assert_array_equal(scaled.recommend(users, 10, planted.train)[0], model.recommend(users, 10, planted.train)[0])
    assert load_model(model.save(tmp_path / "ease")).regularization_ == chosen
    explicit = EaseRecommender(regularization=5.0).fit(planted.train)
    assert explicit.regularization_ == 5.0


def test_values_that_mislead_are_dropped_on_validation_and_fold_in_follows(planted, tmp_path):
    """Heavy-tailed counts unrelated to taste, log-weighted as the family prefers: the validation
    carves show 1s ranking better, so the model learns from 1s, and new users' seeds are read the
    same way. Set explicitly, ``binarize`` is obeyed without a search."""
    counts = planted.train.copy()
    counts.data = np.minimum(np.random.default_rng(0).zipf(1.3, counts.nnz), 10_000).astype(np.float32)
    weighted = apply_weighting(counts, WeightingConfig(**EaseRecommender.preferred_weighting))
    model = create_model("ease").fit(weighted)
    assert model.binarize_ and model.fitted_params()["binarize"] is True
    np.testing.assert_array_equal(model.user_items_.data, 1.0)
    np.testing.assert_allclose(model.score_new_users(weighted[:7]), model.score(np.arange(7)), rtol=1e-6)
    assert load_model(model.save(tmp_path / "ease")).binarize_
    kept = create_model("ease", {"binarize": False}).fit(weighted)
    assert not kept.binarize_ and not np.all(kept.user_items_.data == kept.user_items_.data[0])
    forced = create_model("ease", {"regularization": 50.0, "binarize": True}).fit(weighted)
    assert forced.binarize_ and forced.regularization_ == 50.0


def test_a_catalogue_above_max_items_is_refused_before_allocating():
    with pytest.raises(ConfigError, match=r"dense 60 x 60 matrices .* max_items is 50"):
        EaseRecommender(max_items=50).fit(random_matrix(20, 60))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"regularization": 0.0}, "regularization"),
        ({"regularization": -1.0}, "regularization"),
        ({"regularization": float("inf")}, "regularization"),
        ({"max_items": 0}, "max_items"),
        ({"dtype": "float16"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"lambda_": 10.0}, "lambda_"),
    ],
)
def test_bad_hyperparameters_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        EaseRecommender(**params)
    with pytest.raises(ConfigError, match=rf"invalid parameters for model 'ease': {field}"):
        create_model("ease", params)


def test_device_is_a_runtime_option():
    assert set(EaseConfig(device="auto").hyperparameters()) == {"seed", "regularization", "binarize", "max_items", "dtype"}


class _NumpyPosingAsGpu(ArrayBackend):
    """NumPy arrays through the backend's GPU branches (the general inverse instead of LAPACK's)."""

    @property
    def is_gpu(self) -> bool:
        return True

    def to_host(self, array):
        return np.asarray(array)


@pytest.mark.parametrize("shape", [(120, 40), (30, 60)], ids=["gram-inverse", "woodbury"])
def test_gpu_code_path_runs_and_agrees_on_numpy(shape, monkeypatch):
    matrix = random_matrix(*shape)
    cpu = EaseRecommender(regularization=7.0, dtype="float64").fit(matrix)
    monkeypatch.setattr(ease_module, "get_backend", lambda device: _NumpyPosingAsGpu("cupy", np, sp))
    posing = EaseRecommender(regularization=7.0, dtype="float64", device="gpu").fit(matrix)
    np.testing.assert_allclose(posing.item_weights_, cpu.item_weights_, atol=1e-7)


@pytest.mark.gpu
def test_gpu_fit_matches_cpu():
    ok, reason = gpu_available()
    if not ok:
        pytest.skip(f"no usable GPU: {reason}")
    for shape in ((120, 40), (30, 60)):
        matrix = random_matrix(*shape)
        cpu = EaseRecommender(regularization=7.0, dtype="float64", device="cpu").fit(matrix)
        gpu = EaseRecommender(regularization=7.0, dtype="float64", device="gpu").fit(matrix)
        assert isinstance(gpu.item_weights_, np.ndarray) and gpu.item_weights_.dtype == np.float32
        np.testing.assert_allclose(gpu.item_weights_, cpu.item_weights_, atol=1e-6)
