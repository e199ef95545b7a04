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
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines.compute.backend import ArrayBackend, get_backend
from pipelines.errors import ConfigError
from pipelines.models.base import IterationCallback, ModelConfig, Recommender, item_popularity
from pipelines.models.sparse_inputs import check_seen, check_train, csr_from_state, csr_state

log = logging.getLogger(__name__)


class EaseConfig(ModelConfig):
    """Hyperparameters of :class:`EaseRecommender`, then its runtime options (``seed`` is unused).

    Tuned on MovieLens latest-small (per-user stratified 75/25 split, seed 42, nDCG@10 with
    training items excluded) with binary input (weighting scheme ``none``): nDCG@10 0.401 at
    ``regularization=130``, within 0.002 of that from 100 to 300; weighted inputs do worse. See
    the table in :mod:`tests.models.test_model_ease`.
    """

    regularization: float = Field(130.0, gt=0.0, le=1e9, allow_inf_nan=False)
    """L2 penalty ``lambda`` on ``B``, added to the diagonal of ``X^T X``. It is not scaled by the
    data: larger matrices (more users per item) or larger confidences want a larger value."""
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

    def __init__(self, config: EaseConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.item_weights_: np.ndarray | None = None
        self.user_items_: sp.csr_matrix | None = None
        self.item_popularity_: np.ndarray | None = None

    def fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: sp.csr_matrix | None = None,
        validation: sp.csr_matrix | None = None,
        callback: IterationCallback | None = None,
    ) -> "EaseRecommender":
        """Solve for ``B`` on ``train`` (users x items, weighted upstream); returns self.

        ``item_features``, ``validation`` and ``callback`` are accepted for the shared interface
        and unused: the solution is closed-form, there are no iterations to report. Raises
        TypeError for a non-sparse ``train``, ValueError for an empty matrix or non-finite values,
        ConfigError when the catalogue is larger than ``max_items``.
        """
        cfg = self.config
        user_items = check_train(train, self.name)
        n_users, n_items = user_items.shape
        if n_items > cfg.max_items:
            need_gib = 2 * n_items**2 * np.dtype(cfg.dtype).itemsize / 2**30
            raise ConfigError(
                f"ease needs dense {n_items} x {n_items} matrices (about {need_gib:.1f} GiB) but "
                f"max_items is {cfg.max_items}; raise max_items if the memory is there, or use "
                "itemknn or a factor model (als, svd) for this catalogue"
            )
        backend = get_backend(cfg.device)
        started = time.perf_counter()
        weights = ease_weights(backend, user_items, cfg.regularization, np.dtype(cfg.dtype))
        self.item_weights_ = backend.to_host(weights).astype(np.float32, copy=False)
        del weights
        if not np.isfinite(self.item_weights_).all():
            raise FloatingPointError("EASE produced non-finite weights; raise regularization or use dtype float64")
        self.user_items_ = user_items
        self.item_popularity_ = item_popularity(user_items)
        self.n_users, self.n_items = n_users, n_items
        self.training_loss_ = []
        log.info(
            "fit ease on %s (%d users x %d items, lambda %g) in %.2fs",
            backend.name, n_users, n_items, cfg.regularization, time.perf_counter() - started,
        )
        return self

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_items_[user_idx] @ self.item_weights_)

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Fold-in: ``seen @ B`` for new users' seed items (n_new x n_items, weighted as train was)."""
        self._check_fitted()
        return np.asarray(check_seen(seen, self.n_items) @ self.item_weights_, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_weights_": self.item_weights_, **csr_state(self.user_items_, "user_items_")}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_weights_ = state["item_weights_"]
        self.user_items_ = csr_from_state(state, "user_items_")


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

