"""Why an item was recommended: the history (or seed) item closest to it.

Each family exposes some item-to-item relation, read here once per loaded model:

- item-item models (``itemknn``'s neighbour similarities, ``ease``'s weights): a user's score
  for item j is a sum over their items h of ``W[h, j]``, so the h with the largest ``W[h, j]``
  is the item that contributed most;
- factor and embedding models (als, bpr, svd, nmf, item2vec): the cosine of item vectors;
- content models: the cosine of item content profiles; a hybrid explains through its
  collaborative part.

Families without an item representation (popularity, sequence, the deep models) get no
"because" item, and the answer says so instead of inventing one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: Most history items compared per user: heavy users (thousands of items) would otherwise make
#: explaining cost more than scoring. Items come in index order, not recency, so this is a cap, not a window.
MAX_HISTORY = 512


@dataclass(frozen=True)
class ItemRelation:
    """Item-to-item affinity: ``vectors`` (items x dims, unit rows, dense or CSR: cosine) or ``matrix`` (items x items)."""

    kind: str  # "cosine" or "item_item"
    vectors: np.ndarray | sp.csr_matrix | None = None
    matrix: np.ndarray | sp.csr_matrix | None = None

    def affinity(self, history: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(len(history), len(targets)) affinities of each history item to each target item."""
        if self.vectors is not None:
            block = self.vectors[history] @ self.vectors[targets].T
        elif sp.issparse(self.matrix):
            block = self.matrix[:, targets][history]  # CSC: the few target columns first
        else:
            block = self.matrix[np.ix_(history, targets)]  # never copy whole rows of a dense items x items
        return block.toarray() if sp.issparse(block) else np.asarray(block)

    def nearest(self, history: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """For each target, the history item with the highest positive affinity, or -1 when none relates."""
        out = np.full(len(targets), -1, dtype=np.int64)
        if len(history) == 0 or len(targets) == 0:
            return out
        history = history[:MAX_HISTORY]
        scores = self.affinity(history, targets)
        best = np.argmax(scores, axis=0)
        related = scores[best, np.arange(len(targets))] > 0
        out[related] = history[best[related]]
        return out


def item_relation(model) -> ItemRelation | None:
    """The item relation a fitted model exposes, or None for families without one."""
    if getattr(model, "base_", None) is not None:  # hybrid: its collaborative base explains best
        return item_relation(model.base_)
    similarity = getattr(model, "similarity_", None)
    if similarity is not None:
        return ItemRelation("item_item", matrix=sp.csc_matrix(similarity))
    weights = getattr(model, "item_weights_", None)
    if weights is not None:
        return ItemRelation("item_item", matrix=weights)
    for name in ("item_factors_", "item_vectors_"):
        vectors = getattr(model, name, None)
        if vectors is not None and np.ndim(vectors) == 2:
            return ItemRelation("cosine", vectors=_unit_rows(np.asarray(vectors, dtype=np.float32)))
    profiles = getattr(model, "item_profiles_", None)
    if profiles is not None:  # unit (or zero) rows already, wide and sparse: kept sparse
        return ItemRelation("cosine", vectors=sp.csr_matrix(profiles))
    return None


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
