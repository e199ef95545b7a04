"""The interface every recommender shares.

Models work on contiguous integer indices and a SciPy CSR user x item matrix; mapping raw
ids to indices (and back) is the job of :mod:`pipelines.serving.bundle`. A family implements
``_fit`` and ``_score_block``; ``fit`` (input checks from class flags, popularity, BLAS threads,
timing, logging), ``recommend`` (top-k with seen-item exclusion), ``score`` and the unknown-user
rule are shared here so every family behaves the same.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from pipelines.errors import ModelNotFittedError

if TYPE_CHECKING:
    from pipelines.models.warm_start import WarmStart

log = logging.getLogger(__name__)

# Called after each training iteration or epoch as callback(iteration, loss, metrics), where
# ``metrics`` is None or a dict of validation metrics (e.g. {"ndcg@10": 0.31}) for that epoch.
# Models without a validation metric may call callback(iteration, loss).
IterationCallback = Callable[..., None]


class ModelConfig(BaseModel):
    """Base of every model's hyperparameters. Runtime options (device) sit beside them.

    A subclass lists its runtime options (how to compute, not what: device, threads, block
    sizes) in ``runtime_options`` so :meth:`hyperparameters` can leave them out of run
    comparisons.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    runtime_options: ClassVar[frozenset[str]] = frozenset()

    seed: int = 42
    """Seed of every random draw in fit (see :mod:`pipelines.seeding`)."""

    def hyperparameters(self) -> dict[str, Any]:
        """The fields that define the model (JSON-able), without the runtime options."""
        return self.model_dump(mode="json", exclude=set(self.runtime_options))


class Recommender(ABC):
    """Fit on a CSR matrix of (weighted) interactions, then score and recommend by index."""

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    #: True when fit() cannot work without item content features (content-based models).
    requires_item_features: ClassVar[bool] = False
    #: True when fit() (and score_new_users()) take ``interaction_order``: a CSR matrix with the
    #: pattern of ``train`` whose values are each interaction's 1-based rank in its user's time
    #: order (see :mod:`pipelines.features.order`). The training step passes it only to these
    #: models, so the others keep the plain fit signature.
    uses_interaction_order: ClassVar[bool] = False
    #: Confidence weighting the family was tuned with (WeightingConfig fields), used unless a run sets one.
    preferred_weighting: ClassVar[dict[str, Any]] = {"scheme": "none"}
    #: One line for the README's model table and the trigger form: what the model is for.
    summary: ClassVar[str] = ""
    #: How fit reads the stored values of ``train``: ``weights`` as given (confidences),
    #: ``binary`` (a positive value is an interaction, anything else is not), ``non_negative``
    #: (as given, a negative value is an error).
    input_values: ClassVar[Literal["weights", "binary", "non_negative"]] = "weights"
    #: The float type fit hands ``_fit``.
    train_dtype: ClassVar[str] = "float32"
    #: True when fit uses ``validation`` (early stopping, a choice on held-out data).
    uses_validation: ClassVar[bool] = False
    #: Config fields that fix the shapes of the fitted parameters; a family that names them can
    #: warm start from a previous model agreeing on them (see :mod:`pipelines.models.warm_start`).
    warm_start_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        """Take a config object, keyword hyperparameters, or a config plus overrides.

        Raises pydantic's ValidationError (a ValueError naming the field) for a bad value and
        TypeError for a config of another model family.
        """
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        if config is None:
            config = self.config_class(**params)
        elif params:
            # model_copy(update=...) would skip validation: rebuild so overrides are checked too.
            config = self.config_class(**{**config.model_dump(), **params})
        self.config = config
        self.n_users = 0
        self.n_items = 0
        self.training_loss_: list[float] = []
        self.item_popularity_: np.ndarray | None = None
        self.fit_seconds_ = 0.0

    # -- the fit contract ---------------------------------------------------------
    def fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: sp.csr_matrix | None = None,
        validation: sp.csr_matrix | None = None,
        callback: IterationCallback | None = None,
        warm_start: WarmStart | None = None,
        **family_extras: Any,
    ) -> "Recommender":
        """Fit on ``train`` (users x items); sets ``n_users``, ``n_items``, ``item_popularity_``; returns self.

        The checks every family shares run here, driven by the class flags: ``train`` becomes a
        canonical CSR copy read as ``input_values`` says; ``item_features`` must be present when
        ``requires_item_features``; ``validation`` (users x items, same shape; held-out data for
        early stopping) is checked and binarised for families with ``uses_validation`` and
        ignored by the others; ``interaction_order`` (a CSR matrix with the pattern of ``train``
        whose values are each interaction's 1-based time rank, see :mod:`pipelines.features.order`)
        is the one family extra, taken by ``uses_interaction_order`` families. ``warm_start``
        (a :class:`~pipelines.models.warm_start.WarmStart` from a previous fit of the same family)
        starts shared users and items from that fit's parameters. Then the family's :meth:`_fit`
        runs with BLAS held to the idle cores, timed and logged.
        ``callback(iteration, loss[, metrics])`` follows each iteration or epoch.

        Raises TypeError for a non-sparse ``train`` or an extra the family does not take,
        ValueError for an empty or non-finite ``train`` (naming the cell), ConfigError for missing
        item features, WarmStartError for a warm start the family cannot take (another family,
        other parameter shapes, a family without ``warm_start_fields``), and whatever the family
        raises; a failed fit leaves the model unfitted.
        """
        from pipelines.models import sparse_inputs, threads

        allowed = {"interaction_order"} if self.uses_interaction_order else set()
        unexpected = sorted(set(family_extras) - allowed)
        if unexpected:
            raise TypeError(f"{type(self).__name__}.fit() got unexpected keyword argument(s) {unexpected}")
        matrix = sparse_inputs.checked_train(train, self.name, self.input_values, self.train_dtype)
        if self.requires_item_features:
            sparse_inputs.require_item_features(item_features, self.name)
        held_out = sparse_inputs.checked_validation(validation, matrix.shape, self.name) if self.uses_validation else None
        if warm_start is not None:
            warm_start.check(self, matrix.shape)
            family_extras["warm_start"] = warm_start
            log.info("%s warm start from %s: %s", self.name, warm_start.source or "a previous fit", warm_start.summary())
        # Sizes are set first so a family can score while it trains (validation); a failure
        # leaves the model unfitted.
        self.n_users, self.n_items = matrix.shape
        self.item_popularity_ = item_popularity(matrix)
        started = time.perf_counter()
        try:
            with threads.blas_threads():
                self._fit(matrix, item_features=item_features, validation=held_out, callback=callback, **family_extras)
        except BaseException:
            self.n_users = self.n_items = 0
            raise
        self.fit_seconds_ = time.perf_counter() - started
        details = "".join(f", {key} {value:g}" if isinstance(value, float) else f", {key} {value}"
                          for key, value in self.fitted_params().items())
        log.info(
            "fit %s (%d users x %d items, %d interactions, %d iterations%s) in %.2fs",
            self.name, *matrix.shape, matrix.nnz, len(self.training_loss_), details, self.fit_seconds_,
        )
        return self

    def fitted_params(self) -> dict[str, Any]:
        """Choices fit made from the data (e.g. a regularization chosen on validation), JSON-able.

        Empty for families that choose nothing; training logs these beside the config.
        """
        return {}

    # -- to implement -------------------------------------------------------------
    def _fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: sp.csr_matrix | None,
        validation: sp.csr_matrix | None,
        callback: IterationCallback | None,
        **family_extras: Any,
    ) -> None:
        """Learn from the checked ``train``; :meth:`fit` documents the arguments.

        ``train`` is a canonical CSR copy the family may keep; ``validation`` is None or binary
        positives of the same shape (families with ``uses_validation``); ``warm_start`` comes
        only to families with ``warm_start_fields``, already checked. ``n_users``, ``n_items``
        and ``item_popularity_`` are already set.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither _fit nor fit")

    @abstractmethod
    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        """Dense float scores, shape (len(user_idx), n_items), for known user indices."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Arrays that define the fitted model (saved with ``np.savez``)."""

    @abstractmethod
    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore from what :meth:`_state` returned."""

    # -- shared -------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.n_items > 0

    def _dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """``(user_factors, item_factors, item_bias or None)`` when this family's scores are
        exactly ``user_factors @ item_factors.T (+ item_bias)``: :meth:`recommend` then ranks
        with :func:`~pipelines.compute.topk.top_k_dot` (no users x items block). None otherwise."""
        return None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise ModelNotFittedError(f"{type(self).__name__} must be fit() before scoring")

    def score(self, user_idx: np.ndarray | list[int], item_idx: np.ndarray | None = None) -> np.ndarray:
        """Scores for users (rows) and items (columns; all items when ``item_idx`` is None).

        Users outside ``[0, n_users)`` are unknown: their rows are filled with
        :meth:`_unknown_user_scores` (popularity for most models).
        """
        self._check_fitted()
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        scores = np.empty((len(users), self.n_items), dtype=np.float32)
        known = (users >= 0) & (users < self.n_users)
        if known.any():
            scores[known] = self._score_block(users[known])
        if (~known).any():
            scores[~known] = self._unknown_user_scores()
        if item_idx is not None:
            scores = scores[:, np.asarray(item_idx, dtype=np.int64)]
        return scores

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Scores for users absent from training, described only by their seed items.

        ``seen`` has one row per new user over the model's items (n_new x n_items). Models
        that can fold a user in (factor models solve for the user vector, item-item models
        multiply by their similarity, content models average item profiles) override this;
        the default is popularity for everyone.
        """
        self._check_fitted()
        return np.tile(self._unknown_user_scores(), (seen.shape[0], 1))

    def add_items(self, item_features: sp.csr_matrix) -> np.ndarray:
        """Make new items (rows of content features, fit-time columns) recommendable.

        Content-based models override this: a new item with metadata gets a profile and is
        scored like the others. Returns the new items' indices (appended after the existing
        ones). The default raises NotImplementedError: other models cannot score an item that
        had no interactions at fit time.
        """
        raise NotImplementedError(
            f"model {self.name!r} cannot add items after fit; only content-based models "
            "(requires_item_features) score new items from their metadata"
        )

    def _unknown_user_scores(self) -> np.ndarray:
        """Scores for a user the model never saw: item popularity learnt at fit time."""
        pop = getattr(self, "item_popularity_", None)
        if pop is None:
            return np.zeros(self.n_items, dtype=np.float32)
        return pop.astype(np.float32)

    def _item_only_scores(self) -> np.ndarray | None:
        """Per-item scores when every known user gets the same ones (popularity), else None.

        A model that returns them is ranked by :func:`pipelines.compute.topk.top_k_items`: one
        global ranking, no users x items block.
        """
        return None

    def recommend(
        self,
        user_idx: np.ndarray | list[int],
        k: int = 10,
        exclude: sp.csr_matrix | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per user, best first.

        ``exclude`` is a users x items CSR matrix (usually the training matrix): its non-zero
        items are never recommended to that user. Unknown users get the popular items.
        When fewer than ``k`` items remain, missing slots hold index -1 and score -inf.
        Users are scored ``batch_size`` at a time (default: blocks of about
        :data:`pipelines.compute.topk.BLOCK_BYTES`) and ranked by the shared top-K
        (:mod:`pipelines.compute.topk`), which also fixes the order of tied scores.
        """
        from pipelines.compute.topk import block_rows, top_k, top_k_dot, top_k_items

        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        items_out = np.full((len(users), k), -1, dtype=np.int64)
        scores_out = np.full((len(users), k), -np.inf, dtype=np.float32)
        known = (users >= 0) & (users < self.n_users)
        if (~known).any():
            # Unknown users: nothing to exclude (exclude is indexed by known users).
            rows = np.flatnonzero(~known)
            items_out[rows], scores_out[rows] = top_k_items(self._unknown_user_scores(), k, len(rows))
        rows = np.flatnonzero(known)
        if len(rows) == 0:
            return items_out, scores_out
        if exclude is not None:
            exclude = sp.csr_matrix(exclude)
            if exclude.shape[1] != self.n_items:
                raise ValueError(f"exclude has {exclude.shape[1]} columns, the model {self.n_items} items")
        shared = self._item_only_scores()
        if shared is not None:
            seen = _rows_of(exclude, users[rows], self.n_items)
            items_out[rows], scores_out[rows] = top_k_items(shared, k, len(rows), exclude=seen)
            return items_out, scores_out
        dot = self._dot_factors()
        if dot is not None:  # scores = U V^T (+ b): product and ranking fused per thread
            user_factors, item_factors, item_bias = dot
            step = batch_size or _DOT_USERS_PER_CALL
            for start in range(0, len(rows), step):
                block = rows[start : start + step]
                items_out[block], scores_out[block] = top_k_dot(
                    user_factors[users[block]], item_factors, k,
                    exclude=_rows_of(exclude, users[block], self.n_items), item_bias=item_bias,
                )
            return items_out, scores_out
        step = batch_size or block_rows(self.n_items)
        for start in range(0, len(rows), step):
            block = rows[start : start + step]
            scores = self._score_block(users[block])
            if scores.dtype != np.float32 or not scores.flags.owndata or not scores.flags.writeable:
                scores = np.array(scores, dtype=np.float32)  # top_k writes -inf into it
            seen = _rows_of(exclude, users[block], self.n_items)
            items_out[block], scores_out[block] = top_k(scores, k, exclude=seen)
        return items_out, scores_out

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model to folder ``path`` (config JSON + arrays); returns the folder."""
        self._check_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "config": self.config.model_dump(mode="json"),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "training_loss": self.training_loss_,
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        state = dict(self._state())
        if getattr(self, "item_popularity_", None) is not None and "item_popularity_" not in state:
            state["item_popularity_"] = self.item_popularity_
        np.savez(folder / "state.npz", **state)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> "Recommender":
        """Load a model saved by :meth:`save` (use :func:`pipelines.models.load_model` for any family)."""
        folder = Path(path)
        meta = json.loads((folder / "model.json").read_text())
        if meta["name"] != cls.name:
            raise ValueError(f"{folder} holds a {meta['name']!r} model, not {cls.name!r}")
        model = cls(cls.config_class(**meta["config"]))
        model.n_users, model.n_items = meta["n_users"], meta["n_items"]
        model.training_loss_ = list(meta.get("training_loss", []))
        with np.load(folder / "state.npz", allow_pickle=False) as data:
            state = {key: data[key] for key in data.files}
        if "item_popularity_" in state:
            model.item_popularity_ = state["item_popularity_"]
        model._load_state(state)
        return model


def item_popularity(train: sp.csr_matrix) -> np.ndarray:
    """Number of users who interacted with each item, as float32 (the unknown-user fallback)."""
    return np.asarray((train > 0).sum(axis=0), dtype=np.float32).ravel()


#: Users per :func:`~pipelines.compute.topk.top_k_dot` call in :meth:`Recommender.recommend`
#: (bounds the gathered user factors and the exclusion rows held at once).
_DOT_USERS_PER_CALL = 65_536


def _rows_of(exclude: sp.csr_matrix | None, users: np.ndarray, n_items: int) -> sp.csr_matrix | None:
    """The rows of ``exclude`` for ``users`` (empty rows past its last row), or None."""
    if exclude is None:
        return None
    inside = users < exclude.shape[0]
    if inside.all():
        return exclude[users]
    picked = exclude[np.where(inside, users, 0)]
    return (sp.diags(inside.astype(np.float32)) @ picked).tocsr()
