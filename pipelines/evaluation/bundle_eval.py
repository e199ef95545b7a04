"""Evaluate a model bundle (for example the current champion) on another run's held-out data.

Promotion compares models on the *same* held-out data. The champion was trained on an
earlier snapshot with its own id encodings, so it is evaluated through raw ids: test users
and training items of the current run are mapped into the champion's encodings, its
recommendations are mapped back, and the shared :func:`ranking_metrics` scores them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from pipelines.evaluation.metrics import ranking_metrics

if TYPE_CHECKING:
    from pipelines.features.run import FeatureSet
    from pipelines.serving.bundle import RecommenderBundle


def evaluate_bundle(bundle: "RecommenderBundle", features: "FeatureSet", k: int = 10, batch_size: int | None = None) -> dict[str, float]:
    """Ranking metrics of ``bundle`` on ``features.test``, excluding ``features.train`` items.

    Users are ranked ``batch_size`` at a time (default: :func:`pipelines.compute.topk.block_rows`).
    """
    from pipelines.compute.topk import block_rows

    users = np.flatnonzero(np.diff(features.test.indptr) > 0)
    # current item index -> bundle item index (-1 where the bundle never saw the item)
    to_bundle_item = bundle.item_index(features.item_ids)
    # bundle item index -> current item index (-1 where the current run lacks the item)
    from_bundle_item = np.full(len(bundle.item_ids), -1, dtype=np.int64)
    known_items = to_bundle_item >= 0
    from_bundle_item[to_bundle_item[known_items]] = np.flatnonzero(known_items)

    recommended = np.full((len(users), k), -1, dtype=np.int64)
    batch_size = batch_size or block_rows(len(bundle.item_ids))
    for start in range(0, len(users), batch_size):
        block = users[start : start + batch_size]
        bundle_users = bundle.user_index(features.user_ids[block])
        exclude = _train_in_bundle_space(features.train[block], to_bundle_item, len(bundle.item_ids))
        idx, _ = bundle.recommend_indices(bundle_users, k, exclude=exclude)
        mapped = np.where(idx >= 0, from_bundle_item[np.maximum(idx, 0)], -1)
        recommended[start : start + len(block)] = mapped
    return ranking_metrics(recommended, features.test[users], k, features.test.shape[1])


def _train_in_bundle_space(train_rows: sp.csr_matrix, to_bundle_item: np.ndarray, n_bundle_items: int) -> sp.csr_matrix:
    coo = train_rows.tocoo()
    cols = to_bundle_item[coo.col]
    keep = cols >= 0
    return sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (coo.row[keep], cols[keep])),
        shape=(train_rows.shape[0], n_bundle_items),
    )
