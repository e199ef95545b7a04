"""Non-negative matrix factorization of the interaction matrix, with scikit-learn's NMF.

``X ~ W H`` with non-negative user factors ``W`` and item factors ``H``; unstored cells count as
zeros, so (like PureSVD) it ranks rather than predicts ratings. Non-negativity makes the factors
additive "parts" (a user is a mix of tastes), often easier to read than SVD's. A new user is
folded in by solving for their ``w`` with ``H`` fixed (scikit-learn's ``transform``).

scikit-learn reports no per-iteration loss, so the callback hears once, at the end, with the
final reconstruction error.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines.models.base import IterationCallback, ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_non_negative, check_seen

log = logging.getLogger(__name__)


class NmfConfig(ModelConfig):
    """Hyperparameters of :class:`NmfRecommender` (scikit-learn's ``NMF`` with ``solver="cd"``).
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    factors: int = Field(64, ge=1, le=2048)
    """Components (``n_components``)."""
    alpha_W: float = Field(0.005, ge=0.0, le=1e6, allow_inf_nan=False)
    """Regularization of the user factors ``W`` (scikit-learn scales it by ``n_items``)."""
    alpha_H: float | None = Field(None, ge=0.0, le=1e6, allow_inf_nan=False)
    """Regularization of the item factors ``H`` (scaled by ``n_users``); None: the same as ``alpha_W``."""
    l1_ratio: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Mix of the penalty: 0 is pure L2 (dense factors), 1 pure L1 (sparse factors)."""
    init: Literal["nndsvd", "nndsvda", "nndsvdar", "random"] = "nndsvda"
    """Initialization: SVD-based (``nndsvd*``, deterministic) or seeded random."""
    max_iter: int = Field(400, ge=1, le=100_000)
    """Most coordinate-descent passes (fewer when ``tol`` is met)."""
    tol: float = Field(1e-4, gt=0.0, le=1.0, allow_inf_nan=False)
    """Stopping tolerance on the relative change of the projected gradient."""


class NmfRecommender(Recommender):
    """Scores are ``user_factors_ @ item_factors_.T`` (``W`` and ``H^T``, both non-negative).

    After :meth:`fit`: ``user_factors_`` (n_users x factors), ``item_factors_`` (n_items x
    factors), ``item_popularity_`` and ``training_loss_`` (one value: the final reconstruction
    error ``|X - W H|_F``).
    """

    name: ClassVar[str] = "nmf"
    summary: ClassVar[str] = "Non-negative matrix factorization (scikit-learn); additive, interpretable taste factors"
    config_class: ClassVar[type[ModelConfig]] = NmfConfig
    config: NmfConfig

    input_values: ClassVar[str] = "non_negative"
    user_factors_: np.ndarray | None = None
    item_factors_: np.ndarray | None = None
    n_iter_ = 0

    def _fit(self, train: sp.csr_matrix, *, callback: IterationCallback | None, **unused: Any) -> None:
        """Factorize ``train`` (non-negative, weighted upstream). ``callback`` is called once, after
        the last iteration, as ``(last_iteration, reconstruction_error)``. Raises ValueError for
        ``factors`` above ``min(n_users, n_items)`` with an SVD-based ``init``."""
        from sklearn.exceptions import ConvergenceWarning

        cfg = self.config
        n_users, n_items = train.shape
        if cfg.init != "random" and cfg.factors > min(n_users, n_items):
            raise ValueError(
                f"factors must be at most min(n_users, n_items) = {min(n_users, n_items)} with "
                f"init={cfg.init!r} ({n_users} x {n_items} training matrix), got {cfg.factors}; "
                "lower factors or use init='random'"
            )
        nmf = self._estimator()
        with warnings.catch_warnings():
            # Reaching max_iter is reported below, once, naming the parameter to raise.
            warnings.simplefilter("ignore", ConvergenceWarning)
            user_factors = nmf.fit_transform(train)
        self.n_iter_ = int(nmf.n_iter_)
        if self.n_iter_ >= cfg.max_iter:
            log.warning(
                "nmf stopped at max_iter=%d before reaching tol=%g; raise max_iter to converge", cfg.max_iter, cfg.tol
            )
        self.user_factors_ = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(nmf.components_.T, dtype=np.float32)
        self.training_loss_ = [float(nmf.reconstruction_err_)]
        if callback is not None:
            callback(self.n_iter_ - 1, self.training_loss_[0])

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T

    def _dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return self.user_factors_, self.item_factors_, None

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Fold-in: solve for each new user's non-negative factors with the item factors fixed.

        ``seen`` is n_new x n_items, non-negative and weighted as train was. Raises ValueError
        for a negative value.
        """
        self._check_fitted()
        matrix = check_seen(seen, self.n_items)
        check_non_negative(matrix, self.name, name="seen")
        nmf = self._estimator()
        # transform() needs only the fitted item factors; rebuild the estimator around them.
        nmf.components_ = np.ascontiguousarray(self.item_factors_.T)
        nmf.n_components_ = self.item_factors_.shape[1]
        nmf.n_features_in_ = self.n_items
        users = nmf.transform(matrix).astype(np.float32, copy=False)
        return users @ self.item_factors_.T

    def _estimator(self) -> Any:
        """An unfitted scikit-learn ``NMF`` with this model's hyperparameters."""
        from sklearn.decomposition import NMF

        cfg = self.config
        return NMF(
            n_components=cfg.factors,
            init=cfg.init,
            solver="cd",
            beta_loss="frobenius",
            tol=cfg.tol,
            max_iter=cfg.max_iter,
            random_state=cfg.seed,
            alpha_W=cfg.alpha_W,
            alpha_H="same" if cfg.alpha_H is None else cfg.alpha_H,
            l1_ratio=cfg.l1_ratio,
        )

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors_": self.user_factors_, "item_factors_": self.item_factors_}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors_"]
        self.item_factors_ = state["item_factors_"]
