"""Torch-free data preparation for the deep models: input checks, the seeded hold-out.

The deep models learn from implicit feedback: every positive stored value is one interaction
(weight 1); zeros and negative values are not interactions. Confidence weighting upstream
therefore changes nothing for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def interaction_matrix(train: object) -> sp.csr_matrix:
    """A binary float32 CSR copy of ``train`` (users x items): 1 where the value is positive.

    Raises TypeError for a non-sparse ``train``; ValueError for an empty shape, non-finite
    values (naming the first cell) or no positive entry at all.
    """
    if not sp.issparse(train):
        raise TypeError(f"train must be a SciPy sparse matrix (users x items), got {type(train).__name__}")
    matrix = sp.csr_matrix(train, dtype=np.float32, copy=True)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"train must have at least one user and one item, got shape {matrix.shape}")
    matrix.sum_duplicates()
    if not np.isfinite(matrix.data).all():
        bad = int(np.flatnonzero(~np.isfinite(matrix.data))[0])
        row = int(np.searchsorted(matrix.indptr, bad, side="right") - 1)
        raise ValueError(f"train has a non-finite value at (user {row}, item {matrix.indices[bad]})")
    matrix.data = (matrix.data > 0).astype(np.float32)
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise ValueError("train has no positive entries; the deep models need at least one interaction")
    return matrix


def validation_matrix(validation: object, shape: tuple[int, int]) -> sp.csr_matrix:
    """``validation`` as a binary CSR of the training ``shape``; TypeError/ValueError otherwise."""
    if not sp.issparse(validation):
        raise TypeError(f"validation must be a SciPy sparse matrix (users x items), got {type(validation).__name__}")
    if validation.shape != shape:
        raise ValueError(f"validation has shape {validation.shape} but train has {shape}; both are users x items")
    matrix = sp.csr_matrix(validation, dtype=np.float32, copy=True)
    matrix.data = (np.nan_to_num(matrix.data) > 0).astype(np.float32)
    matrix.eliminate_zeros()
    return matrix


def carve_holdout(matrix: sp.csr_matrix, fraction: float, rng: np.random.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user's items at random into (kept, held out), ``fraction`` of them held out.

    A user with n items holds out ``round(fraction * n)`` of them, never all: users with one
    item keep it. Both parts keep the shape of ``matrix``; together they are ``matrix``.
    """
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((rng.random(matrix.nnz), rows))  # random order within each row
    rank = np.empty(matrix.nnz, dtype=np.int64)
    rank[order] = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)
    n_held = np.minimum(np.rint(fraction * counts).astype(np.int64), counts - 1)
    held = rank < n_held[rows]

    def part(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((matrix.data[mask], (rows[mask], matrix.indices[mask])), shape=matrix.shape)

    return part(~held), part(held)


@dataclass(frozen=True)
class ValidationSet:
    """Users scored each epoch, their items to exclude, and their relevant (held-out) items.

    ``seen`` and ``relevant`` have one row per entry of ``users`` (in that order).
    """

    users: np.ndarray
    seen: sp.csr_matrix
    relevant: sp.csr_matrix

    @classmethod
    def build(
        cls, seen: sp.csr_matrix, relevant: sp.csr_matrix, max_users: int, rng: np.random.Generator
    ) -> "ValidationSet | None":
        """Users with a relevant item (a seeded sample of ``max_users`` beyond that); None if none."""
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        if len(users) == 0:
            return None
        if len(users) > max_users:
            users = np.sort(rng.choice(users, size=max_users, replace=False))
        return cls(users=users, seen=seen[users], relevant=relevant[users])


def split_for_early_stopping(
    matrix: sp.csr_matrix,
    validation: sp.csr_matrix | None,
    fraction: float,
    max_users: int,
    rng: np.random.Generator,
) -> tuple[sp.csr_matrix, ValidationSet | None]:
    """The matrix to train on and the validation set that decides the best epoch.

    With ``validation`` given: train on all of ``matrix``, validate on ``validation`` (items
    of ``matrix`` excluded from the rankings). Otherwise hold out ``fraction`` of each user's
    items of ``matrix`` (no validation when ``fraction`` is 0 or nothing could be held out).
    """
    if validation is not None:
        return matrix, ValidationSet.build(matrix, validation, max_users, rng)
    if fraction <= 0:
        return matrix, None
    kept, held = carve_holdout(matrix, fraction, rng)
    return kept, ValidationSet.build(kept, held, max_users, rng)
