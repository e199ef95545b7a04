"""The feature partition on disk (``features/<key>/``) and ``load_feature_set`` to read it back.

This module imports no Dask: training and serving import it to read what the features step
wrote. Layout (see docs/architecture.md): ``user_index.parquet``, ``item_index.parquet``,
``train.npz``, ``test.npz``, optional ``validation.npz`` (users x items CSR), ``train.parquet``,
``test.parquet``, optional ``item_features.npz`` + ``item_feature_names.json`` +
``content_featurizer/`` (what featurizes new items the same way), ``train_order.npz`` (each
training interaction's 1-based rank in its user's time order, for sequence models),
``manifest.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.constants import ITEM, ITEM_IDX, USER, USER_IDX
from pipelines.errors import DataError

USER_INDEX_FILE = "user_index.parquet"
ITEM_INDEX_FILE = "item_index.parquet"
TRAIN_NPZ = "train.npz"
TEST_NPZ = "test.npz"
VALIDATION_NPZ = "validation.npz"
TRAIN_PARQUET = "train.parquet"
TEST_PARQUET = "test.parquet"
ITEM_FEATURES_NPZ = "item_features.npz"
ITEM_FEATURE_NAMES_JSON = "item_feature_names.json"
CONTENT_FEATURIZER_DIR = "content_featurizer"
TRAIN_ORDER_NPZ = "train_order.npz"
MANIFEST_JSON = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Everything a model needs from one features run, aligned by index.

    ``train``/``test``/``validation`` are float32 CSR matrices of shape (n_users, n_items);
    ``user_ids[i]`` is the raw id of ``user_idx == i`` (likewise ``item_ids``);
    ``item_features`` has one row per item_idx (None when no metadata was featurized);
    ``content_featurizer`` (a :class:`pipelines.features.content.ContentFeaturizer`) featurizes
    new items into the same columns. ``train_order`` has the pattern of ``train`` and values =
    the 1-based rank of each interaction in its user's time order (None in partitions written
    before it existed).
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    validation: sp.csr_matrix | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_features: sp.csr_matrix | None
    item_feature_names: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    train_order: sp.csr_matrix | None = None
    content_featurizer: Any = None

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])


def write_index(path: Path, frame: pd.DataFrame, id_column: str, idx_column: str) -> None:
    """Write an id encoding (``id_column`` str, ``idx_column`` int32) sorted by index."""
    frame[[id_column, idx_column]].sort_values(idx_column).to_parquet(path, index=False)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON with sorted keys so the same content gives the same bytes."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not folder.is_dir():
        raise DataError(f"feature set {str(folder)!r} does not exist; run the features step first")
    if not path.exists():
        hint = " (incomplete or not written by the features step; re-run it)" if name == MANIFEST_JSON else ""
        raise DataError(f"feature set {folder} has no {name}{hint}")
    return path


def _read_ids(path: Path, id_column: str, idx_column: str) -> np.ndarray:
    frame = pd.read_parquet(path)
    missing = [c for c in (id_column, idx_column) if c not in frame.columns]
    if missing:
        raise DataError(f"{path} has no column(s) {missing}")
    frame = frame.sort_values(idx_column)
    if not np.array_equal(frame[idx_column].to_numpy(), np.arange(len(frame))):
        raise DataError(f"{path}: column {idx_column!r} is not contiguous 0..{len(frame) - 1}")
    return np.asarray(frame[id_column].astype(str).to_numpy(), dtype=str)


def _read_csr(path: Path, shape: tuple[int, int] | None) -> sp.csr_matrix:
    matrix = sp.csr_matrix(sp.load_npz(path))
    if shape is not None and matrix.shape != shape:
        raise DataError(f"{path} has shape {matrix.shape}, expected {shape} (n_users, n_items)")
    return matrix


def load_feature_set(features_uri: str | Path) -> FeatureSet:
    """Read the partition written by :func:`pipelines.features.run.run_features`.

    Raises DataError naming the file when one is missing (an interrupted or foreign folder),
    when an index is not contiguous, or when matrix shapes disagree with the encodings.
    """
    folder = Path(features_uri)
    manifest = json.loads(_require(folder, MANIFEST_JSON).read_text())
    user_ids = _read_ids(_require(folder, USER_INDEX_FILE), USER, USER_IDX)
    item_ids = _read_ids(_require(folder, ITEM_INDEX_FILE), ITEM, ITEM_IDX)
    shape = (len(user_ids), len(item_ids))
    train = _read_csr(_require(folder, TRAIN_NPZ), shape)
    test = _read_csr(_require(folder, TEST_NPZ), shape)
    validation = None
    if (folder / VALIDATION_NPZ).exists():
        validation = _read_csr(folder / VALIDATION_NPZ, shape)
    item_features, names = None, []
    if (folder / ITEM_FEATURES_NPZ).exists():
        item_features = _read_csr(folder / ITEM_FEATURES_NPZ, None)
        if item_features.shape[0] != len(item_ids):
            raise DataError(
                f"{folder / ITEM_FEATURES_NPZ} has {item_features.shape[0]} rows, "
                f"expected {len(item_ids)} (one per item)"
            )
        names = json.loads(_require(folder, ITEM_FEATURE_NAMES_JSON).read_text())
    featurizer = None
    if (folder / CONTENT_FEATURIZER_DIR).is_dir():
        from pipelines.features.content import ContentFeaturizer

        featurizer = ContentFeaturizer.load(folder / CONTENT_FEATURIZER_DIR)
    train_order = None
    if (folder / TRAIN_ORDER_NPZ).exists():
        train_order = _read_csr(folder / TRAIN_ORDER_NPZ, shape)
        if train_order.nnz != train.nnz:
            raise DataError(f"{folder / TRAIN_ORDER_NPZ} has {train_order.nnz} entries, {TRAIN_NPZ} has {train.nnz}")
    return FeatureSet(
        train, test, validation, user_ids, item_ids, item_features, names, manifest, train_order, featurizer
    )
