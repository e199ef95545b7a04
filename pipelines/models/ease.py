"""EASE^R: an item-item linear autoencoder with a closed-form solution (Steck 2019).

Minimise ``|X - X B|^2 + lambda |B|^2`` subject to ``diag(B) = 0``. With
``P = (X^T X + lambda I)^-1`` the solution is ``B = I - P diag(1 / diag(P))``, that is
``B_ij = -P_ij / P_jj`` off the diagonal and 0 on it. A user's scores are their training row times
``B``; a new user's are their seed items times ``B`` (fold-in is exact, no refit).

``B`` is dense items x items (``n_items^2 x 4`` bytes in float32), so the family refuses
catalogues above ``max_items``. With fewer users than items the inverse comes from a users x
users one (the Woodbury identity), else from the items x items Gram matrix; either runs on the
array backend (:mod:`pipelines.compute.backend`): LAPACK's Cholesky inverse on the CPU, CuPy's
inverse on a GPU.

The family learns from log confidences ``1 + log(1 + r)`` (Hu, Koren and Volinsky 2008; the
weighting module's ``log`` scheme at its defaults). ``lambda`` and whether to drop the values for
plain interactions are chosen together on a validation carve of train: the values are kept only
where they rank better there, so counts that say nothing about preference cannot hurt.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines import seeding
from pipelines.compute.backend import ArrayBackend, get_backend
from pipelines.errors import ConfigError
from pipelines.models.base import ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_seen, csr_from_state, csr_state, mean_gram_diagonal

log = logging.getLogger(__name__)

# Choosing lambda on validation: carves averaged, share of each user's items held out, most users
# scored per carve, the candidate multiples of the mean Gram diagonal (1/32 to 128, a factor 2
# apart), and the multiple used when nothing can be held out.
_CARVES = 2
_CARVE_FRACTION = 0.2
_VALIDATION_USERS = 2_000
_GRID = tuple(2.0**k for k in range(-5, 8))
_FALLBACK_MULTIPLE = 1.0
# Plain interactions replace the weighted values only when they score this much better (relative)
# on validation: closer than that the two are within the carves' noise and the weighting stands,
# while values that mislead (heavy-tailed counts unrelated to taste) lose by far more.
_BINARY_MARGIN = 0.01


class EaseConfig(ModelConfig):
    """Hyperparameters of :class:`EaseRecommender`, then its runtime options (``seed`` draws the
    validation carve when ``regularization`` is chosen at fit)."""

    regularization: float | None = Field(None, gt=0.0, le=1e9, allow_inf_nan=False)
    """L2 penalty ``lambda`` on ``B``, added to the diagonal of ``X^T X``. None (the default):
    chosen at fit on validation carves of the training data, on a grid scaled to its mean
    Gram diagonal (the best value grows with interactions per item and with the confidence
    scale), then used for the refit on all of it; the value used is ``regularization_``."""
    binarize: bool | None = None
    """Learn from plain interactions (every stored value 1) instead of the weighted values fit
    receives. None (the default): chosen with ``regularization`` on the same carves (the values
    are kept unless 1s rank better there; with ``regularization`` set, the values are kept);
    the choice made is ``binarize_``."""
    max_items: int = Field(50_000, ge=1, le=1_000_000)
    """Largest catalogue accepted. Fitting holds one or two dense items x items matrices (10 GB
    each at 50 000 items in float32); above it fit raises a ConfigError instead of exhausting
    memory."""
    dtype: Literal["float32", "float64"] = "float32"
    """Precision of the Gram matrix and its inverse. ``B`` is kept in float32 either way."""

    # -- runtime options: how to compute, not what ------------------------------------------
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    """Where to invert; "gpu" falls back to the CPU with a warning when no usable GPU is present."""

    runtime_options: ClassVar[frozenset[str]] = frozenset({"device"})


class EaseRecommender(Recommender):
    """Scores are ``X[u] @ B`` with ``B`` the items x items EASE^R weights (zero diagonal).

    After :meth:`fit`: ``item_weights_`` (``B``, float32, n_items x n_items), ``user_items_``
    (the training rows, to score known users) and ``item_popularity_``.
    """

    name: ClassVar[str] = "ease"
    summary: ClassVar[str] = (
        "EASE^R closed-form item-item linear model; top accuracy on small/medium catalogues (<= 50k items)"
    )
    config_class: ClassVar[type[ModelConfig]] = EaseConfig
    config: EaseConfig

    #: Log confidences, kept only where they beat plain interactions on validation (see ``binarize``).
    preferred_weighting: ClassVar[dict[str, Any]] = {"scheme": "log"}

    item_weights_: np.ndarray | None = None
    user_items_: sp.csr_matrix | None = None
    regularization_: float | None = None
    binarize_: bool = False

    def _fit(self, train: sp.csr_matrix, **unused: Any) -> None:
        """Solve for ``B`` on ``train`` (weighted upstream, or its 1s when ``binarize``), with
        ``regularization`` or, when it is None, what :func:`choose_regularization` picks on carves
        of ``train``. Raises ConfigError when the catalogue is larger than ``max_items``."""
        cfg = self.config
        n_items = train.shape[1]
        if n_items > cfg.max_items:
            need_gib = 2 * n_items**2 * np.dtype(cfg.dtype).itemsize / 2**30
            raise ConfigError(
                f"ease needs dense {n_items} x {n_items} matrices (about {need_gib:.1f} GiB) but "
                f"max_items is {cfg.max_items}; raise max_items if the memory is there, or use "
                "itemknn or a factor model (als, svd) for this catalogue"
            )
        if cfg.regularization is None:
            self.regularization_, self.binarize_ = choose_regularization(train, cfg.seed, cfg.binarize)
        else:
            self.regularization_, self.binarize_ = cfg.regularization, bool(cfg.binarize)
        if self.binarize_:
            train = _ones(train)
        backend = get_backend(cfg.device)
        weights = ease_weights(backend, train, self.regularization_, np.dtype(cfg.dtype))
        self.item_weights_ = backend.to_host(weights).astype(np.float32, copy=False)
        del weights
        if not np.isfinite(self.item_weights_).all():
            raise FloatingPointError("EASE produced non-finite weights; raise regularization or use dtype float64")
        self.user_items_ = train
        self.training_loss_ = []

    def fitted_params(self) -> dict[str, Any]:
        """The regularization used and whether the values were dropped (chosen on validation when
        the config leaves them None)."""
        return {"regularization": self.regularization_, "binarize": self.binarize_}

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_items_[user_idx] @ self.item_weights_)

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Fold-in: ``seen @ B`` for new users' seed items (n_new x n_items, weighted as train was)."""
        self._check_fitted()
        seen = check_seen(seen, self.n_items)
        return np.asarray((_ones(seen) if self.binarize_ else seen) @ self.item_weights_, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "item_weights_": self.item_weights_,
            "regularization_": np.asarray(self.regularization_, dtype=np.float64),
            "binarize_": np.asarray(self.binarize_),
            **csr_state(self.user_items_, "user_items_"),
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_weights_ = state["item_weights_"]
        self.user_items_ = csr_from_state(state, "user_items_")
        self.regularization_ = float(state["regularization_"]) if "regularization_" in state else None
        self.binarize_ = bool(state["binarize_"]) if "binarize_" in state else False


def choose_regularization(user_items: sp.csr_matrix, seed: int, binarize: bool | None = None) -> tuple[float, bool]:
    """``(lambda, binarize)`` with the best validation nDCG@10 on seeded carves of ``user_items``, for all of it.

    Each of ``_CARVES`` carves holds out ``_CARVE_FRACTION`` of each user's items; candidates on a
    log grid relative to the mean diagonal of the carved Gram matrix ``G = X^T X`` (the scale of
    ``lambda``: it grows with interactions per item and with the confidence scale), a factor 2
    apart, then the half-steps around the best, are scored by their nDCG@10 averaged over the
    carves (one carve alone is noisy on small data; from ``_VALIDATION_USERS`` users on, one
    carve is used). One eigendecomposition per carve serves every candidate
    (:class:`_SpectralEase`). With ``binarize`` None and values that are not all equal, the
    same search runs on the carves' 1s too, and the values are dropped only when 1s score
    ``_BINARY_MARGIN`` better. The best multiple is returned times the mean diagonal of the full matrix, so the
    choice carries from the carves to the refit on all of ``user_items``.
    """
    from pipelines.models.validation import ValidationSet, carve_holdout

    values = user_items.data
    constant = values.size == 0 or bool(np.all(values == values[0]))
    options = [False, True] if binarize is None and not constant else [bool(binarize)]
    carves = []
    for rng in seeding.rng(seed).spawn(_CARVES):
        kept, held = carve_holdout(user_items, _CARVE_FRACTION, rng)
        validation = ValidationSet.build(kept, held, _VALIDATION_USERS, rng)
        if validation is not None:
            carves.append((kept, validation))
        if validation is not None and len(validation.users) >= _VALIDATION_USERS:
            break  # enough users for a steady estimate from one carve: spare the next eigendecomposition
    results = {}
    for ones in options:
        matrix = _ones(user_items) if ones else user_items
        if not carves:  # nobody has two items: nothing to validate on
            return _FALLBACK_MULTIPLE * mean_gram_diagonal(matrix), ones
        start = None if not results else results[False][2]  # 1s: climb from the values' best multiple
        carved = [(_ones(kept) if ones else kept, validation) for kept, validation in carves]
        multiple, ndcg = _best_multiple(carved, start)
        results[ones] = (multiple * mean_gram_diagonal(matrix), ndcg, multiple)
    chosen = options[0]
    if len(options) == 2 and results[True][1] > (1.0 + _BINARY_MARGIN) * results[False][1]:
        chosen = True
    log.info(
        "ease: regularization %.4g on %s chosen on validation (nDCG@10 %s)",
        results[chosen][0], "1s" if chosen else "the weighted values",
        {("1s" if ones else "values"): round(result[1], 4) for ones, result in results.items()},
    )
    return float(results[chosen][0]), chosen


def _best_multiple(carves: list[tuple[sp.csr_matrix, Any]], start: float | None = None) -> tuple[float, float]:
    """The multiple of the mean Gram diagonal with the best nDCG@10 averaged over ``carves``
    ((kept, ValidationSet) pairs), and that nDCG.

    The whole grid is scored, or, from a ``start`` multiple of the grid, only the grid steps
    uphill from it (the curve has one peak: a few candidates instead of the whole grid); then the
    half-steps around the best.
    """
    from pipelines.models.validation import validation_ndcg

    scorers = [(_SpectralEase(kept), kept, mean_gram_diagonal(kept), validation) for kept, validation in carves]
    measured: dict[float, float] = {}

    def ndcg(multiple: float) -> float:
        if multiple not in measured:
            measured[multiple] = float(np.mean([
                validation_ndcg(lambda users: spectral.scores(kept[users], multiple * scale), validation)
                for spectral, kept, scale, validation in scorers
            ]))
        return measured[multiple]

    if start is None:
        best = max(_GRID, key=ndcg)
    else:
        at = int(np.argmin(np.abs(np.log(_GRID) - np.log(start))))
        for step in (1, -1):  # climb one way while it improves, then the other
            while 0 <= at + step < len(_GRID) and ndcg(_GRID[at + step]) > ndcg(_GRID[at]):
                at += step
        best = _GRID[at]
    best = max((best / np.sqrt(2.0), best, best * np.sqrt(2.0)), key=ndcg)
    log.debug("ease: validation nDCG@10 by multiple of the mean Gram diagonal %s",
              {f"{m:.3g}": round(v, 4) for m, v in sorted(measured.items())})
    return float(best), measured[best]


class _SpectralEase:
    """EASE scores for any ``lambda`` from one eigendecomposition of the Gram matrix.

    With ``X^T X = W diag(d) W^T`` (``W`` orthonormal columns, from the smaller of ``X X^T`` and
    ``X^T X``), ``lambda P = I - W diag(d / (d + lambda)) W^T`` for ``P = (X^T X + lambda I)^-1``.
    Off a user's own items (the ones ranked) EASE scores ``-(x P)_j / P_jj``; for a row ``x`` of
    ``X`` (so ``x W W^T = x``) that is ``-(x W diag(lambda / (d + lambda)) W^T)_j / (lambda P_jj)``:
    a few thin products per candidate, and no float32 cancellation when ``lambda`` is small.
    """

    def __init__(self, user_items: sp.csr_matrix) -> None:
        n_users, n_items = user_items.shape
        x = user_items.astype(np.float64)
        if n_users < n_items:
            values, vectors = np.linalg.eigh((x @ x.T).toarray())
            keep = values > values.max() * 1e-10
            basis = np.asarray(x.T @ vectors[:, keep]) / np.sqrt(values[keep])
        else:
            values, basis = np.linalg.eigh((x.T @ x).toarray())
            keep = values > values.max() * 1e-10
            basis = basis[:, keep]
        self.values = values[keep]
        # lambda P_jj = outside_j + sum_k W_jk^2 lambda / (d_k + lambda), outside_j = 1 - sum_k W_jk^2
        # (the part of item j outside the basis) taken once in float64.
        self.outside = np.clip(1.0 - np.square(basis).sum(axis=1), 0.0, None).astype(np.float32)
        self.basis = np.ascontiguousarray(basis, dtype=np.float32)
        self.squared = np.square(self.basis)

    def scores(self, rows: sp.csr_matrix, regularization: float) -> np.ndarray:
        """Scores (rows x items) of users from their training ``rows`` (rows of the decomposed
        matrix); their own items' scores mean nothing."""
        rest = (regularization / (self.values + regularization)).astype(np.float32)
        denominator = self.outside + self.squared @ rest  # lambda P_jj, in (0, 1]
        projected = np.asarray(rows @ self.basis) * -rest
        return (projected @ self.basis.T) / np.maximum(denominator, 1e-12)


def _ones(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` with every stored value 1 (same pattern, same dtype)."""
    ones = matrix.copy()
    ones.data = np.ones_like(ones.data)
    return ones


def ease_weights(backend: ArrayBackend, user_items: sp.csr_matrix, regularization: float, dtype: np.dtype) -> Any:
    """``B = I - P diag(1 / diag(P))`` with ``P = (X^T X + lambda I)^-1`` and ``diag(B) = 0``, on the backend.

    ``user_items`` is a host CSR matrix; the result is a backend array of ``dtype`` (n_items x n_items).
    """
    xp = backend.xp
    weights = _precision(backend, user_items, regularization, dtype)  # P, overwritten by B
    diagonal = xp.arange(weights.shape[0])
    weights /= -xp.diag(weights).copy()[None, :]  # in place: one dense items x items matrix at a time
    weights[diagonal, diagonal] = 0
    return weights


def _precision(backend: ArrayBackend, user_items: sp.csr_matrix, regularization: float, dtype: np.dtype) -> Any:
    """``P = (X^T X + lambda I)^-1`` (n_items x n_items) on the backend.

    With fewer users than items the Woodbury identity ``P = (I - X^T (X X^T + lambda I)^-1 X) / lambda``
    inverts a users x users matrix instead, and the rest is two sparse-dense products: far cheaper
    than the O(n_items^3) inverse, with the same result up to rounding.
    """
    xp = backend.xp
    n_users, n_items = user_items.shape
    lam = dtype.type(regularization)
    x = backend.csr(user_items, dtype=dtype)
    xt = backend.csr(user_items.T.tocsr(), dtype=dtype)
    if n_users < n_items:
        kernel = (x @ xt).toarray()
        users = xp.arange(n_users)
        kernel[users, users] += lam
        kernel = _spd_inverse(backend, kernel)  # symmetric, so X^T K is (K X)^T
        k_x = xp.ascontiguousarray((xt @ kernel).T)
        del kernel
        precision = xt @ k_x  # X^T K X, dense
        del k_x
        precision *= -1 / lam
        items = xp.arange(n_items)
        precision[items, items] += 1 / lam
        return precision
    gram = (xt @ x).toarray()
    items = xp.arange(n_items)
    gram[items, items] += lam
    return _spd_inverse(backend, gram)


def _spd_inverse(backend: ArrayBackend, matrix: Any) -> Any:
    """Inverse of a symmetric positive definite matrix (which it may overwrite).

    On the CPU, LAPACK ``potrf``/``potri`` (a Cholesky inverse) costs about a third of a general
    inverse; it fills one triangle, mirrored here. CuPy has no ``potri``, and on a GPU the general
    inverse is fast enough.
    """
    if backend.is_gpu:
        return backend.xp.linalg.inv(matrix)
    from scipy.linalg import lapack

    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (matrix,))
    # Fortran-ordered upper triangle of C-ordered ``matrix`` is its lower one: symmetric, same thing.
    factor, info = potrf(matrix.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(
            f"X^T X + lambda I is not positive definite (LAPACK potrf info {info}); raise regularization"
        )
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky inverse failed (LAPACK potri info {info})")
    # Mirror the upper triangle into the lower one, a band of rows at a time (no n x n temporary).
    n = inverse.shape[0]
    band = max(1, 2**22 // max(n, 1))
    for start in range(0, n, band):
        stop = min(start + band, n)
        inverse[start:stop, :start] = inverse[:start, start:stop].T
        square = inverse[start:stop, start:stop]
        square[...] = np.triu(square) + np.triu(square, 1).T
    return inverse.T  # symmetric: the C-ordered view of the same memory

