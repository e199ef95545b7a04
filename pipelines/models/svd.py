"""PureSVD (Cremonesi, Koren and Turrin 2010): a truncated SVD of the training matrix.

``X ~ U S V^T`` with ``factors`` singular triplets; a user's scores are their training row
projected on the item space and back, ``x_u V V^T``. Unstored cells count as zeros (that is what
makes it a ranking model, not a rating predictor), and a new user is folded in the same way from
their seed items, with no refit. The decomposition is a seeded randomized SVD (Halko, Martinsson
and Tropp 2011) written once against the array backend (:mod:`pipelines.compute.backend`), so it
runs on NumPy/SciPy or CuPy/cupyx.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines import seeding
from pipelines.compute.backend import ArrayBackend, get_backend
from pipelines.models.base import IterationCallback, ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_seen

log = logging.getLogger(__name__)


class SvdConfig(ModelConfig):
    """Hyperparameters of :class:`SvdRecommender`, then its runtime options.
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    factors: int | None = Field(None, ge=1, le=4096)
    """Singular triplets kept; must be below ``min(n_users, n_items)`` of the training matrix.
    None (the default): chosen at fit on a validation carve of the training data among 2 to 256
    (about a factor 1.4 apart, below that minimum), all scored from one decomposition of the
    carve, since a smaller rank is a prefix of a larger one; the value used is ``factors_``. The
    best rank depends on the data (on one planted set 8 factors scored twice what 40 did)."""
    power_iterations: int = Field(6, ge=0, le=50)
    """Subspace (power) iterations of the randomized SVD; more gives singular vectors closer to
    the exact ones at one pass over the data each."""
    oversamples: int = Field(10, ge=0, le=1000)
    """Extra random directions sampled beyond ``factors`` (Halko et al. recommend 5 to 10)."""

    # -- runtime options: how to compute, not what ------------------------------------------
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    """Where to decompose; "gpu" falls back to the CPU with a warning when no usable GPU is present."""

    runtime_options: ClassVar[frozenset[str]] = frozenset({"device"})


class SvdRecommender(Recommender):
    """Scores are ``user_factors_ @ item_factors_.T`` with ``user_factors_ = X V`` (that is ``U S``).

    After :meth:`fit`: ``item_factors_`` (``V``, n_items x factors, orthonormal columns),
    ``user_factors_`` (n_users x factors), ``singular_values_`` (descending) and
    ``item_popularity_``, all float32 host arrays.
    """

    name: ClassVar[str] = "svd"
    summary: ClassVar[str] = (
        "PureSVD: truncated SVD of the interaction matrix; fast, deterministic factor baseline, CPU or GPU"
    )
    config_class: ClassVar[type[ModelConfig]] = SvdConfig
    config: SvdConfig

    user_factors_: np.ndarray | None = None
    item_factors_: np.ndarray | None = None
    singular_values_: np.ndarray | None = None
    factors_: int | None = None

    def _fit(self, train: sp.csr_matrix, *, callback: IterationCallback | None, **unused: Any) -> None:
        """Decompose ``train`` (weighted upstream). ``callback`` is called once with ``(0, loss)``,
        loss being the share of the squared Frobenius norm the kept factors leave unexplained.
        Raises ValueError for ``factors`` not below ``min(n_users, n_items)``."""
        cfg = self.config
        n_users, n_items = train.shape
        if cfg.factors is not None and cfg.factors >= min(n_users, n_items):
            raise ValueError(
                f"factors must be below min(n_users, n_items) = {min(n_users, n_items)} for this "
                f"training matrix ({n_users} x {n_items}), got {cfg.factors}"
            )
        backend = get_backend(cfg.device)
        self.factors_ = cfg.factors if cfg.factors is not None else choose_factors(cfg, backend, train)
        item_factors, singular_values = randomized_svd(
            backend, train, self.factors_, cfg.oversamples, cfg.power_iterations, seeding.rng(cfg.seed)
        )
        self.item_factors_ = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.singular_values_ = singular_values.astype(np.float32)
        self.user_factors_ = np.asarray(train @ self.item_factors_, dtype=np.float32)
        total = float(np.square(train.data, dtype=np.float64).sum())
        kept = float(np.square(self.singular_values_, dtype=np.float64).sum())
        self.training_loss_ = [max(0.0, 1.0 - kept / total)]
        if callback is not None:
            callback(0, self.training_loss_[0])

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T

    def _dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return self.user_factors_, self.item_factors_, None

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Fold-in: ``seen @ V @ V^T`` for new users' seed items (n_new x n_items, weighted as train was)."""
        self._check_fitted()
        projected = np.asarray(check_seen(seen, self.n_items) @ self.item_factors_)
        return projected @ self.item_factors_.T

    def fitted_params(self) -> dict[str, Any]:
        """The rank used (chosen on validation when the config leaves it None)."""
        return {"factors": self.factors_}

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors_": self.user_factors_,
            "item_factors_": self.item_factors_,
            "singular_values_": self.singular_values_,
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors_"]
        self.item_factors_ = state["item_factors_"]
        self.singular_values_ = state["singular_values_"]
        self.factors_ = int(self.item_factors_.shape[1])


#: Ranks :func:`choose_factors` tries (those below min(n_users, n_items) of the carve).
_CANDIDATE_FACTORS = (2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256)
#: Share of each user's items held out, and most validation users scored, for the choice.
_CARVE_FRACTION = 0.2
_VALIDATION_USERS = 2_000
#: Rank used when nobody has two items to validate on.
_FALLBACK_FACTORS = 16


def choose_factors(cfg: SvdConfig, backend: ArrayBackend, train: sp.csr_matrix) -> int:
    """The rank with the best validation nDCG@10 on a seeded carve of ``train``.

    One randomized SVD of the carve at the largest candidate rank serves every candidate: the
    top-``k`` singular vectors are the first ``k`` of the larger decomposition. Users' held-out
    items are scored by ``x_u V_k V_k^T`` (their kept items excluded), as the refit scores.
    """
    from pipelines.models.validation import split_for_early_stopping, validation_ndcg

    limit = min(train.shape) - 1
    candidates = [k for k in _CANDIDATE_FACTORS if k <= limit]
    if not candidates:
        return max(1, limit)
    kept, validation = split_for_early_stopping(
        train, None, _CARVE_FRACTION, _VALIDATION_USERS, seeding.rng(cfg.seed), train.data > 0
    )
    if validation is None:
        return min(_FALLBACK_FACTORS, candidates[-1])
    item_factors, _ = randomized_svd(
        backend, kept, candidates[-1], cfg.oversamples, cfg.power_iterations, seeding.rng(cfg.seed)
    )
    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    # Validation users projected once at the largest rank; a smaller rank uses its first columns.
    projected = np.asarray(kept[validation.users] @ item_factors)
    measured = {}
    for k in candidates:
        measured[k] = validation_ndcg(
            lambda rows: projected[np.searchsorted(validation.users, rows), :k] @ item_factors[:, :k].T, validation
        )
    best = max(candidates, key=lambda k: (measured[k], -k))  # ties: the smaller rank
    log.info(
        "svd: %d factors chosen on validation (nDCG@10 by rank %s)", best, {k: round(v, 4) for k, v in measured.items()}
    )
    return best


def randomized_svd(
    backend: ArrayBackend,
    matrix: sp.csr_matrix,
    rank: int,
    oversamples: int,
    power_iterations: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` right singular vectors (n_cols x rank) and singular values of ``matrix``.

    Halko et al.'s randomized range finder with ``power_iterations`` QR-stabilised subspace
    iterations, computed on ``backend`` in float32 and returned as host arrays. The Gaussian test
    matrix is drawn on the host from ``rng`` so CPU and GPU start from the same one.
    """
    xp = backend.xp
    n_rows, n_cols = matrix.shape
    width = min(rank + oversamples, n_rows, n_cols)
    x = backend.csr(matrix, dtype=np.float32)
    xt = backend.csr(matrix.T.tocsr(), dtype=np.float32)
    test = backend.asarray(rng.standard_normal((n_cols, width), dtype=np.float32))
    basis, _ = xp.linalg.qr(x @ test)  # orthonormal basis of the range of X (n_rows x width)
    for _ in range(power_iterations):
        item_basis, _ = xp.linalg.qr(xt @ basis)
        basis, _ = xp.linalg.qr(x @ item_basis)
    small = (xt @ basis).T  # Q^T X, width x n_cols
    _, singular_values, right = xp.linalg.svd(small, full_matrices=False)
    return backend.to_host(right[:rank].T), backend.to_host(singular_values[:rank])
