"""A model bundle: a fitted model plus what it needs to answer by raw ids.

The bundle is what MLflow stores as the pyfunc artifact and what batch scoring and the
serving API load. It holds the model, the user and item id encodings, each user's training
items (never recommended back) and, for content-based models, the content featurizer.
Layout of a bundle folder::

    bundle.json      model name, k default, lineage
    model/           Recommender.save()
    users.parquet    user_id in user_idx order
    items.parquet    item_id in item_idx order
    seen.npz         users x items CSR of training interactions (exclusion)
    featurizer/      optional ContentFeaturizer.save() (JSON vocabularies, NPZ IDF weights)

Cold start, one path per case:

- a new item with metadata: :meth:`RecommenderBundle.add_items` featurizes it with the saved
  featurizer and hands it to a content-based model (content, hybrid), which scores it from then on;
- a new user with a few seed items: ``recommend(..., seed_items=...)`` and
  :meth:`RecommenderBundle.recommend_for_seed_items` fold the user in through
  ``model.score_new_users`` (seed items are never recommended back);
- an unknown user without seeds: the most popular items.

Every recommendation row says which path answered it in ``source``: ``model`` (a user the
model knows), ``seed_items`` (a new user folded in from seeds) or ``popularity`` (the fallback).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.constants import ITEM, RANK, SCORE, USER
from pipelines.models.base import Recommender

log = logging.getLogger(__name__)
FEATURIZER_DIR = "featurizer"
BUNDLE_MANIFEST = "bundle.json"  # written last: a folder without it is not a bundle
SOURCE = "source"  # output column: which path produced the row
FROM_MODEL, FROM_SEED_ITEMS, FROM_POPULARITY = "model", "seed_items", "popularity"


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
    featurizer: Any = None  # ContentFeaturizer for content-based models (new items), else None

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

    def recommend(
        self,
        user_ids: Iterable[Any],
        k: int = 10,
        batch_size: int = 2048,
        seed_items: Iterable[Any] | None = None,
    ) -> pd.DataFrame:
        """Ranked recommendations for raw user ids: columns user_id, rank, item_id, score, source.

        Training items are excluded; unknown users get the most popular items (``source`` says
        ``model``, ``seed_items`` or ``popularity`` per row). ``seed_items``
        (one entry per user: a list of item ids, a '|'-separated string, or None) folds in the
        users the model does not know from their seed items (see :meth:`recommend_for_seed_items`);
        known users ignore theirs. Rows come in the order of ``user_ids``.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        users = [str(u) for u in user_ids]
        seeds = None
        if seed_items is not None:
            seeds = [parse_seed_items(value) for value in seed_items]
            if len(seeds) != len(users):
                raise ValueError(f"seed_items has {len(seeds)} entries for {len(users)} user ids; give one per user")
        frames = []
        for start in range(0, len(users), batch_size):
            block = users[start : start + batch_size]
            user_idx = self.user_index(block)
            idx, val = self.recommend_indices(user_idx, k)
            sources = np.where(user_idx >= 0, FROM_MODEL, FROM_POPULARITY).astype(object)
            if seeds is not None:
                rows = [r for r in range(len(block)) if user_idx[r] < 0 and seeds[start + r]]
                if rows:
                    idx[rows], val[rows] = self._seeded_indices([seeds[start + r] for r in rows], k)
                    known = [bool((self.item_index(seeds[start + r]) >= 0).any()) for r in rows]
                    sources[rows] = np.where(known, FROM_SEED_ITEMS, FROM_POPULARITY)
            frames.append(self._frame(block, idx, val, sources))
        if not frames:
            return pd.DataFrame({USER: [], RANK: [], ITEM: [], SCORE: [], SOURCE: []})
        return pd.concat(frames, ignore_index=True)

    def recommend_for_seed_items(self, seed_item_ids: list[Any], k: int = 10) -> pd.DataFrame:
        """Recommendations for a new user known only by a few items: columns rank, item_id, score.

        The model folds the user in (``score_new_users``: factor models solve the user vector,
        content models average the items' profiles, sequence models read the seeds in the order
        given, earliest first). Seed items are never recommended back. Unknown seed ids are
        ignored with a warning; with no known seed the popular items come back.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        seeds = parse_seed_items(seed_item_ids)
        idx, val = self._seeded_indices([seeds], k)
        source = FROM_SEED_ITEMS if (self.item_index(seeds) >= 0).any() else FROM_POPULARITY
        return self._frame([""], idx, val, np.array([source], dtype=object)).drop(columns=[USER])

    def _seeded_indices(self, seed_lists: list[list[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for new users described by their seed item ids."""
        n_items = len(self.item_ids)
        rows, cols, ranks = [], [], []
        for row, seeds in enumerate(seed_lists):
            positions = self.item_index(seeds)
            unknown = [s for s, p in zip(seeds, positions) if p < 0]
            if unknown:
                log.warning("ignoring %d seed item id(s) the model does not know: %s", len(unknown), unknown[:10])
            known = list(dict.fromkeys(int(p) for p in positions if p >= 0))  # first occurrence wins
            rows.extend([row] * len(known))
            cols.extend(known)
            ranks.extend(range(1, len(known) + 1))
        shape = (len(seed_lists), n_items)
        seen = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=shape)
        with_seeds = np.diff(seen.indptr) > 0
        # Without any known seed a user is simply unknown: the popular items.
        idx, val = self.recommend_indices(np.full(len(seed_lists), -1, dtype=np.int64), k,
                                          exclude=sp.csr_matrix(shape, dtype=np.float32))
        if with_seeds.any():
            picked = np.flatnonzero(with_seeds)
            block = seen[picked]
            if getattr(self.model, "uses_interaction_order", False):
                order = sp.csr_matrix((np.asarray(ranks, dtype=np.float32), (rows, cols)), shape=shape)[picked]
                scores = self.model.score_new_users(block, interaction_order=order)
            else:
                scores = self.model.score_new_users(block)
            scores = np.array(scores, dtype=np.float32)
            coo = block.tocoo()
            scores[coo.row, coo.col] = -np.inf
            idx[picked], val[picked] = top_k(scores, k)
        return idx, val

    def _frame(self, users: list[str], idx: np.ndarray, val: np.ndarray, sources: np.ndarray) -> pd.DataFrame:
        """The long result frame (user_id, rank, item_id, score, source) of top-k arrays, padding dropped."""
        n, width = idx.shape
        valid = idx >= 0
        return pd.DataFrame(
            {
                USER: np.repeat(np.asarray(users, dtype=object), width)[valid.ravel()],
                RANK: np.tile(np.arange(1, width + 1), n)[valid.ravel()],
                ITEM: self.item_ids[idx[valid]],
                SCORE: val[valid].astype(float),
                SOURCE: np.repeat(np.asarray(sources, dtype=object), width)[valid.ravel()],
            }
        )

    # -- new items ----------------------------------------------------------------
    def add_items(self, items: pd.DataFrame) -> list[str]:
        """Make new items recommendable from their metadata; returns the ids added.

        ``items`` has ``item_id`` and any of ``title``, ``genres``, ``tags``. Items the bundle
        already knows are left as they are. The bundle's featurizer maps the metadata into the
        model's feature columns and a content-based model (content, hybrid) gives each new item
        a profile; nobody has seen them, so they are excluded for nobody. Raises ValueError when
        the model cannot take new items or the bundle has no featurizer, DataError for a frame
        without ``item_id`` or with a repeated id.
        """
        from pipelines.errors import DataError

        if not getattr(self.model, "requires_item_features", False):
            raise ValueError(
                f"model {self.model.name!r} cannot recommend items without interactions; "
                "new items need a content-based model (content, hybrid)"
            )
        if self.featurizer is None:
            raise ValueError("this bundle has no content featurizer, so it cannot featurize new items' metadata")
        if ITEM not in items.columns:
            raise DataError(f"new items need an {ITEM!r} column (columns: {list(items.columns)})")
        ids = items[ITEM].astype(str)
        if ids.duplicated().any():
            raise DataError(f"new items repeat item_id {ids[ids.duplicated()].iloc[0]!r}")
        fresh = items.assign(**{ITEM: ids}).loc[self.item_index(ids) < 0]
        if fresh.empty:
            return []
        self.model.add_items(self.featurizer.transform(fresh))
        new_ids = fresh[ITEM].astype(str).to_numpy()
        self.item_ids = np.concatenate([self.item_ids, new_ids]).astype(str)
        self._item_pos = pd.Index(self.item_ids)
        self.seen = sp.hstack(
            [self.seen, sp.csr_matrix((self.seen.shape[0], len(new_ids)), dtype=self.seen.dtype)], format="csr"
        )
        log.info("added %d new item(s) to the %s bundle", len(new_ids), self.model.name)
        return new_ids.tolist()

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the bundle folder, replacing any previous content only once it is complete
        (written beside it, ``bundle.json`` last, renamed into place: see pipelines.storage)."""
        from pipelines.storage import write_partition

        target = Path(path)
        with write_partition(target, manifest=BUNDLE_MANIFEST) as folder:
            self.model.save(folder / "model")
            pd.DataFrame({USER: self.user_ids}).to_parquet(folder / "users.parquet", index=False)
            pd.DataFrame({ITEM: self.item_ids}).to_parquet(folder / "items.parquet", index=False)
            sp.save_npz(folder / "seen.npz", self.seen.tocsr(), compressed=True)
            if self.featurizer is not None:
                self.featurizer.save(folder / FEATURIZER_DIR)
            (folder / BUNDLE_MANIFEST).write_text(json.dumps({"model": self.model.name, **self.info}, indent=2))
        return target

    @classmethod
    def load(cls, path: str | Path) -> "RecommenderBundle":
        """Load a bundle written by :meth:`save`.

        Raises:
            DataError: ``path`` is missing or has no ``bundle.json`` (incomplete, or not a bundle).
        """
        from pipelines.errors import DataError
        from pipelines.models import load_model

        folder = Path(path)
        if not (folder / BUNDLE_MANIFEST).is_file():
            state = "does not exist" if not folder.exists() else f"has no {BUNDLE_MANIFEST} (incomplete, or not a bundle)"
            raise DataError(f"model bundle {str(folder)!r} {state}; save it again with RecommenderBundle.save")
        info = json.loads((folder / BUNDLE_MANIFEST).read_text())
        info.pop("model", None)
        featurizer = None
        if (folder / FEATURIZER_DIR).is_dir():
            from pipelines.features.content import ContentFeaturizer

            featurizer = ContentFeaturizer.load(folder / FEATURIZER_DIR)
        return cls(
            model=load_model(folder / "model"),
            user_ids=pd.read_parquet(folder / "users.parquet")[USER].to_numpy(),
            item_ids=pd.read_parquet(folder / "items.parquet")[ITEM].to_numpy(),
            seen=sp.load_npz(folder / "seen.npz").tocsr(),
            info=info,
            featurizer=featurizer,
        )


def parse_seed_items(value: Any) -> list[str]:
    """Seed item ids from a list (or array) of ids, a '|'-separated string, or None/NaN (none)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    if value is None or (np.isscalar(value) and pd.isna(value)) or value is pd.NA:
        return []
    raise TypeError(f"seed items must be a list of item ids or a '|'-separated string, got {type(value).__name__}")
