"""Implicit-feedback ALS solved with conjugate gradient, written once against an array backend.

The model (Hu, Koren and Volinsky 2008): for confidences ``C`` (the stored matrix values) and
preferences ``P`` (1 where a value is positive, 0 elsewhere) minimise

    sum_{u,i} C_ui (P_ui - x_u . y_i)^2 + reg * (|X|^2 + |Y|^2)

where every unstored cell has confidence 1 and preference 0. A stored negative value means
"disliked": preference 0 with confidence ``|value|`` (the convention of the ``implicit`` library).

Each half-step fixes one side and improves the other with a few conjugate-gradient steps started
from the current factors (Takacs, Pilaszy and Tikk 2011; the CG solver of ``implicit``). For a
block of users with search directions ``P`` (one row per user) the matrix-free product is

    A P = P @ (Y^T Y + reg I) + S @ Y,   S = block pattern with data (C - 1) * rowdot(Y[i], P[u])

so a CG step over the whole block is one sampled dot product, one sparse-dense product and one
small dense product: no Python loop over users, and the same code runs on NumPy/SciPy and on
CuPy/cupyx (:mod:`pipelines.compute.backend`). On the CPU, when numba is installed, a compiled
kernel (:mod:`pipelines.models.als_kernels`) runs the same steps row by row instead: the
lockstep block version is bound by memory traffic over its temporaries there, not arithmetic.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from pipelines.compute.backend import ArrayBackend

log = logging.getLogger(__name__)

# implicit stops a user's CG once its squared residual drops below this.
_CONVERGED = 1e-20
# Entries times factors gathered per block: bounds the (entries, factors) temporaries to
# about 128 MiB at float32 whatever the block's row count.
_MAX_GATHERED_ELEMENTS = 2**25
# Below this many stored entries a block is not worth a thread's overhead.
_MIN_BLOCK_ENTRIES = 2**14


@dataclass(frozen=True)
class RowBlock:
    """Rows ``[start, stop)`` of a confidence matrix, on the backend's device.

    ``rows`` repeats each local row index once per stored entry; ``target`` is ``C * P`` (the
    right-hand side weights) and ``extra`` is ``C - 1`` (the weight on top of the all-ones
    background), both per stored entry; ``C = |value|``. ``weighted`` is False when every
    ``extra`` is 0 (binary confidences): the sparse part of ``A`` then vanishes.
    """

    start: int
    stop: int
    indptr: Any
    indices: Any
    rows: Any
    target: Any
    extra: Any
    weighted: bool


def split_rows(indptr: np.ndarray, block_size: int, factors: int, min_blocks: int = 1) -> list[tuple[int, int]]:
    """Cut rows into contiguous ``(start, stop)`` blocks of roughly equal work.

    Work per row is taken as its stored entries plus one (the dense part). There are at least
    ``min_blocks`` blocks (so a thread pool has work to share) unless that would leave fewer than
    ``_MIN_BLOCK_ENTRIES`` entries per block, none longer than ``block_size`` rows, and none
    gathering more than about ``_MAX_GATHERED_ELEMENTS`` entries x factors unless a single row
    does.
    """
    n_rows = len(indptr) - 1
    if n_rows == 0:
        return []
    nnz = int(indptr[-1])
    n_blocks = max(
        min(min_blocks, nnz // _MIN_BLOCK_ENTRIES),
        -(-n_rows // block_size),
        -(-(nnz * factors) // _MAX_GATHERED_ELEMENTS),
    )
    n_blocks = min(n_blocks, n_rows)
    work = np.asarray(indptr[1:], dtype=np.int64) + np.arange(1, n_rows + 1)
    cuts = np.searchsorted(work, np.linspace(0, work[-1], n_blocks + 1)[1:-1], side="right")
    edges = np.unique(np.concatenate(([0], cuts, [n_rows])))
    blocks = []
    for start, stop in zip(edges[:-1], edges[1:]):
        # Work-balanced cuts can still leave a long run of empty rows: cap the row count.
        for sub in range(int(start), int(stop), block_size):
            blocks.append((sub, min(sub + block_size, int(stop))))
    return blocks


def make_blocks(
    matrix: sp.csr_matrix, backend: ArrayBackend, dtype: np.dtype, block_size: int, factors: int, min_blocks: int
) -> list[RowBlock]:
    """Slice a host CSR matrix of confidences into device-resident :class:`RowBlock` objects."""
    blocks = []
    for start, stop in split_rows(matrix.indptr, block_size, factors, min_blocks):
        lo, hi = int(matrix.indptr[start]), int(matrix.indptr[stop])
        indptr = (matrix.indptr[start : stop + 1] - lo).astype(np.int32)
        values = matrix.data[lo:hi].astype(dtype)
        confidence = np.abs(values)
        blocks.append(
            RowBlock(
                start=start,
                stop=stop,
                indptr=backend.asarray(indptr),
                indices=backend.asarray(matrix.indices[lo:hi].astype(np.int32)),
                rows=backend.asarray(np.repeat(np.arange(stop - start, dtype=np.int32), np.diff(indptr))),
                target=backend.asarray(np.where(values > 0, values, 0).astype(dtype)),
                extra=backend.asarray(confidence - 1),
                weighted=bool((confidence != 1).any()),
            )
        )
    return blocks


def gramian(backend: ArrayBackend, factors: Any, regularization: float) -> Any:
    """``F^T F + regularization * I`` (factors x factors)."""
    xp = backend.xp
    gram = factors.T @ factors
    return gram + xp.asarray(regularization, dtype=factors.dtype) * xp.eye(gram.shape[0], dtype=factors.dtype)


def solve_block(
    backend: ArrayBackend,
    block: RowBlock,
    solve_for: Any,
    fixed: Any,
    fixed_gram: Any,
    cg_steps: int,
    with_loss: bool = False,
    scratch: Any = None,
) -> float:
    """Run ``cg_steps`` CG steps for the rows of ``block``, updating ``solve_for`` in place.

    ``solve_for`` is the full (n_rows, f) factor array being solved, ``fixed`` the other side
    and ``fixed_gram`` its :func:`gramian` (regularization included). With ``with_loss`` the
    block's share of the stored-entry loss, sum of ``C (P - s)^2 - s^2`` at the new factors,
    is returned (the rest of the loss is dense and computed once; see :func:`training_loss`).
    ``scratch`` (a ``threading.local``, CPU only) keeps the gathered rows' buffer between calls:
    a fresh (entries, f) array per call costs more in page faults than the gather itself.
    On the CPU the compiled kernel of :func:`compiled_cg_kernel` runs instead when available.
    """
    if not backend.is_gpu:
        kernel = compiled_cg_kernel()
        if kernel is not None:
            return float(
                kernel(
                    block.indptr, block.indices, block.target, block.extra,
                    solve_for[block.start : block.stop], fixed, fixed_gram,
                    cg_steps, block.weighted, with_loss,
                )
            )
    xp = backend.xp
    n_rows, n_cols = block.stop - block.start, fixed.shape[0]
    x = solve_for[block.start : block.stop]  # a view: updated in place
    weighted = block.weighted
    gathered = None
    if weighted or with_loss:  # (entries, f), reused by every CG step
        out = _scratch_rows(scratch, len(block.indices), fixed) if scratch is not None else None
        gathered = backend.take_rows(fixed, block.indices, out=out)

    def sparse_times_fixed(weights: Any) -> Any:
        pattern = backend.sparse.csr_matrix((weights, block.indices, block.indptr), shape=(n_rows, n_cols))
        return pattern @ fixed

    # Residual r = b - A x with b = (C * P) @ fixed.
    if weighted:
        dots_x = backend.gathered_rowdot(gathered, x, block.rows)
        residual = sparse_times_fixed(block.target - block.extra * dots_x) - x @ fixed_gram
    else:
        residual = sparse_times_fixed(block.target) - x @ fixed_gram
    direction = residual.copy()
    rs_old = (residual * residual).sum(axis=1)
    active = rs_old >= _CONVERGED

    for _ in range(cg_steps):
        if not bool(active.any()):
            break
        a_direction = direction @ fixed_gram
        if weighted:
            dots = backend.gathered_rowdot(gathered, direction, block.rows)
            a_direction += sparse_times_fixed(block.extra * dots)
        curvature = (direction * a_direction).sum(axis=1)
        step_ok = active & (curvature > 0)
        step = xp.where(step_ok, rs_old / xp.where(step_ok, curvature, 1), 0).astype(x.dtype)
        x += step[:, None] * direction
        if with_loss and weighted:  # keep x . y_i current for the loss without another product
            dots_x += step[block.rows] * dots
        residual -= step[:, None] * a_direction
        rs_new = (residual * residual).sum(axis=1)
        # A row whose residual vanished stops here, as implicit's per-user loop breaks.
        active = step_ok & (rs_new >= _CONVERGED)
        beta = xp.where(active, rs_new / xp.where(active, rs_old, 1), 0).astype(x.dtype)
        direction = residual + beta[:, None] * direction
        rs_old = rs_new

    if not with_loss:
        return 0.0
    if not weighted:
        dots_x = backend.gathered_rowdot(gathered, x, block.rows)
    preference = (block.target > 0).astype(dots_x.dtype)
    entry_loss = (block.extra + 1) * (preference - dots_x) ** 2 - dots_x * dots_x
    return float(entry_loss.sum(dtype=xp.float64))


_KERNEL_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _load_compiled_cg_kernel() -> Callable[..., float] | None:
    try:
        from pipelines.models.als_kernels import cg_block
    except ImportError as exc:
        log.warning("numba is not usable (%s): ALS runs its slower NumPy solver on the CPU", exc)
        return None
    return cg_block


def compiled_cg_kernel() -> Callable[..., float] | None:
    """The numba CG kernel (:func:`pipelines.models.als_kernels.cg_block`), or None without numba.

    Imported on first use so that importing the models stays cheap; without numba the solver
    runs its NumPy code and says so once. The first call comes from the fit's worker threads
    at once: the lock makes them wait for one import. Without it the first fit in a process
    sometimes differed from later ones in the last float bits (seen in the contract suite's
    same-seed test; a half-imported numba sending some blocks down the NumPy path is the
    likely cause).
    """
    with _KERNEL_LOCK:
        return _load_compiled_cg_kernel()


def _scratch_rows(scratch: Any, n_rows: int, like: Any) -> Any:
    """An uninitialised (n_rows, like.shape[1]) array from this thread's reusable buffer."""
    size = n_rows * like.shape[1]
    buffer = getattr(scratch, "buffer", None)
    if buffer is None or buffer.size < size or buffer.dtype != like.dtype:
        buffer = scratch.buffer = np.empty(size, dtype=like.dtype)
    return buffer[:size].reshape(n_rows, like.shape[1])


def training_loss(
    backend: ArrayBackend,
    entry_loss: float,
    user_factors: Any,
    item_factors: Any,
    regularization: float,
    total_confidence: float,
    nnz: int,
) -> float:
    """implicit's normalised training loss from the stored-entry share computed by the solver.

    ``sum_{u,i} (x_u . y_i)^2`` over all cells is ``trace(X^T X Y^T Y)``; the stored entries
    then replace their background term by ``C (P - s)^2``. The total (with the L2 penalty) is
    divided by the summed confidence of all cells, ``n_users * n_items + sum(C - 1)``. This is
    implicit's ``calculate_loss`` except for stored negative values, to which implicit adds a
    constant ``C``; here they count as the objective says, ``C * s^2``.
    """
    xp = backend.xp
    x64 = user_factors.astype(xp.float64)
    y64 = item_factors.astype(xp.float64)
    background = float(((x64.T @ x64) * (y64.T @ y64)).sum())
    penalty = regularization * float((x64 * x64).sum() + (y64 * y64).sum())
    n_cells = user_factors.shape[0] * item_factors.shape[0]
    return (entry_loss + background + penalty) / (total_confidence + n_cells - nnz)
