"""Warm starts: a fit that begins from a previous fit's parameters for the users and items both know.

Between retrains most users and items carry over. :class:`WarmStart` holds the previous fitted
model (same family) and, for every user and item index of the new fit, the index the same raw id
had in the previous fit (-1 for an id it never saw), built from both fits' id encodings
(:meth:`WarmStart.from_ids`). ``Recommender.fit(..., warm_start=...)`` checks it
(:meth:`WarmStart.problem`) and hands it to the family: shared rows of the user and item
parameters start from the previous values, new rows and everything else from the family's usual
seeded initialisation, then training runs as configured (same iterations or epochs: a warm start
changes where training starts, not how long it runs; early stopping may end it sooner).

A family opts in by naming, in ``warm_start_fields``, the hyperparameters that fix its parameter
shapes (ALS: ``factors``); the previous model must agree on them. Families without them refuse
with :class:`~pipelines.errors.WarmStartError`; the training step asks first and fits cold,
recording why (:mod:`pipelines.training.warm_start`). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal

import numpy as np
import scipy.sparse as sp

from pipelines.errors import WarmStartError

if TYPE_CHECKING:
    from pipelines.models.base import Recommender

Axis = Literal["user", "item"]


@dataclass(frozen=True)
class WarmStart:
    """A previous fitted model and where each new user and item index sat in it (-1: new)."""

    previous: "Recommender"
    user_map: np.ndarray  # int64, one entry per user of the new fit
    item_map: np.ndarray  # int64, one entry per item of the new fit
    source: str = ""  # where the previous model came from (e.g. "recsys/3"), for logs and tags
    #: The previous fit's training interactions over the new fit's users x items (None: unknown).
    previous_seen: sp.csr_matrix | None = None

    @classmethod
    def from_ids(
        cls,
        previous: "Recommender",
        previous_user_ids: Iterable[Any],
        previous_item_ids: Iterable[Any],
        user_ids: Iterable[Any],
        item_ids: Iterable[Any],
        source: str = "",
        previous_seen: sp.spmatrix | None = None,
    ) -> "WarmStart":
        """Match raw ids (compared as strings, as bundles store them) of the new fit to the previous one.

        ``previous_seen`` (previous users x previous items: what the previous model trained on, a
        bundle's ``seen``) is carried over to the new indices, so early stopping can validate on
        interactions the previous model never saw (:meth:`unseen`).
        """

        import pandas as pd

        def positions(old: Iterable[Any], new: Iterable[Any]) -> np.ndarray:
            index = pd.Index(np.asarray(list(old)).astype(str))
            if not index.is_unique:
                raise WarmStartError("the previous model's ids repeat an id; its encoding is not one id per index")
            return index.get_indexer(np.asarray(list(new)).astype(str)).astype(np.int64)

        user_map, item_map = positions(previous_user_ids, user_ids), positions(previous_item_ids, item_ids)
        if previous_seen is not None:
            previous_seen = _reindexed(sp.coo_matrix(previous_seen), user_map, item_map)
        return cls(previous, user_map, item_map, source, previous_seen)

    def unseen(self, matrix: sp.csr_matrix) -> np.ndarray | None:
        """Per stored entry of ``matrix`` (new users x items), whether the previous fit never trained
        on it; None when :attr:`previous_seen` is unknown."""
        if self.previous_seen is None:
            return None

        def keys(csr: sp.csr_matrix) -> np.ndarray:
            rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
            return rows * csr.shape[1] + csr.indices

        return ~np.isin(keys(matrix), keys(self.previous_seen))

    @property
    def shared_users(self) -> int:
        return int((self.user_map >= 0).sum())

    @property
    def shared_items(self) -> int:
        return int((self.item_map >= 0).sum())

    def summary(self) -> dict[str, Any]:
        """Counts for logs and run tags: shared and new users and items, and the source."""
        return {
            "source": self.source,
            "shared_users": self.shared_users,
            "new_users": int(len(self.user_map) - self.shared_users),
            "shared_items": self.shared_items,
            "new_items": int(len(self.item_map) - self.shared_items),
        }

    def problem(self, model: "Recommender", shape: tuple[int, int] | None = None) -> str | None:
        """Why ``model`` cannot start from :attr:`previous` (on a ``shape`` users x items matrix), or None."""
        previous = self.previous
        if not model.warm_start_fields:
            return f"model {model.name!r} cannot warm start (it carries no per-user or per-item parameters over); fit it cold"
        if previous.name != model.name:
            return f"a {model.name} model can only warm start from a {model.name} model, not from {previous.name!r}"
        if not previous.is_fitted:
            return f"the previous {previous.name} model is not fitted"
        differing = [
            f"{field}={getattr(previous.config, field)!r} (previous) vs {getattr(model.config, field)!r}"
            for field in model.warm_start_fields
            if getattr(previous.config, field) != getattr(model.config, field)
        ]
        if differing:
            return f"the parameter shapes differ from the previous {model.name} model: {'; '.join(differing)}"
        for axis, mapping, size in (("user", self.user_map, previous.n_users), ("item", self.item_map, previous.n_items)):
            if mapping.ndim != 1 or (len(mapping) and (mapping.max() >= size or mapping.min() < -1)):
                return f"the {axis} map points outside the previous model's {size} {axis}s"
        if shape is not None and (len(self.user_map), len(self.item_map)) != tuple(shape):
            return (
                f"the warm start maps {len(self.user_map)} users x {len(self.item_map)} items, "
                f"the training matrix is {shape[0]} x {shape[1]}"
            )
        return None

    def check(self, model: "Recommender", shape: tuple[int, int]) -> None:
        """Raise WarmStartError with :meth:`problem`'s reason when there is one."""
        reason = self.problem(model, shape)
        if reason is not None:
            raise WarmStartError(f"cannot warm start {model.name} from {self.source or 'the previous model'}: {reason}")

    def copy_rows(self, fresh: np.ndarray, previous: np.ndarray, axis: Axis, dim: int = 0, offset: int = 0) -> np.ndarray:
        """``fresh`` with the slices of shared users or items (``axis``) along dimension ``dim`` taken from ``previous``.

        ``offset`` shifts both indexings (an embedding whose row 0 is padding uses 1). Every other
        dimension must agree; ``fresh`` is changed in place and returned.
        """
        mapping = self.user_map if axis == "user" else self.item_map
        if np.delete(fresh.shape, dim).tolist() != np.delete(previous.shape, dim).tolist():
            raise WarmStartError(f"{axis} parameters of shape {previous.shape} cannot seed shape {fresh.shape}")
        new = np.flatnonzero(mapping >= 0)
        target = [slice(None)] * fresh.ndim
        source = [slice(None)] * previous.ndim
        target[dim], source[dim] = new + offset, mapping[new] + offset
        fresh[tuple(target)] = previous[tuple(source)]
        return fresh


def _reindexed(seen: sp.coo_matrix, user_map: np.ndarray, item_map: np.ndarray) -> sp.csr_matrix:
    """``seen`` (previous users x items) over the new indices; rows and columns the new fit lacks drop out."""
    new_user = np.full(seen.shape[0], -1, np.int64)
    new_user[user_map[user_map >= 0]] = np.flatnonzero(user_map >= 0)
    new_item = np.full(seen.shape[1], -1, np.int64)
    new_item[item_map[item_map >= 0]] = np.flatnonzero(item_map >= 0)
    rows, cols = new_user[seen.row], new_item[seen.col]
    kept = (rows >= 0) & (cols >= 0)
    return sp.csr_matrix((np.ones(kept.sum(), np.float32), (rows[kept], cols[kept])), shape=(len(user_map), len(item_map)))
