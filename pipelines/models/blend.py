"""Blend: a weighted sum of other families' per-user normalised scores, weights chosen on validation.

``score(u) = sum_m w_m * norm(score_m(u))`` with ``norm`` per-user Borda rank points (or a
z-score) over the catalogue, so no member's scale dominates. The weights are the best point, by
nDCG@k on held-out data, of a grid on the simplex (multiples of ``1 / weight_steps``, summing to
one); the grid's corners are the members alone, so on validation the blend is never worse than
its best member, and a member given weight 0 is dropped. Held-out data is the ``validation``
matrix fit receives, else a seeded per-user carve of train; after a carve, the members kept are
refit on all of train (train + validation).

Cost: every member is fitted twice (once on the carve, once on all of train) and the search
scores ``C(weight_steps + m - 1, m - 1)`` grid points (66 for three members and 10 steps) on at
most ``max_validation_users`` users, each a dense users x items block per member in memory.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator, model_validator

from pipelines.errors import ConfigError
from pipelines.models.base import IterationCallback, ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_seen

log = logging.getLogger(__name__)

#: Members of the default blend; the ``FEATURE_MEMBERS`` join when fit gets item features.
DEFAULT_MEMBERS = ("ease", "als", "itemknn")
FEATURE_MEMBERS = ("hybrid",)

#: Above this many grid points the weight search costs more than fitting the members: refuse.
MAX_GRID_POINTS = 5000


class BlendConfig(ModelConfig):
    """Members and how their weights are chosen; ``seed`` seeds the validation carve and the
    members (unless ``member_params`` sets theirs)."""

    members: tuple[str, ...] | None = None
    """Families blended (registered, each once); the weights choose among them. None: EASE, ALS
    and item-kNN, plus the hybrid (ALS with content) when fit gets item features. A family listed
    here that needs item features makes fit refuse data without them."""
    member_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Hyperparameter overrides per member, e.g. ``{"ease": {"regularization": 300}}``
    (validated by the member's own config); a member not listed keeps its defaults."""
    member_weighting: Literal["preferred", "given"] = "preferred"
    """``preferred``: each member learns from its family's ``preferred_weighting`` applied to the
    values the blend receives (ratings under the blend's own ``raw`` weighting); ``given``: every
    member learns from the matrix exactly as given."""
    normalisation: Literal["rank", "zscore"] = "rank"
    """Per-user score normalisation before weighting: Borda points in [0, 1] (scale-free, so a
    member's heavy-tailed scores cannot dominate) or z-scores."""
    weight_steps: int = Field(10, ge=1, le=100)
    """Grid resolution: weights are multiples of ``1 / weight_steps``."""
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    """Share of each user's training interactions carved for choosing the weights (when fit
    gets no ``validation``)."""
    max_validation_users: int = Field(2000, ge=1)
    """Validation users scored by the search (a seeded sample above it): bounds its memory to
    ``members x max_validation_users x n_items`` floats."""
    k: int = Field(10, ge=1, le=1000)
    """Cut-off of the validation nDCG the weights maximise."""

    # -- runtime options: how to compute, not what ------------------------------------------
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    """Passed to members that have a device option (unless ``member_params`` sets it)."""

    runtime_options: ClassVar[frozenset[str]] = frozenset({"device"})

    @field_validator("members")
    @classmethod
    def _members_known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        from pipelines.models import model_class

        if value is None:
            return value
        if not value:
            raise ValueError("members: at least one family is needed")
        if len(set(value)) != len(value):
            raise ValueError(f"members: each family once, got {list(value)}")
        for name in value:
            model_class(name)  # UnknownModelError (a ValueError) names the allowed ones
            if name == "blend":
                raise ValueError("members: a blend cannot contain a blend")
        return value

    @model_validator(mode="after")
    def _member_params_valid(self) -> "BlendConfig":
        from pipelines.models import create_model

        possible = self.active_members(with_item_features=True)
        extra = sorted(set(self.member_params) - set(possible))
        if extra:
            raise ValueError(f"member_params: {extra} are not members {list(possible)}")
        for name in possible:
            create_model(name, self.member_config(name))  # ConfigError names the family and field
        points = _n_grid_points(self.weight_steps, len(possible))
        if points > MAX_GRID_POINTS:
            raise ValueError(
                f"weight_steps {self.weight_steps} over {len(possible)} members makes {points} grid "
                f"points (at most {MAX_GRID_POINTS}); lower weight_steps or blend fewer members"
            )
        return self

    def active_members(self, with_item_features: bool) -> tuple[str, ...]:
        """The members a fit blends, given whether it has item features."""
        if self.members is not None:
            return self.members
        return DEFAULT_MEMBERS + (FEATURE_MEMBERS if with_item_features else ())

    def member_config(self, name: str) -> dict[str, Any]:
        """Hyperparameters of member ``name``: its overrides, plus the blend's seed and device."""
        from pipelines.models import model_class

        fields = model_class(name).config_class.model_fields
        params = dict(self.member_params.get(name, {}))
        for key in ("seed", "device"):
            if key in fields:
                params.setdefault(key, getattr(self, key))
        return params


class BlendRecommender(Recommender):
    """Weighted per-user normalised scores of members fitted on the same matrix.

    After :meth:`fit`: ``member_names_`` (the members blended), ``weights_`` (one per member,
    summing to 1), ``members_``
    (name -> fitted model, the members with a positive weight), ``validation_ndcg_`` (name ->
    each member's validation nDCG alone, plus ``"blend"``) and ``item_popularity_``.
    """

    name: ClassVar[str] = "blend"
    summary: ClassVar[str] = (
        "Weighted blend of other families (EASE, ALS, item-kNN, hybrid with metadata), weights chosen on validation"
    )
    config_class: ClassVar[type[ModelConfig]] = BlendConfig
    # Members weight their own input (member_weighting="preferred"): they need the stored values.
    preferred_weighting: ClassVar[dict[str, Any]] = {"scheme": "raw"}
    uses_interaction_order: ClassVar[bool] = True
    uses_validation: ClassVar[bool] = True
    config: BlendConfig

    def __init__(self, config: BlendConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.member_names_: tuple[str, ...] = ()
        self.weights_: np.ndarray | None = None
        self.members_: dict[str, Recommender] = {}
        self.validation_ndcg_: dict[str, float] = {}

    def _fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: sp.csr_matrix | None,
        validation: sp.csr_matrix | None,
        callback: IterationCallback | None,
        interaction_order: sp.csr_matrix | None = None,
    ) -> None:
        """Choose the weights on held-out data, then keep (or refit) the members.

        ``validation`` (same shape as ``train``) is the held-out data when it has entries;
        otherwise ``validation_fraction`` of each user's rows is carved from ``train`` (seeded)
        and the chosen members are refit on all of ``train``. ``interaction_order`` goes to the
        members that read time order; ``callback`` is not called (members' losses are not one
        curve). Raises ValueError for a bad ``train``, ConfigError when a listed member needs
        the ``item_features`` fit did not get, and whatever a member raises.
        """
        from pipelines.models import model_class
        from pipelines.tuning.validation import carve_validation, restrict_order

        cfg = self.config
        matrix = train
        names = cfg.active_members(with_item_features=item_features is not None)
        needy = [name for name in names if model_class(name).requires_item_features]
        if needy and item_features is None:
            raise ConfigError(f"blend members {needy} need item features, and fit got none")
        given = validation is not None and validation.nnz > 0
        if given:
            fit_part, held_out = matrix, validation
            order_part = interaction_order
        else:
            fit_part, held_out = carve_validation(matrix, cfg.validation_fraction, cfg.seed)
            fit_part.eliminate_zeros()
            order_part = restrict_order(interaction_order, fit_part)
        users = self._validation_users(held_out)
        relevant = held_out[users]
        seen = fit_part[users]

        normalised: list[np.ndarray] = []
        fitted: dict[str, Recommender] = {}
        self.validation_ndcg_ = {}
        for name in names:
            member = self._fit_member(name, fit_part, item_features, order_part)
            block = _normalise(member.score(users), cfg.normalisation)
            self.validation_ndcg_[name] = _validation_ndcg(block, seen, relevant, cfg.k)
            normalised.append(block)
            if given:
                fitted[name] = member
        weights, best = _search_weights(normalised, seen, relevant, cfg.k, cfg.weight_steps)
        del normalised
        self.validation_ndcg_["blend"] = best
        chosen = [name for name, w in zip(names, weights, strict=True) if w > 0]
        if not given:  # refit on train + validation: the chosen members learn from everything but test
            fitted = {name: self._fit_member(name, matrix, item_features, interaction_order) for name in chosen}
        self.members_ = {name: fitted[name] for name in chosen}
        self.member_names_, self.weights_ = names, weights
        self.training_loss_ = []
        log.info(
            "blend weights %s (validation nDCG@%d %.4f; members alone %s)",
            dict(zip(names, np.round(weights, 3).tolist(), strict=True)), cfg.k, best,
            {name: round(self.validation_ndcg_[name], 4) for name in names},
        )
        return self

    def fitted_params(self) -> dict[str, Any]:
        """The weights chosen on validation and each member's validation nDCG (alone, and the blend's)."""
        if self.weights_ is None:
            return {}
        return {
            "weights": {n: round(float(w), 4) for n, w in zip(self.member_names_, self.weights_, strict=True)},
            f"validation_ndcg@{self.config.k}": {n: round(v, 4) for n, v in self.validation_ndcg_.items()},
        }

    def _validation_users(self, held_out: sp.csr_matrix) -> np.ndarray:
        """Users with held-out rows, a seeded sample of ``max_validation_users`` when more."""
        from pipelines.seeding import rng

        users = np.flatnonzero(np.diff(held_out.indptr) > 0)
        if len(users) == 0:
            raise ValueError(f"{self.name}: the validation data has no interactions to choose weights on")
        cap = self.config.max_validation_users
        if len(users) > cap:
            users = np.sort(rng(self.config.seed).choice(users, size=cap, replace=False))
        return users

    def _fit_member(
        self,
        name: str,
        matrix: sp.csr_matrix,
        item_features: sp.csr_matrix | None,
        interaction_order: sp.csr_matrix | None,
    ) -> Recommender:
        from pipelines.features.weighting import WeightingConfig, apply_weighting
        from pipelines.models import create_model

        member = create_model(name, self.config.member_config(name))
        if self.config.member_weighting == "preferred":
            matrix = apply_weighting(matrix, WeightingConfig(**member.preferred_weighting))
        extra = {"interaction_order": interaction_order} if member.uses_interaction_order else {}
        return member.fit(matrix, item_features=item_features, **extra)

    def _blend(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        total = None
        for name, weight in zip(self.member_names_, self.weights_, strict=True):
            if weight > 0:
                part = weight * _normalise(blocks[name], self.config.normalisation)
                total = part if total is None else total + part
        return total.astype(np.float32)

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self._blend({name: member.score(user_idx) for name, member in self.members_.items()})

    def score_new_users(
        self, seen: sp.csr_matrix, *, interaction_order: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Each member's fold-in (popularity for members without one) of ``seen`` weighted as its
        training input was, blended like known users."""
        from pipelines.features.weighting import WeightingConfig, apply_weighting

        self._check_fitted()
        matrix = check_seen(seen, self.n_items)
        blocks = {}
        for name, member in self.members_.items():
            member_seen = matrix
            if self.config.member_weighting == "preferred" and matrix.nnz:
                member_seen = apply_weighting(matrix, WeightingConfig(**member.preferred_weighting))
            if member.uses_interaction_order:
                blocks[name] = member.score_new_users(member_seen, interaction_order=interaction_order)
            else:
                blocks[name] = member.score_new_users(member_seen)
        scores = self._blend(blocks)
        empty = np.diff(matrix.indptr) == 0
        if empty.any():
            scores[empty] = self._unknown_user_scores()
        return scores

    # -- persistence: each kept member's arrays under "<name>." ------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        names = [*self.member_names_, "blend"]
        state: dict[str, np.ndarray] = {
            "member_names_": np.array(self.member_names_, dtype=str),
            "weights_": self.weights_,
            "validation_ndcg_": np.array([self.validation_ndcg_.get(n, np.nan) for n in names]),
        }
        for name, member in self.members_.items():
            state[f"{name}.shape"] = np.array([member.n_users, member.n_items], dtype=np.int64)
            if getattr(member, "item_popularity_", None) is not None:
                state[f"{name}.item_popularity_"] = member.item_popularity_
            state.update({f"{name}.{key}": value for key, value in member._state().items()})
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        from pipelines.models import create_model

        cfg = self.config
        self.member_names_ = tuple(str(name) for name in state["member_names_"])
        self.weights_ = state["weights_"]
        self.validation_ndcg_ = {
            name: float(value)
            for name, value in zip([*self.member_names_, "blend"], state["validation_ndcg_"], strict=True)
        }
        self.members_ = {}
        for name, weight in zip(self.member_names_, self.weights_, strict=True):
            if weight <= 0:
                continue
            member = create_model(name, cfg.member_config(name))
            sub = {key[len(name) + 1 :]: value for key, value in state.items() if key.startswith(f"{name}.")}
            member.n_users, member.n_items = (int(n) for n in sub.pop("shape"))
            if "item_popularity_" in sub:
                member.item_popularity_ = sub.pop("item_popularity_")
            member._load_state(sub)
            self.members_[name] = member


def _normalise(scores: np.ndarray, how: str) -> np.ndarray:
    """Per-row z-scores, or Borda points (best item 1, worst 0), as float32.

    Non-finite scores (an item a member cannot rank) get the row's lowest normalised value.
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    if not finite.all():
        low = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
        scores = np.where(finite, scores, np.where(np.isfinite(low), low, 0.0))
    if how == "rank":
        order = np.argsort(scores, axis=1, kind="stable")
        points = np.empty(scores.shape, dtype=np.float32)
        steps = np.arange(scores.shape[1], dtype=np.float32) / max(scores.shape[1] - 1, 1)
        np.put_along_axis(points, order, np.broadcast_to(steps, scores.shape), axis=1)
        return points
    std = scores.std(axis=1, keepdims=True)
    return ((scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest scores, best first (-1 where a score is -inf)."""
    k_eff = min(k, scores.shape[1])
    top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable"), axis=1)
    return np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, -1)


def _validation_ndcg(scores: np.ndarray, seen: sp.csr_matrix, relevant: sp.csr_matrix, k: int) -> float:
    """nDCG@k of the top-k of ``scores`` (users x items) with ``seen`` items excluded."""
    from pipelines.evaluation.metrics import ranking_metrics

    masked = np.array(scores, dtype=np.float32, copy=True)
    coo = seen.tocoo()
    masked[coo.row, coo.col] = -np.inf
    return float(ranking_metrics(_top_k(masked, k), relevant, k, masked.shape[1])[f"ndcg@{k}"])


def _simplex_grid(steps: int, n: int) -> list[np.ndarray]:
    """Every weight vector of ``n`` non-negative multiples of ``1 / steps`` summing to 1,
    members alone first, then by how many members they use (fewer first)."""
    # Stars and bars: n - 1 bars among steps + n - 1 slots; the gaps are the parts.
    points = [
        np.diff(np.r_[-1, bars, steps + n - 1]) - 1 for bars in itertools.combinations(range(steps + n - 1), n - 1)
    ]
    points.sort(key=lambda p: (int((p > 0).sum()), tuple(-p)))
    return [p / steps for p in points]


def _n_grid_points(steps: int, n: int) -> int:
    from math import comb

    return comb(steps + n - 1, n - 1)


class _Candidates:
    """The weight search on each user's short list: the union of every member's top ``depth``.

    An item outside every member's top ``depth`` scores at most ``sum_m w_m t_m`` in the blend
    (``t_m`` a member's best score outside its list), so when a user's k-th best listed item
    scores at least that, its blended top-k lies in the list; other users are ranked over the
    whole catalogue. Exact either way, and each grid point costs users x (members x depth)
    instead of users x items.
    """

    def __init__(self, blocks: list[np.ndarray], seen: sp.csr_matrix, k: int, depth: int) -> None:
        coo = seen.tocoo()
        self.blocks = []
        for block in blocks:
            masked = np.array(block, dtype=np.float32, copy=True)
            masked[coo.row, coo.col] = -np.inf
            self.blocks.append(masked)
        n_users, n_items = blocks[0].shape
        self.k = k
        lists, self.outside = [], []
        if n_items <= depth:  # a tiny catalogue: every item is listed, nothing lies outside
            lists = [np.tile(np.arange(n_items), (n_users, 1))]
            self.outside = [np.full(n_users, -np.inf, dtype=np.float32) for _ in blocks]
        for masked in self.blocks if n_items > depth else []:
            part = np.argpartition(-masked, depth, axis=1)
            lists.append(part[:, :depth])
            self.outside.append(np.take_along_axis(masked, part[:, depth : depth + 1], axis=1)[:, 0])
        items = np.sort(np.hstack(lists), axis=1)
        self.duplicate = np.zeros(items.shape, dtype=bool)
        self.duplicate[:, 1:] = items[:, 1:] == items[:, :-1]
        self.items = items
        self.listed = [np.take_along_axis(masked, items, axis=1) for masked in self.blocks]

    def top_k(self, weights: np.ndarray) -> np.ndarray:
        """Each user's blended top-k item indices under ``weights`` (-1 for an empty slot)."""
        used = [(w, i) for i, w in enumerate(weights) if w > 0]
        with np.errstate(invalid="ignore"):  # -inf * w stays -inf; nothing multiplies by 0
            listed = sum(w * self.listed[i] for w, i in used)
            bound = sum(w * self.outside[i] for w, i in used)
        listed[self.duplicate] = -np.inf
        local = _top_k(listed, self.k)
        top = np.where(local >= 0, np.take_along_axis(self.items, np.maximum(local, 0), axis=1), -1)
        kth = np.take_along_axis(listed, np.maximum(local[:, -1:], 0), axis=1)[:, 0]
        unsure = np.flatnonzero((local[:, -1] < 0) | ~(kth >= bound))
        if len(unsure):
            full = sum(w * self.blocks[i][unsure] for w, i in used)
            top[unsure] = _top_k(full, self.k)
        return top


def _search_weights(
    blocks: list[np.ndarray], seen: sp.csr_matrix, relevant: sp.csr_matrix, k: int, steps: int
) -> tuple[np.ndarray, float]:
    """The grid point with the best validation nDCG (ties: the first, so the fewest members)."""
    from pipelines.evaluation.metrics import ranking_metrics

    candidates = _Candidates(blocks, seen, k, depth=max(4 * k, 50))
    best_weights, best = None, -1.0
    for weights in _simplex_grid(steps, len(blocks)):
        top = candidates.top_k(weights)
        value = float(ranking_metrics(top, relevant, k, blocks[0].shape[1])[f"ndcg@{k}"])
        if value > best + 1e-12:
            best_weights, best = weights, value
    if best_weights is None:
        raise ConfigError("blend: no weight vector could be scored")
    return best_weights, best
