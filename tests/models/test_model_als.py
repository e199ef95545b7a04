"""ALS specifics: the CG solver against implicit, the loss, runtime options, validation, GPU parity."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from pipelines.compute.backend import ArrayBackend, gpu_available
from pipelines.errors import ConfigError
from pipelines.models import create_model
from pipelines.models import als as als_module
from pipelines.models.als import AlsConfig, AlsRecommender
from pipelines.models import als_solver
from pipelines.models.als_solver import split_rows
from pipelines.models.popularity import PopularityConfig

FAST = {"factors": 8, "iterations": 8, "regularization": 1.0}


@pytest.fixture(scope="module")
def confidences() -> sp.csr_matrix:
    """A small random matrix of confidences in [1, 5), some rows and columns empty."""
    matrix = sp.random(120, 80, density=0.08, format="csr", dtype=np.float32, random_state=3)
    matrix.data = 1.0 + 4.0 * matrix.data
    matrix = matrix.tolil()
    matrix[7, :] = 0
    matrix[:, 11] = 0
    return matrix.tocsr()


def test_loss_decreases_and_reaches_the_callback(planted):
    seen: list[tuple[int, float]] = []
    model = AlsRecommender(**FAST).fit(planted.train, callback=lambda it, loss: seen.append((it, loss)))
    losses = model.training_loss_
    assert [it for it, _ in seen] == list(range(FAST["iterations"]))
    assert [loss for _, loss in seen] == losses
    assert all(later <= earlier * (1 + 1e-4) for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < 0.9 * losses[0]


def test_loss_can_be_switched_off(planted):
    seen: list[float] = []
    model = AlsRecommender(**FAST, calculate_training_loss=False).fit(planted.train, callback=lambda i, l: seen.append(l))
    assert model.training_loss_ == []
    assert len(seen) == FAST["iterations"] and all(math.isnan(loss) for loss in seen)


@pytest.mark.parametrize("binary", [False, True], ids=["weighted", "binary"])
def test_matches_implicit_conjugate_gradient(confidences, binary):
    """Same seed => same initial factors as implicit, so the factors must agree after fitting.

    In float64: float32 rounding, summed in another order, grows through unconverged CG steps
    to about 1e-2 on a few users, which would hide a real difference. Binary confidences take
    the solver's shortcut (no sparse term in A) and must still agree.
    """
    if binary:
        confidences = confidences.copy()
        confidences.data[:] = 1.0
    implicit_als = pytest.importorskip("implicit.cpu.als", reason="implicit (bench extra) is not installed")
    from implicit.cpu import _als
    from threadpoolctl import threadpool_limits

    params = {"factors": 16, "iterations": 6, "regularization": 0.1}
    ours = AlsRecommender(**params, seed=3, num_threads=1, dtype="float64").fit(confidences)
    with threadpool_limits(limits=1, user_api="blas"):
        reference = implicit_als.AlternatingLeastSquares(
            **params, random_state=3, num_threads=1, use_cg=True, dtype=np.float64
        )
        reference.fit(confidences, show_progress=False)
        their_loss = _als.calculate_loss(confidences, ours.user_factors_, ours.item_factors_, 0.1, num_threads=1)
    # implicit keeps confidences in float32, hence agreement to ~1e-6 rather than 1e-12.
    np.testing.assert_allclose(ours.user_factors_, reference.user_factors, atol=1e-5)
    np.testing.assert_allclose(ours.item_factors_, reference.item_factors, atol=1e-5)
    assert ours.training_loss_[-1] == pytest.approx(their_loss, rel=1e-6)


def test_results_do_not_depend_on_threads_or_blocks(confidences):
    reference = AlsRecommender(**FAST, num_threads=1).fit(confidences)
    for options in ({"num_threads": 2, "block_size": 17}, {"num_threads": 1, "block_size": 1}):
        other = AlsRecommender(**FAST, **options).fit(confidences)
        np.testing.assert_allclose(other.user_factors_, reference.user_factors_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(other.training_loss_, reference.training_loss_, rtol=1e-5)


def test_float64_fits_as_well_as_float32(confidences):
    """Each dtype draws its own initial factors (as implicit does), so compare the fits' losses."""
    single = AlsRecommender(**FAST).fit(confidences)
    double = AlsRecommender(**FAST, dtype="float64").fit(confidences)
    assert single.user_factors_.dtype == np.float32 and double.user_factors_.dtype == np.float64
    assert double.training_loss_[-1] == pytest.approx(single.training_loss_[-1], rel=0.05)


def test_negative_values_mean_disliked():
    """A stored negative value is preference 0 with confidence |value|: it pushes the score down."""
    liked = sp.csr_matrix(np.array([[1, 1, 0, 1], [1, 1, 1, 0], [1, 0, 1, 1]], dtype=np.float32))
    disliked = liked.copy()
    disliked[0, 1] = -20.0
    plain = AlsRecommender(factors=4, iterations=10, regularization=0.1).fit(liked)
    pushed = AlsRecommender(factors=4, iterations=10, regularization=0.1).fit(disliked)
    assert pushed.score([0])[0, 1] < plain.score([0])[0, 1] - 0.3
    assert abs(pushed.score([0])[0, 1]) < 0.2


def test_stored_zeros_are_unobserved(confidences):
    padded = confidences.copy()
    padded.data[::5] = 0.0  # explicit zeros kept in the structure
    stripped = padded.copy()
    stripped.eliminate_zeros()
    a = AlsRecommender(**FAST).fit(padded)
    b = AlsRecommender(**FAST).fit(stripped)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


def test_non_finite_values_are_rejected_with_their_position():
    matrix = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, np.nan]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"non-finite value at \(user 1, item 1\)"):
        AlsRecommender(**FAST).fit(matrix)
    with pytest.raises(ValueError, match="no non-zero entries"):
        AlsRecommender(**FAST).fit(sp.csr_matrix((3, 3), dtype=np.float32))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"factors": -1}, "factors"),
        ({"factors": 0}, "factors"),
        ({"factors": 2048}, "factors"),
        ({"iterations": 0}, "iterations"),
        ({"regularization": -0.5}, "regularization"),
        ({"regularization": float("nan")}, "regularization"),
        ({"cg_steps": 21}, "cg_steps"),
        ({"block_size": 0}, "block_size"),
        ({"num_threads": -1}, "num_threads"),
        ({"dtype": "float16"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"alpha": 40.0}, "alpha"),  # confidence weighting is upstream, not an ALS parameter
    ],
)
def test_bad_hyperparameters_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        AlsRecommender(**params)
    with pytest.raises(ConfigError, match=rf"invalid parameters for model 'als': {field}"):
        create_model("als", params)


def test_overrides_are_validated_and_configs_must_match_the_family():
    with pytest.raises(ValidationError, match="factors"):
        AlsRecommender(AlsConfig(), factors=-3)
    assert AlsRecommender(AlsConfig(factors=4), iterations=2).config.iterations == 2
    with pytest.raises(TypeError, match="takes a AlsConfig, got PopularityConfig"):
        AlsRecommender(PopularityConfig())


def test_hyperparameters_leave_out_runtime_options():
    params = AlsConfig(device="auto", num_threads=3).hyperparameters()
    assert {"factors", "regularization", "iterations", "seed"} <= set(params)
    assert not {"device", "num_threads", "block_size"} & set(params)


def test_split_rows_covers_every_row_within_block_size():
    indptr = np.r_[0, np.cumsum(np.random.default_rng(0).integers(0, 50, size=1000))]
    for block_size, min_blocks in ((64, 1), (5000, 8), (1, 1)):
        blocks = split_rows(indptr, block_size, factors=16, min_blocks=min_blocks)
        assert blocks[0][0] == 0 and blocks[-1][1] == 1000
        assert all(stop == start for (_, stop), (start, _) in zip(blocks, blocks[1:]))
        assert all(0 < stop - start <= block_size for start, stop in blocks)
    assert len(split_rows(indptr, 5000, factors=16, min_blocks=1)) == 1
    assert split_rows(np.zeros(1, dtype=np.int64), 10, 16) == []


@pytest.mark.parametrize("binary", [False, True], ids=["weighted", "binary"])
def test_compiled_kernel_agrees_with_the_numpy_solver(confidences, binary, monkeypatch):
    """The numba kernel runs the same CG steps row by row: float64 factors and losses agree to
    rounding, and a stored negative value (preference 0) takes the same path in both."""
    pytest.importorskip("numba", reason="numba is not installed: the NumPy solver is the only one")
    matrix = confidences.copy()
    if binary:
        matrix.data[:] = 1.0
    else:
        matrix.data[::7] *= -1.0
    params = {**FAST, "dtype": "float64", "num_threads": 2, "block_size": 33}
    assert als_solver.compiled_cg_kernel() is not None
    compiled = AlsRecommender(**params).fit(matrix)
    monkeypatch.setattr(als_solver, "compiled_cg_kernel", lambda: None)
    plain = AlsRecommender(**params).fit(matrix)
    np.testing.assert_allclose(compiled.user_factors_, plain.user_factors_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(compiled.item_factors_, plain.item_factors_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(compiled.training_loss_, plain.training_loss_, rtol=1e-10)


def test_numba_loads_lazily_and_once_for_concurrent_first_calls():
    """numba is imported on the first CPU fit, not with the models (imports stay cheap); the
    fit's worker threads ask for the kernel at the same moment and must all get it."""
    pytest.importorskip("numba", reason="numba is not installed: the NumPy solver is the only one")
    code = (
        "import sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "import pipelines.models.als, pipelines.models.als_solver as solver\n"
        "print('numba' in sys.modules)\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    kernels = list(pool.map(lambda _: solver.compiled_cg_kernel(), range(8)))\n"
        "print(all(kernel is not None for kernel in kernels))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


class _NumpyPosingAsGpu(ArrayBackend):
    """NumPy arrays through the backend's GPU branches (no scratch buffers, no BSR, no threads)."""

    @property
    def is_gpu(self) -> bool:
        return True

    def to_host(self, array):
        return np.asarray(array)


def test_gpu_code_path_runs_and_agrees_on_numpy(confidences, monkeypatch):
    cpu = AlsRecommender(**FAST, dtype="float64").fit(confidences)
    monkeypatch.setattr(als_module, "get_backend", lambda device: _NumpyPosingAsGpu("cupy", np, sp))
    posing = AlsRecommender(**FAST, dtype="float64", device="gpu").fit(confidences)
    np.testing.assert_allclose(posing.user_factors_, cpu.user_factors_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(posing.training_loss_, cpu.training_loss_, rtol=1e-12)


@pytest.mark.gpu
def test_gpu_fit_matches_cpu(confidences):
    """Same code on CuPy: float64 factors agree tightly, float32 fits reach the same loss."""
    ok, reason = gpu_available()
    if not ok:
        pytest.skip(f"no usable GPU: {reason}")
    cpu = AlsRecommender(**FAST, dtype="float64", device="cpu").fit(confidences)
    gpu = AlsRecommender(**FAST, dtype="float64", device="gpu").fit(confidences)
    assert isinstance(gpu.user_factors_, np.ndarray) and isinstance(gpu.item_factors_, np.ndarray)
    np.testing.assert_allclose(gpu.user_factors_, cpu.user_factors_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gpu.item_factors_, cpu.item_factors_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gpu.training_loss_, cpu.training_loss_, rtol=1e-8)
    cpu32 = AlsRecommender(**FAST, device="cpu").fit(confidences)
    gpu32 = AlsRecommender(**FAST, device="gpu").fit(confidences)
    assert gpu32.user_factors_.dtype == np.float32
    np.testing.assert_allclose(gpu32.training_loss_, cpu32.training_loss_, rtol=1e-3)


def test_default_regularization_is_chosen_and_beats_popularity(planted_shape, planted_ndcg, tmp_path):
    """Left None, the penalty is chosen on a carve of train: the model beats popularity on planted
    data of every size and density, the choice is recorded, saved and reproducible."""
    from pipelines.models import load_model

    name, split = planted_shape
    model = create_model("als").fit(split.train)
    assert model.config.regularization is None
    chosen = model.regularization_
    assert model.fitted_params() == {"regularization": chosen}
    popularity = create_model("popularity").fit(split.train)
    assert planted_ndcg(model, split) > planted_ndcg(popularity, split) + 0.03, name
    loaded = load_model(model.save(tmp_path / "als"))
    assert loaded.regularization_ == chosen
    np.testing.assert_allclose(loaded.score_new_users(split.train[:5]), model.score_new_users(split.train[:5]), rtol=1e-5)
    again = create_model("als").fit(split.train)
    assert again.regularization_ == chosen
    np.testing.assert_array_equal(again.user_factors_, model.user_factors_)


def test_the_chosen_regularization_follows_the_data_scale(planted):
    """The grid is relative to the top singular value: confidences 4 times larger (a heavier
    weighting) are met with a 4 times larger penalty, the same multiple of the grid; an explicit
    value is used as given, with no search."""
    base = create_model("als").fit(planted.train).regularization_
    scale = als_module.top_singular_value(planted.train, 0)
    assert scale / 64 <= base <= scale
    assert create_model("als").fit(planted.train * 4.0).regularization_ == pytest.approx(4.0 * base, rel=1e-4)
    explicit = AlsRecommender(regularization=3.0, factors=8, iterations=2).fit(planted.train)
    assert explicit.regularization_ == 3.0 and explicit.fitted_params() == {"regularization": 3.0}


def test_a_warm_start_reuses_the_previous_choice(planted):
    from pipelines.models.warm_start import WarmStart

    previous = create_model("als", {"factors": 8}).fit(planted.train)
    ids = np.arange
    warm = WarmStart(previous, ids(planted.n_users), ids(planted.n_items))
    model = create_model("als", {"factors": 8, "iterations": 2}).fit(planted.train, warm_start=warm)
    assert model.regularization_ == previous.regularization_
