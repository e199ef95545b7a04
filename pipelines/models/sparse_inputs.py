"""Checks and persistence of the sparse matrices that models take, shared by the model families.

Every family takes the same training matrix (users x items, SciPy sparse, weighted upstream by
:mod:`pipelines.features.weighting`) and, for fold-in, the same ``seen`` matrix of new users. The
checks here give every family the same precise errors, and :func:`csr_state` /
:func:`csr_from_state` store a CSR matrix in a model's ``np.savez`` state (neighbourhood models
keep the training rows to score known users).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipelines.errors import ConfigError

log = logging.getLogger(__name__)


def check_train(train: Any, model: str, dtype: Any = np.float32) -> sp.csr_matrix:
    """A canonical CSR copy of ``train`` in ``dtype`` (sorted indices, summed duplicates, no stored zeros).

    Raises TypeError for a non-sparse ``train``, ValueError (naming ``model``) for an empty shape,
    a matrix without non-zero entries, or a non-finite value (with its user and item).
    """
    if not sp.issparse(train):
        raise TypeError(f"train must be a SciPy sparse matrix (users x items), got {type(train).__name__}")
    matrix = sp.csr_matrix(train, dtype=dtype, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    n_users, n_items = matrix.shape
    if n_users == 0 or n_items == 0:
        raise ValueError(f"train must have at least one user and one item, got shape {matrix.shape}")
    if matrix.nnz == 0:
        raise ValueError(f"train has no non-zero entries; {model} needs at least one interaction")
    if not np.isfinite(matrix.data).all():
        bad = int(np.flatnonzero(~np.isfinite(matrix.data))[0])
        row = int(np.searchsorted(matrix.indptr, bad, side="right") - 1)
        raise ValueError(f"train has a non-finite value at (user {row}, item {matrix.indices[bad]})")
    return matrix


def checked_train(train: Any, model: str, values: str = "weights", dtype: Any = np.float32) -> sp.csr_matrix:
    """What :meth:`Recommender.fit <pipelines.models.base.Recommender.fit>` hands a family: :func:`check_train`,
    then ``values`` applied: ``binary`` keeps the positive entries as 1 (ValueError when there is
    none), ``non_negative`` refuses a negative entry (:func:`check_non_negative`), ``weights``
    keeps the values."""
    matrix = check_train(train, model, dtype)
    if values == "binary":
        matrix.data = (matrix.data > 0).astype(matrix.dtype)
        matrix.eliminate_zeros()
        if matrix.nnz == 0:
            raise ValueError(f"train has no positive entries; {model} needs at least one interaction")
    elif values == "non_negative":
        check_non_negative(matrix, model)
    return matrix


def checked_validation(validation: Any, shape: tuple[int, int], model: str) -> sp.csr_matrix | None:
    """The positive entries of ``validation`` as a binary float32 CSR of the training ``shape``.

    None when there is no validation or it holds no positive entry (a warning says so: the family
    then trains without it). Raises TypeError for a non-sparse ``validation``, ValueError for
    another shape.
    """
    if validation is None:
        return None
    if not sp.issparse(validation):
        raise TypeError(f"validation must be a SciPy sparse matrix (users x items), got {type(validation).__name__}")
    if validation.shape != shape:
        raise ValueError(f"validation has shape {validation.shape} but train has {shape}; both are users x items")
    held_out = sp.csr_matrix(validation, dtype=np.float32, copy=True)
    held_out.sum_duplicates()
    held_out.data = (np.nan_to_num(held_out.data) > 0).astype(np.float32)
    held_out.eliminate_zeros()
    if held_out.nnz == 0:
        log.warning("validation has no positive entries; %s trains without it", model)
        return None
    return held_out


def require_item_features(item_features: Any, model: str) -> None:
    """Raise ConfigError when a content family gets no item features (None or no columns)."""
    if item_features is None or (hasattr(item_features, "shape") and item_features.shape[1] == 0):
        raise ConfigError(f'model "{model}" needs item metadata (genres, titles or tags); the source has none')


def check_non_negative(matrix: sp.csr_matrix, model: str, name: str = "train") -> None:
    """Raise ValueError naming the first negative entry of ``matrix`` (for models that need >= 0)."""
    if matrix.nnz and matrix.data.min() < 0:
        bad = int(np.flatnonzero(matrix.data < 0)[0])
        row = int(np.searchsorted(matrix.indptr, bad, side="right") - 1)
        raise ValueError(
            f"{model} needs non-negative values; {name} has {matrix.data[bad]:g} at "
            f"(user {row}, item {matrix.indices[bad]}). Use a weighting scheme without negatives "
            "(none, linear, log) or clip the values"
        )


def check_seen(seen: Any, n_items: int, dtype: Any = np.float32) -> sp.csr_matrix:
    """A CSR copy of the fold-in matrix ``seen`` (new users x ``n_items``) in ``dtype``.

    Raises TypeError for a non-sparse ``seen`` and ValueError for a wrong number of columns or a
    non-finite value.
    """
    if not sp.issparse(seen):
        raise TypeError(f"seen must be a SciPy sparse matrix (new users x items), got {type(seen).__name__}")
    if seen.ndim != 2 or seen.shape[1] != n_items:
        raise ValueError(f"seen must have one column per item of the model ({n_items}), got shape {seen.shape}")
    matrix = sp.csr_matrix(seen, dtype=dtype, copy=True)
    matrix.sum_duplicates()
    if not np.isfinite(matrix.data).all():
        raise ValueError("seen has non-finite values (NaN or inf)")
    return matrix


def csr_state(matrix: sp.csr_matrix, prefix: str) -> dict[str, np.ndarray]:
    """The arrays of a CSR matrix under ``prefix`` (``<prefix>data``, ``indices``, ``indptr``, ``shape``)."""
    return {
        f"{prefix}data": matrix.data,
        f"{prefix}indices": matrix.indices,
        f"{prefix}indptr": matrix.indptr,
        f"{prefix}shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def csr_from_state(state: dict[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """Rebuild the CSR matrix that :func:`csr_state` stored under ``prefix``."""
    shape = tuple(int(n) for n in state[f"{prefix}shape"])
    return sp.csr_matrix(
        (state[f"{prefix}data"], state[f"{prefix}indices"], state[f"{prefix}indptr"]), shape=shape
    )


def mean_gram_diagonal(user_items: sp.csr_matrix) -> float:
    """Mean over items of ``sum_u x_ui^2`` (the diagonal of ``X^T X``, squared item norms):
    interactions per item for binary input. The scale of item-item penalties and shrinkages."""
    return float(np.square(user_items.data, dtype=np.float64).sum() / max(user_items.shape[1], 1))
