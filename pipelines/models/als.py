"""Implicit-feedback alternating least squares (Hu, Koren and Volinsky 2008) with CG updates.

The training matrix holds confidences ``C_ui``: confidence weighting (binary, ``1 + alpha * r``,
BM25, ...) is applied upstream by :mod:`pipelines.features.weighting`, not here. Stored positive
values mean preference 1, unstored cells preference 0 with confidence 1, and a stored negative
value preference 0 with confidence ``|value|`` (the ``implicit`` library's conventions, so the
same matrix gives the same model in both). The solver lives in :mod:`pipelines.models.als_solver`
and runs on NumPy/SciPy or CuPy/cupyx through :mod:`pipelines.compute.backend`.

The L2 penalty is chosen at fit unless set (:func:`choose_regularization`): a few warm-started
sweeps per candidate on a validation carve of train, the candidates a log grid relative to the
top singular value of the preference matrix (a penalty above a factor's singular value shrinks it
away, Mazumder, Hastie and Tibshirani 2010), climbed from small to large: a fitted model shrinks
in a sweep or two, while factors a large penalty has shrunk to near zero take many sweeps to grow
back (zero is a fixed point of ALS).
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines import seeding
from pipelines.compute.backend import ArrayBackend, get_backend
from pipelines.models import als_solver
from pipelines.models.base import IterationCallback, ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_seen
from pipelines.models.threads import available_cores, blas_threads
from pipelines.models.warm_start import WarmStart

log = logging.getLogger(__name__)


# Choosing the penalty on validation: share of each user's items held out, most users scored,
# the candidate multiples of the top singular value (1/64 to 1, a factor 2 apart, climbed from
# the smallest), sweeps on the first candidate and on each later one (warm-started from the
# previous), candidates past a peak that end the climb (the first candidates' scores wobble while
# the factors settle, so a peak counts only above the first candidate), and the multiple used when
# nothing can be held out (the middle of the choices made on planted data of several sizes).
_CARVE_FRACTION = 0.2
_VALIDATION_USERS = 2_000
_GRID = tuple(2.0**k for k in range(-6, 1))
_FIRST_SWEEPS = 3
_PATH_SWEEPS = 2
_PATIENCE = 2
_FALLBACK_MULTIPLE = 0.25


class AlsConfig(ModelConfig):
    """Hyperparameters of :class:`AlsRecommender`, then its runtime options (``seed`` draws the
    initial factors and the validation carve when ``regularization`` is chosen at fit).
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    factors: int = Field(64, ge=1, le=1024)
    """Latent dimensions per user and item."""
    iterations: int = Field(15, ge=1, le=500)
    """ALS sweeps; each solves users, then items."""
    regularization: float | None = Field(None, ge=0.0, le=1e9, allow_inf_nan=False)
    """L2 penalty on every user and item vector (not scaled by interaction counts). None (the
    default): chosen at fit on a validation carve of the training data, on a grid scaled to the
    top singular value of its preference matrix, then used for the fit on all of it (a warm
    start reuses the previous model's value); the value used is ``regularization_``."""
    cg_steps: int = Field(3, ge=1, le=20)
    """Conjugate-gradient steps per row and half-sweep (implicit's default 3)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Floating-point type of the factors and of the computation."""
    calculate_training_loss: bool = True
    """Compute implicit's normalised loss after each sweep (cheap: the solver keeps the products
    it needs)."""

    # -- runtime options: how to compute, not what (results agree up to float rounding) --------
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    """Where to compute; "gpu" falls back to the CPU with a warning when no usable GPU is present."""
    block_size: int = Field(4096, ge=1)
    """Most users (or items) solved together; with the entry cap in the solver this bounds the
    memory of a block's temporaries, about entries x factors x 4 bytes x 3."""
    num_threads: int = Field(0, ge=0, le=1024)
    """CPU worker threads over blocks (0: every core this process may use). BLAS is held to one
    thread meanwhile so the two never oversubscribe the cores."""

    runtime_options: ClassVar[frozenset[str]] = frozenset({"device", "block_size", "num_threads"})


class AlsRecommender(Recommender):
    """Matrix factorization for implicit feedback; scores are ``user_factors_ @ item_factors_.T``.

    After :meth:`fit`: ``user_factors_`` (n_users, factors) and ``item_factors_`` (n_items,
    factors) as host NumPy arrays, ``item_popularity_`` (unknown-user fallback) and
    ``training_loss_`` (one value per iteration when ``calculate_training_loss``).
    """

    name: ClassVar[str] = "als"
    summary: ClassVar[str] = "Implicit-feedback ALS with conjugate gradient; strong general-purpose baseline, CPU or GPU"
    config_class: ClassVar[type[ModelConfig]] = AlsConfig
    config: AlsConfig

    user_factors_: np.ndarray | None = None
    item_factors_: np.ndarray | None = None
    regularization_: float | None = None

    warm_start_fields: ClassVar[tuple[str, ...]] = ("factors",)

    def _fit(
        self, train: sp.csr_matrix, *, callback: IterationCallback | None, warm_start: WarmStart | None = None,
        **unused: Any,
    ) -> None:
        """Factorize ``train`` (values = confidences), from ``warm_start``'s factors for shared
        users and items when given. ``callback(iteration, loss)`` follows each iteration; loss is
        NaN when ``calculate_training_loss`` is off. The penalty is ``regularization``; when that
        is None, the warm start's (when it recorded one), else :func:`choose_regularization`'s."""
        cfg = self.config
        user_items = train.astype(cfg.dtype, copy=False)
        backend = get_backend(cfg.device)
        previous = getattr(warm_start.previous, "regularization_", None) if warm_start is not None else None
        if cfg.regularization is not None:
            self.regularization_ = float(cfg.regularization)
        elif previous is not None:
            self.regularization_ = float(previous)
        else:
            self.regularization_ = choose_regularization(self, backend, user_items)
        user_factors, item_factors = map(backend.asarray, self.initial_factors(user_items.shape, warm_start))
        total_confidence = float(np.abs(user_items.data).sum(dtype=np.float64))

        self.training_loss_ = []
        with _Sweeper(self, backend, user_items) as sweeper:
            for iteration in range(cfg.iterations):
                entry_loss = sweeper.sweep(user_factors, item_factors, self.regularization_, cfg.calculate_training_loss)
                loss = math.nan
                if cfg.calculate_training_loss:
                    loss = als_solver.training_loss(
                        backend, entry_loss, user_factors, item_factors, self.regularization_,
                        total_confidence, user_items.nnz,
                    )
                    self.training_loss_.append(loss)
                log.debug("als iteration %d loss %.6g", iteration, loss)
                if callback is not None:
                    callback(iteration, loss)

        self.user_factors_ = backend.to_host(user_factors)
        self.item_factors_ = backend.to_host(item_factors)
        if not (np.isfinite(self.user_factors_).all() and np.isfinite(self.item_factors_).all()):
            raise FloatingPointError(
                "ALS produced non-finite factors; raise regularization or check the confidence values"
            )

    def fitted_params(self) -> dict[str, Any]:
        """The L2 penalty used (chosen on validation when the config leaves it None)."""
        return {"regularization": self.regularization_}

    def initial_factors(self, shape: tuple[int, int], warm_start: WarmStart | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) factors fit starts from: implicit's seeded uniform [0, 0.01), drawn on the
        host so CPU and GPU start alike, with the rows of users and items shared with
        ``warm_start``'s model copied from its factors."""
        dtype = np.dtype(self.config.dtype)
        rng = seeding.rng(self.config.seed)
        users, items = (rng.random((n, self.config.factors), dtype=dtype) * dtype.type(0.01) for n in shape)
        if warm_start is not None:
            warm_start.copy_rows(users, warm_start.previous.user_factors_, "user")
            warm_start.copy_rows(items, warm_start.previous.item_factors_, "item")
        return users, items

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T

    def _dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return self.user_factors_, self.item_factors_, None

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Fold-in: solve each new user's vector against the fixed item factors, then score.

        ``seen`` (new users x items) holds confidences with the training conventions. Each row
        gets the exact solution of the regularised least squares one ALS half-step improves,
        ``(Y^T C_u Y + reg I) x_u = Y^T C_u p_u``, on the configured backend. A row without
        entries gets the popular items, as an unknown user does.
        """
        self._check_fitted()
        matrix = check_seen(seen, self.n_items, dtype=self.item_factors_.dtype)
        matrix.eliminate_zeros()
        backend = get_backend(self.config.device)
        item_factors = backend.asarray(self.item_factors_)
        gram = als_solver.gramian(backend, item_factors, self._penalty())
        scores = np.empty(matrix.shape, dtype=np.float32)
        for start, stop in _fold_in_blocks(matrix.indptr, self.config.factors):
            vectors = _fold_in(backend, matrix[start:stop], item_factors, gram)
            scores[start:stop] = backend.to_host(vectors @ item_factors.T)
        empty = np.diff(matrix.indptr) == 0
        if empty.any():
            scores[empty] = self._unknown_user_scores()
        return scores

    def _penalty(self) -> float:
        """The penalty fit used (a model saved before it was recorded: the configured one)."""
        return self.regularization_ if self.regularization_ is not None else float(self.config.regularization or 0.0)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors_": self.user_factors_,
            "item_factors_": self.item_factors_,
            "regularization_": np.asarray(self._penalty(), dtype=np.float64),
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors_"]
        self.item_factors_ = state["item_factors_"]
        self.regularization_ = float(state["regularization_"]) if "regularization_" in state else self.config.regularization


class _Sweeper:
    """ALS sweeps over one confidence matrix: its row blocks both ways, built once, and the CPU
    thread pool (a context manager: the pool and the BLAS thread limit last while it is open)."""

    def __init__(self, model: AlsRecommender, backend: ArrayBackend, user_items: sp.csr_matrix) -> None:
        cfg = model.config
        dtype = np.dtype(cfg.dtype)
        self.backend, self.cg_steps = backend, cfg.cg_steps
        self.workers = 1 if backend.is_gpu else (cfg.num_threads or available_cores())
        min_blocks = 4 * self.workers if self.workers > 1 else 1
        self.user_blocks = als_solver.make_blocks(user_items, backend, dtype, cfg.block_size, cfg.factors, min_blocks)
        self.item_blocks = als_solver.make_blocks(
            user_items.T.tocsr(), backend, dtype, cfg.block_size, cfg.factors, min_blocks
        )
        self.scratch = None if backend.is_gpu else threading.local()  # CuPy's memory pool reuses blocks
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> "_Sweeper":
        self._threads = _cpu_threads(self.backend, self.workers)
        self.pool = self._threads.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._threads.__exit__(*exc)
        self.pool = None

    def sweep(self, user_factors: Any, item_factors: Any, regularization: float, with_loss: bool = False) -> float:
        """One ALS iteration in place (users, then items); the stored-entry loss when ``with_loss``."""
        self._half_step(self.user_blocks, user_factors, item_factors, regularization, False)
        return self._half_step(self.item_blocks, item_factors, user_factors, regularization, with_loss)

    def _half_step(self, blocks: list, solve_for: Any, fixed: Any, regularization: float, with_loss: bool) -> float:
        gram = als_solver.gramian(self.backend, fixed, regularization)

        def run(block: als_solver.RowBlock) -> float:
            return als_solver.solve_block(
                self.backend, block, solve_for, fixed, gram, self.cg_steps, with_loss, self.scratch
            )

        pool = self.pool
        return sum(pool.map(run, blocks) if pool and len(blocks) > 1 else map(run, blocks))


def choose_regularization(model: AlsRecommender, backend: ArrayBackend, user_items: sp.csr_matrix) -> float:
    """The L2 penalty with the best validation nDCG@10 on a seeded carve of ``user_items``, for all of it.

    ``_CARVE_FRACTION`` of each user's positive entries is held out (at most ``_VALIDATION_USERS``
    users scored). The candidates are multiples of the top singular value of the carve's
    preference matrix (stored positive values, the right-hand side of the normal equations):
    components whose singular value lies below the penalty are shrunk away, so this sets its
    scale whatever the size, density or confidence scale of the data. They are climbed from
    the smallest: :data:`_FIRST_SWEEPS` sweeps from the model's seeded initial factors, then
    :data:`_PATH_SWEEPS` per candidate from the previous candidate's factors, until
    :data:`_PATIENCE` candidates in a row score below a best that is not the first. The best multiple is returned
    times the top singular value of all of ``user_items``, so the choice carries to the refit.
    """
    from pipelines.models.validation import split_for_early_stopping, validation_ndcg

    kept, validation = split_for_early_stopping(
        user_items, None, _CARVE_FRACTION, _VALIDATION_USERS, seeding.rng(model.config.seed), user_items.data > 0
    )
    if validation is None:  # nobody has two items: nothing to validate on
        return _FALLBACK_MULTIPLE * top_singular_value(user_items, model.config.seed)
    scale = top_singular_value(kept, model.config.seed)
    user_factors, item_factors = map(backend.asarray, model.initial_factors(kept.shape))
    measured: dict[float, float] = {}
    best, stale = _GRID[0], 0
    with _Sweeper(model, backend, kept) as sweeper:
        for multiple in _GRID:
            for _ in range(_FIRST_SWEEPS if not measured else _PATH_SWEEPS):
                sweeper.sweep(user_factors, item_factors, multiple * scale)
            items_t = backend.to_host(item_factors).T
            users = backend.to_host(user_factors)
            measured[multiple] = validation_ndcg(lambda rows: users[rows] @ items_t, validation)
            if measured[multiple] > measured[best]:
                best, stale = multiple, 0
            elif best != _GRID[0]:
                stale += 1
                if stale >= _PATIENCE:
                    break
    chosen = best * top_singular_value(user_items, model.config.seed)
    log.info(
        "als: regularization %.4g (%.3g x the top singular value) chosen on validation (nDCG@10 by multiple %s)",
        chosen, best, {f"{m:.3g}": round(v, 4) for m, v in measured.items()},
    )
    return float(chosen)


def top_singular_value(user_items: sp.csr_matrix, seed: int, steps: int = 30) -> float:
    """Largest singular value of the preference matrix (``user_items``' positive values, zeros
    elsewhere), by seeded power iteration: its scale, not its last digits, is what counts."""
    positive = user_items.copy()
    positive.data = np.where(positive.data > 0, positive.data, 0).astype(np.float64)
    vector = seeding.rng(seed).random(positive.shape[1]) + 0.5  # positive: not orthogonal to the top one
    value = 0.0
    for _ in range(steps):
        image = positive @ vector
        value = float(np.linalg.norm(image))
        if value == 0.0:
            return 0.0
        vector = positive.T @ (image / value)
        vector /= np.linalg.norm(vector)
    return value


def _fold_in_blocks(indptr: np.ndarray, factors: int) -> list[tuple[int, int]]:
    """Row blocks for fold-in: at most 1024 users and about 2**22 gathered entries x factors**2."""
    max_entries = max(1, 2**22 // (factors * factors))
    blocks, start, n_rows = [], 0, len(indptr) - 1
    while start < n_rows:
        stop = min(start + 1024, n_rows)
        while stop > start + 1 and indptr[stop] - indptr[start] > max_entries:
            stop = start + max(1, (stop - start) // 2)
        blocks.append((start, stop))
        start = stop
    return blocks


def _fold_in(backend: ArrayBackend, rows: sp.csr_matrix, item_factors: Any, gram: Any) -> Any:
    """User vectors (n_rows, factors) solving ``(G + Y^T (C_u - I) Y) x_u = Y^T C_u p_u`` exactly.

    ``gram`` is ``Y^T Y + reg I``; ``rows`` holds confidences (negative = disliked, preference 0
    with confidence ``|value|``), as :func:`pipelines.models.als_solver.make_blocks` reads them.
    """
    xp = backend.xp
    n_rows, factors = rows.shape[0], item_factors.shape[1]
    dtype = item_factors.dtype
    values = rows.data
    row_of = np.repeat(np.arange(n_rows), np.diff(rows.indptr))
    gathered = item_factors[backend.asarray(rows.indices.astype(np.int64))]  # (entries, f)

    def per_row(weights: np.ndarray) -> Any:  # (n_rows, entries) selector with these weights
        return backend.csr(
            sp.csr_matrix((weights, (row_of, np.arange(len(values)))), shape=(n_rows, len(values))), dtype=dtype
        )

    rhs = per_row(np.where(values > 0, values, 0)) @ gathered  # Y^T C_u p_u
    lhs = xp.broadcast_to(gram, (n_rows, factors, factors)).copy()
    extra = np.abs(values) - 1
    if np.any(extra != 0):
        outer = (gathered[:, :, None] * gathered[:, None, :]).reshape(len(values), factors * factors)
        lhs += (per_row(extra) @ outer).reshape(n_rows, factors, factors)
    return xp.linalg.solve(lhs, rhs[:, :, None])[:, :, 0]


@contextmanager
def _cpu_threads(backend: ArrayBackend, workers: int) -> Iterator[ThreadPoolExecutor | None]:
    """A thread pool over blocks (None for one worker or the GPU), BLAS held to one thread.

    SciPy's sparse kernels and NumPy's large-array loops release the GIL, so blocks run truly in
    parallel; a multi-threaded BLAS inside each would only oversubscribe the cores.
    """
    if backend.is_gpu:
        yield None
        return
    with blas_threads(1):
        if workers == 1:
            yield None
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="als") as pool:
                yield pool
