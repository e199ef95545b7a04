"""Content-based recommender: TF-IDF item profiles, user profiles as their mean, cosine scores.

Item profiles are the rows of the item content features (genres multi-hot | TF-IDF of titles |
TF-IDF of tags, built by :mod:`pipelines.features.content`), L2-normalised. A user's profile is
the (weighted) mean of the profiles of their training items; an item's content score is the
cosine between the two. Content alone ranks poorly on data where taste follows popularity
(nDCG@10 0.009 on MovieLens latest-small, against 0.207 for popularity), so the cosine is
multiplied by a popularity prior ``(1 + users of the item) ** popularity_exponent``; exponent 0
gives the pure content ranking. ``user_profile="ridge"`` replaces the mean profile with a
per-user ridge regression over the item profiles, a much stronger content signal (what the
hybrid model uses).

Because every item with metadata has a profile, the model scores items nobody has interacted
with yet, including items added after fit (:meth:`ContentRecommender.add_items`): the cold-start
path for new items.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines.models.base import ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_seen, csr_from_state, csr_state, require_item_features


class ContentConfig(ModelConfig):
    """Hyperparameters of :class:`ContentRecommender` (``seed`` is unused: it is deterministic).
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    user_profile: Literal["mean", "ridge"] = "mean"
    """``mean``: a user's profile is the mean of their items' profiles and items score by
    cosine. ``ridge``: a per-user ridge regression of the user's interactions (1 for their items,
    0 for all others) on the item profiles; items score by the regression's prediction. Ridge
    learns which features set the user's items apart from the catalog (nDCG@10 0.105 alone on
    MovieLens against 0.009 for the cosine) at the cost of a features x features solve."""
    ridge_lambda: float = Field(10.0, gt=0.0, allow_inf_nan=False)
    """``ridge`` only: the L2 penalty of the regression."""
    min_feature_items: int = Field(2, ge=1)
    """``ridge`` only: features present in fewer items are dropped (a word in one title
    generalises to no other item, and every feature costs the solve)."""
    profile_weighting: Literal["binary", "values"] = "binary"
    """``binary``: a user's profile is the plain mean of their items' profiles. ``values``: the
    mean weighted by the training values (ratings or confidences; negative values push away)."""
    popularity_exponent: float = Field(1.5, ge=0.0, le=4.0, allow_inf_nan=False)
    """Scores are ``cosine * (1 + users of the item) ** popularity_exponent``; 0 = pure content."""
    cold_item_quantile: float = Field(0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    """Items without training interactions (including items added later) get the popularity
    prior of this quantile of the interacted items' popularity, so a new item competes like a
    typical one instead of ranking last (0 = the least popular interacted item)."""


class ContentRecommender(Recommender):
    """Cosine between a user's mean item profile and each item's content profile, times a prior.

    After :meth:`fit`: ``item_profiles_`` (n_items x n_features CSR, unit or zero rows),
    ``user_profiles_`` (n_users x n_features CSR, unit or zero rows), ``item_prior_`` (the
    popularity prior per item) and ``item_popularity_`` (the unknown-user fallback).
    """

    name: ClassVar[str] = "content"
    summary: ClassVar[str] = (
        "Content-based (genres, title and tag TF-IDF) with a popularity prior; recommends new items from their metadata"
    )
    config_class: ClassVar[type[ModelConfig]] = ContentConfig
    requires_item_features: ClassVar[bool] = True
    config: ContentConfig

    train_dtype: ClassVar[str] = "float64"
    item_profiles_: sp.csr_matrix | None = None
    user_profiles_: sp.csr_matrix | None = None
    item_prior_: np.ndarray | None = None
    ridge_features_: np.ndarray | None = None  # ridge: the feature columns kept
    n_fit_items_ = 0  # ridge: items the regression was solved on (added items come after)
    _ridge_factor: Any = None  # Cholesky factor of F^T F + lambda I, rebuilt after load

    def _fit(self, train: sp.csr_matrix, *, item_features: sp.csr_matrix, **unused: Any) -> None:
        """Build item profiles from ``item_features`` (items x features) and user profiles from
        ``train``; no iterations. Raises ValueError when the row count of ``item_features``
        differs from the number of items."""
        profiles = item_profiles(item_features, train.shape[1], self.name)
        self.item_profiles_ = profiles
        self.user_profiles_ = self.profiles_of(train)
        self.item_prior_ = self._prior(self.item_popularity_)
        self.n_fit_items_ = train.shape[1]
        self._ridge_factor = None
        if self.config.user_profile == "ridge":
            items_per_feature = np.diff(profiles.tocsc().indptr)
            self.ridge_features_ = np.flatnonzero(items_per_feature >= self.config.min_feature_items)
            self._ridge()  # factorise now: fit pays for it, not the first request

    def add_items(self, item_features: sp.csr_matrix) -> np.ndarray:
        """Append items described by content features (same columns as at fit); returns their indices.

        New items get a profile, zero popularity (so unknown users still see the popular
        items first) and the cold-item prior. Raises ValueError for a column count that differs
        from the fitted features.
        """
        self._check_fitted()
        new = _as_feature_rows(item_features, self.item_profiles_.shape[1], "item_features")
        start = self.n_items
        self.item_profiles_ = sp.vstack([self.item_profiles_, unit_rows(new)], format="csr")
        self.item_popularity_ = np.r_[self.item_popularity_, np.zeros(new.shape[0], dtype=np.float32)]
        self.item_prior_ = np.r_[self.item_prior_, np.full(new.shape[0], self._cold_prior(), dtype=np.float32)]
        self.n_items += new.shape[0]
        return np.arange(start, self.n_items)

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Fold-in: each new user's profile is the mean of their seed items' profiles."""
        self._check_fitted()
        matrix = check_seen(seen, self.n_items, dtype=np.float64)
        return self._scores(self.profiles_of(matrix))

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self._scores(self.user_profiles_[user_idx])

    def content_scores(self, profiles: sp.csr_matrix) -> np.ndarray:
        """Content match (n_users x n_items) of user ``profiles`` with every item, before the prior.

        ``mean``: the cosine with each item profile. ``ridge``: the prediction of each user's
        ridge regression, ``F (F^T F + lambda I)^-1 F^T b_u`` over the kept features, computed
        from the profile (proportional to ``F^T b_u``; a per-user scale changes no ranking).
        """
        if self.config.user_profile == "mean":
            return np.asarray((profiles @ self.item_profiles_.T).toarray(), dtype=np.float32)
        from scipy.linalg import cho_solve

        kept = self.ridge_features_
        weights = cho_solve(self._ridge(), profiles[:, kept].T.toarray())  # (features, users)
        return np.asarray((self.item_profiles_[:, kept] @ weights).T, dtype=np.float32)

    def _ridge(self) -> Any:
        """The Cholesky factor of ``F^T F + lambda I`` over the fit-time items (built once)."""
        if self._ridge_factor is None:
            from scipy.linalg import cho_factor

            features = self.item_profiles_[: self.n_fit_items_][:, self.ridge_features_]
            gram = (features.T @ features).toarray()
            gram[np.diag_indices_from(gram)] += self.config.ridge_lambda
            self._ridge_factor = cho_factor(gram, lower=True, check_finite=False)
        return self._ridge_factor

    def _scores(self, profiles: sp.csr_matrix) -> np.ndarray:
        scores = self.content_scores(profiles) * self.item_prior_
        # A user without a content profile (no items, or only items without metadata) has
        # nothing to match: give the popular items, as for an unknown user.
        empty = np.diff(profiles.indptr) == 0
        if empty.any():
            scores[empty] = self._unknown_user_scores()
        return scores

    def profiles_of(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """Unit content profiles (users x features) of the users whose rows ``matrix`` holds."""
        weights = matrix.copy()
        if self.config.profile_weighting == "binary":
            weights.data = (weights.data > 0).astype(np.float64)
            weights.eliminate_zeros()
        # The mean and the sum point the same way: normalising the sum gives the unit profile.
        return unit_rows(weights @ self.item_profiles_)

    def _prior(self, popularity: np.ndarray) -> np.ndarray:
        prior = (1.0 + popularity.astype(np.float64)) ** self.config.popularity_exponent
        prior[popularity == 0] = self._cold_prior(popularity)
        return prior.astype(np.float32)

    def _cold_prior(self, popularity: np.ndarray | None = None) -> float:
        popularity = self.item_popularity_ if popularity is None else popularity
        warm = popularity[popularity > 0]
        level = np.quantile(warm, self.config.cold_item_quantile) if len(warm) else 0.0
        return float((1.0 + level) ** self.config.popularity_exponent)

    def _state(self) -> dict[str, np.ndarray]:
        state = {
            **csr_state(self.item_profiles_, "item_profiles_"),
            **csr_state(self.user_profiles_, "user_profiles_"),
            "item_prior_": self.item_prior_,
            "n_fit_items_": np.asarray(self.n_fit_items_, dtype=np.int64),
        }
        if self.ridge_features_ is not None:
            state["ridge_features_"] = self.ridge_features_
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_profiles_ = csr_from_state(state, "item_profiles_")
        self.user_profiles_ = csr_from_state(state, "user_profiles_")
        self.item_prior_ = state["item_prior_"]
        self.n_fit_items_ = int(state["n_fit_items_"])
        self.ridge_features_ = state.get("ridge_features_")
        self._ridge_factor = None  # refactorised on first use: cheaper to store than d x d


def item_profiles(item_features: Any, n_items: int, model: str) -> sp.csr_matrix:
    """L2-normalised float64 CSR rows of ``item_features`` (one per item), checked for ``model``.

    Raises ConfigError when there are no features (None or no columns), TypeError for a
    non-sparse input and ValueError for a row count other than ``n_items`` or non-finite values.
    """
    require_item_features(item_features, model)
    if item_features.shape[0] != n_items:
        raise ValueError(
            f"item_features has {item_features.shape[0]} rows but train has {n_items} items; "
            "row i must describe item_idx i"
        )
    rows = _as_feature_rows(item_features, item_features.shape[1], "item_features")
    return unit_rows(rows)


def _as_feature_rows(features: Any, n_features: int, name: str) -> sp.csr_matrix:
    if not sp.issparse(features):
        raise TypeError(f"{name} must be a SciPy sparse matrix (items x features), got {type(features).__name__}")
    if features.ndim != 2 or features.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} columns (the fitted features), got shape {features.shape}")
    rows = sp.csr_matrix(features, dtype=np.float64, copy=True)
    if not np.isfinite(rows.data).all():
        raise ValueError(f"{name} has non-finite values (NaN or inf)")
    rows.sum_duplicates()
    rows.eliminate_zeros()
    return rows


def unit_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as a float64 CSR matrix."""
    rows = sp.csr_matrix(matrix, dtype=np.float64)
    norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
    scaled = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ rows
    return scaled.tocsr()
