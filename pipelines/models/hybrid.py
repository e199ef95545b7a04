"""Hybrid recommender: a collaborative model blended with the content model, per-user z-scores.

``score = w * z(collaborative) + (1 - w) * z(content)``, each score standardised per user (over
the items it covers) so neither scale dominates. The collaborative part is any registered
family that learns from interactions alone (``base``: ALS by default, EASE, item2vec, ...),
built through :func:`pipelines.models.create_model`; the content part is
:class:`pipelines.models.content.ContentRecommender`.

Cold items, with no training interactions or added after fit (:meth:`HybridRecommender.add_items`),
have no meaningful collaborative score: theirs is set to the user's average (z = 0), so they
rank by content alone among items the collaborative model is neutral about.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator, model_validator

from pipelines.models.base import IterationCallback, ModelConfig, Recommender
from pipelines.models.content import ContentConfig, ContentRecommender, item_profiles
from pipelines.models.sparse_inputs import check_seen


class HybridConfig(ModelConfig):
    """Hyperparameters of :class:`HybridRecommender`.
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    base: str = "als"
    """The collaborative family (any registered model that needs no item features)."""
    base_params: dict[str, Any] = Field(default_factory=dict)
    """Hyperparameters of ``base`` (validated by its own config)."""
    content_params: dict[str, Any] = Field(
        default_factory=lambda: {"user_profile": "ridge", "popularity_exponent": 0.0}
    )
    """Hyperparameters of the content part (:class:`~pipelines.models.content.ContentConfig`).
    By default ridge profiles (a far better content signal than the mean profile's cosine) and
    no popularity prior: the collaborative part already knows popularity."""
    collab_weight: float = Field(0.8, ge=0.0, le=1.0, allow_inf_nan=False)
    """``w``: the collaborative z-score's share of the blend (1 = the base model alone)."""

    @field_validator("base")
    @classmethod
    def _base_is_collaborative(cls, value: str) -> str:
        from pipelines.models import model_class

        if model_class(value).requires_item_features:  # raises UnknownModelError (a ValueError)
            raise ValueError(f"base must be a collaborative model (no item features), got {value!r}")
        return value

    @field_validator("content_params")
    @classmethod
    def _content_params_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        ContentConfig(**value)  # ValidationError names the field
        return value

    @model_validator(mode="after")
    def _base_params_valid(self) -> "HybridConfig":
        from pipelines.models import create_model

        create_model(self.base, self.base_params)  # ConfigError names the model and parameter
        return self


class HybridRecommender(Recommender):
    """Per-user standardised blend of a collaborative model and the content model.

    After :meth:`fit`: ``base_`` (the fitted collaborative model), ``content_`` (the fitted
    :class:`ContentRecommender`), ``warm_`` (bool per item: had training interactions) and
    ``item_popularity_``.
    """

    name: ClassVar[str] = "hybrid"
    summary: ClassVar[str] = (
        "Collaborative model (ALS by default) blended with content; recommends new items from their metadata"
    )
    config_class: ClassVar[type[ModelConfig]] = HybridConfig
    requires_item_features: ClassVar[bool] = True
    #: Forwarded to the base model when it reads time order (item2vec, sequence).
    uses_interaction_order: ClassVar[bool] = True
    config: HybridConfig

    uses_validation: ClassVar[bool] = True  # for the base model
    base_: Recommender | None = None
    content_: ContentRecommender | None = None
    warm_: np.ndarray | None = None

    def _fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: sp.csr_matrix,
        validation: sp.csr_matrix | None,
        callback: IterationCallback | None,
        interaction_order: sp.csr_matrix | None = None,
    ) -> None:
        """Fit the content model, then the base model (``validation``, ``callback`` and, when it
        reads time order, ``interaction_order`` go to the base)."""
        from pipelines.models import create_model

        item_profiles(item_features, train.shape[1], self.name)  # errors name the hybrid
        content = ContentRecommender(ContentConfig(**self.config.content_params))
        content.fit(train, item_features=item_features)
        base = create_model(self.config.base, self.config.base_params)
        extra = {"interaction_order": interaction_order} if base.uses_interaction_order else {}
        base.fit(train, item_features=item_features, validation=validation, callback=callback, **extra)
        self.base_, self.content_ = base, content
        self.warm_ = self.item_popularity_ > 0
        self.training_loss_ = list(base.training_loss_)

    def add_items(self, item_features: sp.csr_matrix) -> np.ndarray:
        """Append items described by content features (fit-time columns); returns their indices.

        They are cold: scored by content, with a neutral collaborative z-score.
        """
        self._check_fitted()
        added = self.content_.add_items(item_features)
        self.item_popularity_ = np.r_[self.item_popularity_, np.zeros(len(added), dtype=np.float32)]
        self.warm_ = np.r_[self.warm_, np.zeros(len(added), dtype=bool)]
        self.n_items = self.content_.n_items
        return added

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        collab = self.base_.score(user_idx)
        content = self.content_.content_scores(self.content_.user_profiles_[user_idx])
        return self._blend(collab, content, np.diff(self.content_.user_profiles_[user_idx].indptr) == 0)

    def score_new_users(
        self, seen: sp.csr_matrix, *, interaction_order: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Fold-in through both parts: the base model's fold-in and the content profile."""
        self._check_fitted()
        matrix = check_seen(seen, self.n_items)
        n_base = self.base_.n_items
        base_seen = matrix[:, :n_base]
        if self.base_.uses_interaction_order:
            order = None if interaction_order is None else sp.csr_matrix(interaction_order)[:, :n_base]
            collab = self.base_.score_new_users(base_seen, interaction_order=order)
        else:
            collab = self.base_.score_new_users(base_seen)
        profiles = self.content_.profiles_of(sp.csr_matrix(matrix, dtype=np.float64))
        scores = self._blend(collab, self.content_.content_scores(profiles), np.diff(profiles.indptr) == 0)
        empty = np.diff(matrix.indptr) == 0
        if empty.any():
            scores[empty] = self._unknown_user_scores()
        return scores

    def _blend(self, collab: np.ndarray, content: np.ndarray, no_profile: np.ndarray) -> np.ndarray:
        """``w z(collab) + (1 - w) z(content)``; cold items get z(collab) = 0."""
        w = self.config.collab_weight
        n_base = collab.shape[1]
        warm = self.warm_[:n_base]
        z_collab = np.zeros(content.shape, dtype=np.float32)
        z_collab[:, :n_base][:, warm] = _standardise(collab[:, warm])
        z_content = _standardise(content)
        z_content[no_profile] = 0.0  # no content profile: the collaborative ranking alone
        return (w * z_collab + (1.0 - w) * z_content).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {"warm_": self.warm_}
        for prefix, model in (("base.", self.base_), ("content.", self.content_)):
            state[f"{prefix}shape"] = np.array([model.n_users, model.n_items], dtype=np.int64)
            state[f"{prefix}item_popularity_"] = model.item_popularity_
            state.update({f"{prefix}{key}": value for key, value in model._state().items()})
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        from pipelines.models import create_model

        self.warm_ = state["warm_"]
        base = create_model(self.config.base, self.config.base_params)
        content = ContentRecommender(ContentConfig(**self.config.content_params))
        for prefix, model in (("base.", base), ("content.", content)):
            sub = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            model.n_users, model.n_items = (int(n) for n in sub.pop("shape"))
            model.item_popularity_ = sub.pop("item_popularity_")
            model._load_state(sub)
        base.training_loss_ = list(self.training_loss_)
        self.base_, self.content_ = base, content


def _standardise(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores (a constant row becomes zeros)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] == 0:
        return scores.astype(np.float32)
    std = scores.std(axis=1, keepdims=True)
    z = (scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    return z.astype(np.float32)
