"""A model bundle: a fitted model plus what it needs to answer by raw ids.

The bundle is what MLflow stores as the pyfunc artifact and what batch scoring and the
serving API load. It holds the model, the user and item id encodings, each user's training
items (never recommended back) and, when present, item metadata for cold-start models.
Layout of a bundle folder::

    bundle.json      model name, k default, lineage
    model/           Recommender.save()
    users.parquet    user_id in user_idx order
    items.parquet    item_id in item_idx order
    seen.npz         users x items CSR of training interactions (exclusion)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.constants import ITEM, RANK, SCORE, USER
from pipelines.models.base import Recommender


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest finite scores per row, best first.

    Slots beyond the finite scores of a row hold index -1 and score -inf.
    """
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    idx = np.full((n_rows, k), -1, dtype=np.int64)
    val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if k_eff == 0 or n_rows == 0:
        return idx, val
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_val = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_val, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    part_val = np.take_along_axis(part_val, order, axis=1)
    finite = np.isfinite(part_val)
    idx[:, :k_eff] = np.where(finite, part, -1)
    val[:, :k_eff] = part_val
    return idx, val


@dataclass
class RecommenderBundle:
    """A fitted model and its id encodings; recommends by raw user ids."""

    model: Recommender
    user_ids: np.ndarray  # str, position = user_idx
    item_ids: np.ndarray  # str, position = item_idx
    seen: sp.csr_matrix  # training interactions, users x items
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids).astype(str)
        self.item_ids = np.asarray(self.item_ids).astype(str)
        self._user_pos = pd.Index(self.user_ids)
        self._item_pos = pd.Index(self.item_ids)

    def user_index(self, user_ids: Iterable[Any]) -> np.ndarray:
        """Encoded index of each raw user id; -1 for users the model never saw."""
        return self._user_pos.get_indexer(pd.Index([str(u) for u in user_ids]))

    def item_index(self, item_ids: Iterable[Any]) -> np.ndarray:
        """Encoded index of each raw item id; -1 for unknown items."""
        return self._item_pos.get_indexer(pd.Index([str(i) for i in item_ids]))

    def recommend_indices(
        self, user_idx: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for encoded users (-1 = unknown user: popularity).

        ``exclude`` has one row per requested user (aligned with ``user_idx``); by default
        each known user's training items are excluded.
        """
        if exclude is None:
            exclude = self._aligned_seen(user_idx)
        scores = self.model.score(user_idx).astype(np.float32, copy=False)
        seen = exclude.tocoo()
        scores[seen.row, seen.col] = -np.inf
        return top_k(scores, k)

    def _aligned_seen(self, user_idx: np.ndarray) -> sp.csr_matrix:
        known = user_idx >= 0
        rows = sp.csr_matrix((len(user_idx), len(self.item_ids)), dtype=np.float32)
        if known.any():
            picked = self.seen[np.where(known, user_idx, 0)]
            rows = sp.diags(known.astype(np.float32)) @ picked
        return rows.tocsr()

    def recommend(self, user_ids: Iterable[Any], k: int = 10, batch_size: int = 2048) -> pd.DataFrame:
        """Ranked recommendations for raw user ids: columns user_id, rank, item_id, score.

        Training items are excluded; unknown users get the most popular items.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        users = [str(u) for u in user_ids]
        frames = []
        for start in range(0, len(users), batch_size):
            block = users[start : start + batch_size]
            idx, val = self.recommend_indices(self.user_index(block), k)
            n, width = idx.shape
            valid = idx >= 0
            frames.append(
                pd.DataFrame(
                    {
                        USER: np.repeat(np.asarray(block, dtype=object), width)[valid.ravel()],
                        RANK: np.tile(np.arange(1, width + 1), n)[valid.ravel()],
                        ITEM: self.item_ids[idx[valid]],
                        SCORE: val[valid].astype(float),
                    }
                )
            )
        if not frames:
            return pd.DataFrame({USER: [], RANK: [], ITEM: [], SCORE: []})
        return pd.concat(frames, ignore_index=True)

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the bundle folder (replacing any previous content)."""
        folder = Path(path)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        self.model.save(folder / "model")
        pd.DataFrame({USER: self.user_ids}).to_parquet(folder / "users.parquet", index=False)
        pd.DataFrame({ITEM: self.item_ids}).to_parquet(folder / "items.parquet", index=False)
        sp.save_npz(folder / "seen.npz", self.seen.tocsr(), compressed=True)
        (folder / "bundle.json").write_text(json.dumps({"model": self.model.name, **self.info}, indent=2))
        return folder

    @classmethod
    def load(cls, path: str | Path) -> "RecommenderBundle":
        """Load a bundle written by :meth:`save`."""
        from pipelines.models import load_model

        folder = Path(path)
        if not (folder / "bundle.json").exists():
            raise FileNotFoundError(f"{folder} is not a model bundle (no bundle.json)")
        info = json.loads((folder / "bundle.json").read_text())
        info.pop("model", None)
        return cls(
            model=load_model(folder / "model"),
            user_ids=pd.read_parquet(folder / "users.parquet")[USER].to_numpy(),
            item_ids=pd.read_parquet(folder / "items.parquet")[ITEM].to_numpy(),
            seen=sp.load_npz(folder / "seen.npz").tocsr(),
            info=info,
        )
