"""One loaded model version, ready to answer one user at a time: the serving hot path.

Everything a request needs is precomputed when the version loads: raw id -> index dicts,
the item ids as a Python list, each user's training items (CSR arrays), the popular items in
order and the model's item relation for explanations. A request then costs one score row,
one partial sort and a few dict look-ups; no pandas, no per-request allocation beyond the row.
The same object explains batch recommendations (:mod:`pipelines.serving.batch`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from pipelines.serving.bundle import RecommenderBundle
from pipelines.serving.explain import item_relation

log = logging.getLogger(__name__)

SOURCE_MODEL = "model"
SOURCE_SEEDS = "seed_items"
SOURCE_POPULARITY = "popularity"
SOURCES = (SOURCE_MODEL, SOURCE_SEEDS, SOURCE_POPULARITY)


def top_k_row(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest finite entries of one score row, best first."""
    n = row.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=row.dtype)
    part = np.argpartition(row, n - k)[n - k :] if k < n else np.arange(n)
    order = part[np.argsort(-row[part], kind="stable")]
    values = row[order]
    keep = np.isfinite(values)
    return order[keep], values[keep]


@dataclass
class Recommendation:
    """Top items for one user: item indices, scores, the source and each item's "because" item (-1: none)."""

    items: np.ndarray
    scores: np.ndarray
    source: str
    because: np.ndarray


class ServingModel:
    """A registered model version loaded for serving (immutable once built; swapped whole)."""

    def __init__(self, bundle: RecommenderBundle, name: str, version: str) -> None:
        self.bundle = bundle
        self.name = name
        self.version = str(version)
        self.family = bundle.model.name
        self.item_ids: list[str] = bundle.item_ids.tolist()
        self.n_items = len(self.item_ids)
        self._user_pos = {user: pos for pos, user in enumerate(bundle.user_ids.tolist())}
        self._item_pos = {item: pos for pos, item in enumerate(self.item_ids)}
        seen = bundle.seen.tocsr()
        self._indptr, self._indices = seen.indptr, seen.indices
        popular = np.asarray(bundle.model.score(np.array([-1]))[0], dtype=np.float32)
        self._popular_order = np.argsort(-popular, kind="stable")
        self._popular_scores = popular[self._popular_order]
        self.relation = item_relation(bundle.model)

    # -- look-ups -----------------------------------------------------------------
    def user_index(self, user_id: str) -> int:
        """Encoded index of a raw user id; -1 when the model never saw the user."""
        return self._user_pos.get(user_id, -1)

    def known_items(self, item_ids: Sequence[str]) -> np.ndarray:
        """Encoded indices of the ids the model knows, first occurrence kept, unknown ids dropped."""
        positions = (self._item_pos.get(item, -1) for item in item_ids)
        return np.fromiter(dict.fromkeys(p for p in positions if p >= 0), dtype=np.int64)

    def history(self, user_idx: int) -> np.ndarray:
        """A known user's training items (encoded)."""
        return self._indices[self._indptr[user_idx] : self._indptr[user_idx + 1]]

    @property
    def n_users(self) -> int:
        return len(self._user_pos)

    # -- recommending ---------------------------------------------------------------
    def recommend(self, user_id: str, k: int, seed_items: Sequence[str] = (), explain: bool = True) -> Recommendation:
        """Top-``k`` for one raw user id; unknown users fold in their seed items or get popularity."""
        user_idx = self._user_pos.get(user_id, -1)
        if user_idx >= 0:
            row = self._known_row(user_idx)
            history = self.history(user_idx)
            row[history] = -np.inf
            items, scores = top_k_row(row, k)
            return Recommendation(items, scores, SOURCE_MODEL, self.because_items(history, items, explain))
        seeds = self.known_items(seed_items) if seed_items else np.empty(0, dtype=np.int64)
        if len(seeds):
            row = np.array(self._seed_scores(seeds), dtype=np.float32)
            row[seeds] = -np.inf
            items, scores = top_k_row(row, k)
            return Recommendation(items, scores, SOURCE_SEEDS, self.because_items(seeds, items, explain))
        if seed_items:
            log.debug("none of %d seed item(s) is known to %s v%s: popularity", len(seed_items), self.name, self.version)
        k = min(k, self.n_items)
        scores = self._popular_scores[:k]
        keep = np.isfinite(scores)
        items = self._popular_order[:k][keep]
        return Recommendation(items, scores[keep], SOURCE_POPULARITY, np.full(len(items), -1, dtype=np.int64))

    def _known_row(self, user_idx: int) -> np.ndarray:
        """One known user's scores as a writable float32 row.

        Straight from the family's ``_score_block``: ``score()``'s unknown-user handling is
        redundant for a user the id dict found, and costs a third of a request.
        """
        # Always a copy (cheap next to scoring): a family may hand back a read-only or shared view.
        return np.array(self.bundle.model._score_block(np.array([user_idx]))[0], dtype=np.float32)

    def _seed_scores(self, seeds: np.ndarray) -> np.ndarray:
        import scipy.sparse as sp

        model = self.bundle.model
        # The seed order is the order given, earliest first (sequence models read it).
        seen = sp.csr_matrix((np.ones(len(seeds), np.float32), (np.zeros(len(seeds), np.int64), seeds)),
                             shape=(1, self.n_items))
        if getattr(model, "uses_interaction_order", False):
            order = sp.csr_matrix((np.arange(1, len(seeds) + 1, dtype=np.float32),
                                   (np.zeros(len(seeds), np.int64), seeds)), shape=(1, self.n_items))
            return model.score_new_users(seen, interaction_order=order)[0]
        return model.score_new_users(seen)[0]

    def because_items(self, history: np.ndarray, items: np.ndarray, explain: bool = True) -> np.ndarray:
        """For each recommended item, the history (or seed) item that explains it; -1 where none does."""
        if not explain or self.relation is None or len(items) == 0:
            return np.full(len(items), -1, dtype=np.int64)
        return self.relation.nearest(history, items)

    # -- answers ------------------------------------------------------------------
    def explanation(self, source: str, because: int) -> str:
        """The short text shown with an item."""
        if because >= 0:
            verb = "watched" if source == SOURCE_MODEL else "chose"
            return f"because you {verb} {self.item_ids[because]}"
        if source == SOURCE_POPULARITY:
            return "popular with everyone"
        if source == SOURCE_SEEDS:
            return f"fits your seed items ({self.family} model)"
        return f"fits your history ({self.family} model)"

    def items_payload(self, rec: Recommendation) -> list[dict[str, Any]]:
        """The JSON items of an answer: rank, item_id, score, explanation, because_item_id."""
        ids = self.item_ids
        out = []
        for rank, (item, score, because) in enumerate(zip(rec.items.tolist(), rec.scores.tolist(), rec.because.tolist()), 1):
            out.append(
                {
                    "rank": rank,
                    "item_id": ids[item],
                    "score": score,
                    "explanation": self.explanation(rec.source, because),
                    "because_item_id": ids[because] if because >= 0 else None,
                }
            )
        return out

    def describe(self) -> dict[str, Any]:
        """Name, version, family and sizes of the loaded version."""
        return {"name": self.name, "version": self.version, "family": self.family,
                "users": self.n_users, "items": self.n_items}
