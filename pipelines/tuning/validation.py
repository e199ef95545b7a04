"""The validation split trials are scored on, and merging it back for the final fit.

Tuning never looks at the test split: trials fit on train minus validation and are scored on
validation. The features step may already have written a validation split; otherwise one is
carved from train per user with :func:`pipelines.features.splits.stratified_split`. After
tuning, the chosen configuration is refit on train + validation and evaluated once on test.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.constants import ITEM_IDX, RATING, USER_IDX
from pipelines.errors import DataError
from pipelines.features.matrices import build_csr
from pipelines.features.splits import stratified_split
from pipelines.features.store import FeatureSet

log = logging.getLogger(__name__)


def carve_validation(train: sp.csr_matrix, fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split ``train`` (users x items) per user into (fit part, validation part).

    Each user keeps ``round((1 - fraction) * n)`` of their interactions (at least one) in the
    fit part, chosen by a seeded draw; stored values (ratings) are kept. Raises DataError when
    the validation part comes out empty (too few interactions per user for ``fraction``).
    """
    coo = sp.csr_matrix(train).tocoo()
    frame = pd.DataFrame({USER_IDX: coo.row, ITEM_IDX: coo.col, RATING: coo.data})
    fit_rows, validation_rows = stratified_split(frame, test_fraction=fraction, seed=seed)
    if validation_rows.empty:
        raise DataError(
            f"validation_fraction {fraction} leaves no validation interactions "
            f"({train.nnz} training interactions over {train.shape[0]} users); raise it or use more data"
        )
    n_users, n_items = train.shape

    def csr(rows: pd.DataFrame) -> sp.csr_matrix:
        return build_csr(
            rows[USER_IDX].to_numpy(), rows[ITEM_IDX].to_numpy(), rows[RATING].to_numpy(), n_users, n_items
        )

    return csr(fit_rows), csr(validation_rows)


def validation_split(features: FeatureSet, fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(fit part, validation part) for tuning: the feature set's own validation when it has one
    (``fraction`` is then unused), else a per-user carve of its train (see :func:`carve_validation`)."""
    if features.validation is not None and features.validation.nnz > 0:
        log.info("tuning on the feature set's own validation split (%d interactions)", features.validation.nnz)
        return sp.csr_matrix(features.train), sp.csr_matrix(features.validation)
    return carve_validation(features.train, fraction, seed)


def restrict_order(order: sp.csr_matrix | None, fit: sp.csr_matrix) -> sp.csr_matrix | None:
    """The interaction-order ranks of ``order`` (users x items, same shape) at ``fit``'s entries.

    Ranks keep their relative order within each user, which is all sequence models read.
    """
    if order is None:
        return None
    restricted = sp.csr_matrix(sp.csr_matrix(order).multiply(_pattern(fit)), dtype=np.float32)
    restricted.eliminate_zeros()
    restricted.sort_indices()
    return restricted


def merge_validation_into_train(features: FeatureSet) -> FeatureSet:
    """The feature set with its validation interactions moved into train (validation None).

    For the final fit after tuning: the chosen configuration learns from everything but test.
    A feature set without validation is returned unchanged. Raises DataError when a
    (user, item) pair is in both (the features step never writes one).
    """
    if features.validation is None:
        return features
    train, validation = sp.csr_matrix(features.train), sp.csr_matrix(features.validation)
    if train.shape != validation.shape:
        raise DataError(f"validation has shape {validation.shape} but train has {train.shape}; they must align")
    overlap = _pattern(train).multiply(_pattern(validation)).nnz
    if overlap:
        raise DataError(f"train and validation share {overlap} (user, item) pairs; the splits must be disjoint")
    merged = (train + validation).astype(np.float32).tocsr()
    merged.sort_indices()
    manifest = {**features.manifest, "validation_merged_into_train": int(validation.nnz)}
    changes: dict = {"train": merged, "validation": None, "manifest": manifest}
    if getattr(features, "train_order", None) is not None:
        # The ranks cover train only; validation interactions have no rank without their timestamps.
        log.warning("merging validation into train drops train_order: sequence models fall back to a random order")
        changes["train_order"] = None
    return dataclasses.replace(features, **changes)


def _pattern(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Ones where ``matrix`` stores an entry (even a stored zero)."""
    return sp.csr_matrix((np.ones(matrix.nnz, dtype=np.float32), matrix.indices, matrix.indptr), shape=matrix.shape)
