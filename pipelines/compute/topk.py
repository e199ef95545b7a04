"""The one top-K of the product: evaluation, batch scoring, the API and the benchmarks call it.

Two entry points:

- :func:`top_k` ranks a dense block of scores (users x items), in place and without a negated
  copy: a compiled bounded-heap scan per row (:mod:`pipelines.compute.topk_kernels`, numba,
  rows spread over threads), which measured half the CPU time of ``torch.topk`` and a seventh
  of NumPy's ``argpartition`` here (see benchmarks/README.md); without numba ``torch.topk``,
  without torch ``np.argpartition``. Excluded items are written as -inf into the block straight
  from the sparse matrix: nothing sparse is densified.
- :func:`top_k_items` serves scorers whose scores depend only on the item (popularity, the
  unknown-user fallback): one global ranking, and each user's list is its walk past the user's
  own seen items (a compiled kernel over threads; without numba, one vectorised segmented
  search over all rows). No users x items matrix exists at any point.

Both return ``(indices int64, scores float32)`` of shape (n_rows, k), best first. A row with
fewer than ``k`` finite candidates (k above the catalogue, everything seen, -inf scores) is
padded with index -1 and score -inf. Among equal scores the lower item index comes first, in
the list and at the cut (on the torch and NumPy fallbacks of :func:`top_k`, which of several
items tied at the k-th score makes the cut is left to their selection algorithm).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

#: Bytes of float32 scores per block when a caller lets :func:`block_rows` choose. torch.topk
#: spreads a block over its threads, so blocks much smaller than this lose to thread start-up
#: (measured on 10k x 20k: 64-row blocks 2.5x slower than 1024-row ones, and matmul plus top-50
#: of 512-row blocks 25% slower than of 2048-row ones); much larger blocks only cost memory.
BLOCK_BYTES = 128 * 2**20

#: Rows per thread below which a block is ranked on the calling thread alone.
_ROWS_PER_THREAD = 64

_torch: Any = None
_KERNEL_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _load_kernels() -> Any:
    try:
        from pipelines.compute import topk_kernels
    except ImportError as exc:
        log.warning("numba is not usable (%s): top-K falls back to torch.topk or np.argpartition", exc)
        return None
    return topk_kernels


def _kernels() -> Any:
    """:mod:`pipelines.compute.topk_kernels`, or None without numba (imported once, under a
    lock: callers' threads may ask at once)."""
    with _KERNEL_LOCK:
        return _load_kernels()


def compiled_kernel() -> Callable[..., None] | None:
    """The numba row kernel of :func:`top_k` and :func:`top_k_dot`, or None without numba."""
    kernels = _kernels()
    return None if kernels is None else kernels.top_k_rows


def compiled_ranked_kernel() -> Callable[..., None] | None:
    """The numba kernel of :func:`top_k_items`, or None without numba."""
    kernels = _kernels()
    return None if kernels is None else kernels.top_k_ranked_rows


def _row_ranges(n_rows: int, num_threads: int | None) -> list[tuple[int, int]]:
    threads = max(1, min(_threads(num_threads), n_rows // _ROWS_PER_THREAD))
    bounds = np.linspace(0, n_rows, threads + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _kernel_ranked(kernel: Callable[..., None], order: np.ndarray, n_valid: int, rank: np.ndarray,
                   exclude: sp.csr_matrix, k: int, num_threads: int | None = None) -> np.ndarray:
    n_rows = exclude.shape[0]
    idx = np.empty((n_rows, k), dtype=np.int64)
    args = (order.astype(np.int64, copy=False), n_valid, rank, exclude.indptr.astype(np.int64, copy=False),
            exclude.indices.astype(np.int64, copy=False), k)
    ranges = _row_ranges(n_rows, num_threads)
    if len(ranges) == 1:
        kernel(*args, 0, n_rows, idx)
        return idx
    with ThreadPoolExecutor(len(ranges)) as pool:
        for done in [pool.submit(kernel, *args, a, b, idx) for a, b in ranges]:
            done.result()
    return idx


def _threads(num_threads: int | None) -> int:
    from pipelines.models.threads import fit_threads  # RECSYS_THREADS, else this process's cores

    return fit_threads(int(num_threads or 0))


def _kernel_top_k(kernel: Callable[..., None], scores: np.ndarray, k: int, num_threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Run the compiled kernel over the rows of ``scores``, split into one range per thread."""
    n_rows = scores.shape[0]
    idx = np.empty((n_rows, k), dtype=np.int64)
    val = np.empty((n_rows, k), dtype=np.float32)
    ranges = _row_ranges(n_rows, num_threads)
    if len(ranges) == 1:
        kernel(scores, k, 0, n_rows, idx, val)
        return idx, val
    with ThreadPoolExecutor(len(ranges)) as pool:
        for done in [pool.submit(kernel, scores, k, a, b, idx, val) for a, b in ranges]:
            done.result()
    return idx, val


def _import_torch() -> Any:
    """torch when installed (imported on first use: importing this module stays cheap), else None."""
    global _torch
    if _torch is None:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is installed wherever the tests run
            log.warning("torch is not installed: top-K falls back to single-threaded np.argpartition")
            _torch = False
        else:
            _torch = torch
    return _torch or None


def block_rows(n_items: int, budget_bytes: int = BLOCK_BYTES) -> int:
    """Rows of a float32 users x ``n_items`` score block that fit ``budget_bytes`` (at least 1)."""
    return max(1, int(budget_bytes) // (4 * max(1, int(n_items))))


def mask_excluded(scores: np.ndarray, exclude: sp.spmatrix | None) -> None:
    """Write -inf into ``scores`` (in place) at every stored cell of ``exclude`` (same shape)."""
    if exclude is None:
        return
    if exclude.shape != scores.shape:
        raise ValueError(f"exclude has shape {exclude.shape} but the scores block has {scores.shape}")
    exclude = sp.csr_matrix(exclude)
    rows = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr))
    scores[rows, exclude.indices] = -np.inf


def _padded(n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_rows, k), -1, dtype=np.int64), np.full((n_rows, k), -np.inf, dtype=np.float32)


def _order_ties_by_index(idx: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each short row by score descending, then item index ascending (k columns: cheap)."""
    order = np.lexsort((idx, -val), axis=1) if idx.size else np.zeros(idx.shape, dtype=np.int64)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(val, order, axis=1)


def _order_sorted_ties_by_index(idx: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_order_ties_by_index` for rows already sorted by score descending: only rows
    holding a tie are re-sorted (with real-valued scores, few or none)."""
    tied = np.flatnonzero((val[:, 1:] == val[:, :-1]).any(axis=1))
    if len(tied):
        idx, val = idx.copy(), val.copy()
        idx[tied], val[tied] = _order_ties_by_index(idx[tied], val[tied])
    return idx, val


def top_k(
    scores: np.ndarray,
    k: int,
    *,
    exclude: sp.spmatrix | None = None,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest finite scores of each row, best first.

    ``scores``: (n_rows, n_items) float array; float32 C-contiguous input is used as is and its
    excluded cells are overwritten with -inf (pass a copy to keep the original). ``exclude``:
    optional sparse (n_rows, n_items); its stored cells are never returned. ``num_threads``
    caps the threads for this call (default: ``$RECSYS_THREADS``, else the cores this process
    may run on). Returns int64 indices and float32 scores of shape (n_rows, k), padded with
    -1 / -inf. NaN scores are not supported.
    Raises ValueError for k < 1, a non-2-D block or an ``exclude`` of another shape.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (rows x items), got shape {scores.shape}")
    if scores.dtype != np.float32 or not scores.flags.c_contiguous or not scores.flags.writeable:
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        if not scores.flags.writeable:
            scores = scores.copy()
    mask_excluded(scores, exclude)
    n_rows, n_items = scores.shape
    idx_out, val_out = _padded(n_rows, k)
    k_eff = min(k, n_items)
    if n_rows == 0 or k_eff == 0:
        return idx_out, val_out
    kernel = compiled_kernel()
    torch = None if kernel is not None else _import_torch()
    if kernel is not None:
        idx, val = _kernel_top_k(kernel, scores, k_eff, num_threads)
    elif torch is not None:
        previous = torch.get_num_threads()
        if num_threads:
            torch.set_num_threads(int(num_threads))
        try:
            val_t, idx_t = torch.topk(torch.from_numpy(scores), k_eff, dim=1, largest=True, sorted=True)
        finally:
            if num_threads:
                torch.set_num_threads(previous)
        idx, val = _order_sorted_ties_by_index(idx_t.numpy().astype(np.int64, copy=False), val_t.numpy())
    else:
        # argpartition on the scores themselves: the k largest are the last k, no negated copy.
        idx = np.argpartition(scores, n_items - k_eff, axis=1)[:, n_items - k_eff :]
        val = np.take_along_axis(scores, idx, axis=1)
        idx, val = _order_ties_by_index(idx.astype(np.int64, copy=False), val)
    finite = np.isfinite(val)
    idx_out[:, :k_eff] = np.where(finite, idx, -1)
    val_out[:, :k_eff] = np.where(finite, val, -np.inf)
    return idx_out, val_out


#: Users scored together by one thread of :func:`top_k_dot`: their score rows stay in that
#: core's cache between the product that writes them and the scan that ranks them.
DOT_ROWS_PER_TASK = 128


def top_k_dot(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    k: int,
    *,
    exclude: sp.spmatrix | None = None,
    item_bias: np.ndarray | None = None,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` of ``user_factors @ item_factors.T (+ item_bias)`` without the whole block.

    For the dot-product families (ALS, SVD, NMF, BPR). Each thread takes
    :data:`DOT_ROWS_PER_TASK` users at a time: their product into a buffer of its own (BLAS on
    one thread), their excluded items masked, their top ``k`` scanned, while the rows are still
    in its core's cache; no users x items block is written to memory and no thread waits for
    another between the two. Same result and tie order as :func:`top_k` on the full product
    (up to the last bit of BLAS rounding). Without numba, one :func:`top_k` per block.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    users = np.ascontiguousarray(user_factors, dtype=np.float32)
    items = np.ascontiguousarray(item_factors, dtype=np.float32)
    n_rows, n_items = users.shape[0], items.shape[0]
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != (n_rows, n_items):
            raise ValueError(f"exclude has shape {exclude.shape}, expected ({n_rows}, {n_items})")
    bias = None if item_bias is None else np.asarray(item_bias, dtype=np.float32).reshape(-1)
    kernel = compiled_kernel()
    idx_out, val_out = _padded(n_rows, k)
    k_eff = min(k, n_items)
    if n_rows == 0 or k_eff == 0:
        return idx_out, val_out
    if kernel is None:  # no numba: the product in blocks, each ranked by top_k
        step = block_rows(n_items)
        for start in range(0, n_rows, step):
            block = users[start : start + step] @ items.T
            if bias is not None:
                block += bias
            seen = None if exclude is None else exclude[start : start + step]
            idx_out[start : start + step], val_out[start : start + step] = top_k(block, k, exclude=seen,
                                                                                 num_threads=num_threads)
        return idx_out, val_out
    mask_rows = _kernels().mask_rows
    indptr = None if exclude is None else exclude.indptr.astype(np.int64, copy=False)
    indices = None if exclude is None else exclude.indices.astype(np.int64, copy=False)
    idx = np.empty((n_rows, k_eff), dtype=np.int64)
    val = np.empty((n_rows, k_eff), dtype=np.float32)
    tasks = [(a, min(a + DOT_ROWS_PER_TASK, n_rows)) for a in range(0, n_rows, DOT_ROWS_PER_TASK)]
    threads = max(1, min(_threads(num_threads), len(tasks)))
    items_t = items.T
    local = threading.local()

    def run(task: tuple[int, int]) -> None:
        a, b = task
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = np.empty((DOT_ROWS_PER_TASK, n_items), dtype=np.float32)
        scores = buffer[: b - a]
        np.matmul(users[a:b], items_t, out=scores)
        if bias is not None:
            scores += bias
        if indptr is not None:
            mask_rows(scores, indptr, indices, a)
        kernel(scores, k_eff, 0, b - a, idx[a:b], val[a:b])

    from pipelines.models.threads import blas_threads

    if threads == 1:  # one task (a served request) or one thread: BLAS keeps its own threads
        for task in tasks:
            run(task)
    else:
        with blas_threads(1), ThreadPoolExecutor(threads) as pool:  # these threads are the parallelism
            for _ in pool.map(run, tasks):
                pass
    idx_out[:, :k_eff] = idx
    val_out[:, :k_eff] = val
    return idx_out, val_out


def top_k_items(
    item_scores: np.ndarray,
    k: int,
    n_rows: int,
    *,
    exclude: sp.spmatrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` for ``n_rows`` users who all share the per-item scores ``item_scores``.

    ``exclude``: optional sparse (n_rows, n_items); each row's stored items are skipped. The
    global ranking is computed once (ties: lower item index first) and each user's list is the
    first ``k`` items of it that user has not seen: the j-th unseen rank is j plus the number
    of seen ranks r_i (sorted, i from 0) with r_i - i <= j, one vectorised search over all
    rows. Cost O(nnz log nnz + n_rows k); returns like :func:`top_k`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    item_scores = np.asarray(item_scores, dtype=np.float32).reshape(-1)
    n_items = len(item_scores)
    idx_out, val_out = _padded(n_rows, k)
    if n_rows == 0 or n_items == 0:
        return idx_out, val_out
    order = np.argsort(-item_scores, kind="stable")  # a 1-D negated copy of n_items: negligible
    n_valid = int(np.isfinite(item_scores[order]).sum())  # -inf (and NaN) sort last
    k_eff = min(k, n_valid)
    if k_eff == 0:
        return idx_out, val_out
    if exclude is None or exclude.nnz == 0:
        idx_out[:, :k_eff] = order[:k_eff]
        val_out[:, :k_eff] = item_scores[order[:k_eff]]
        return idx_out, val_out
    if exclude.shape != (n_rows, n_items):
        raise ValueError(f"exclude has shape {exclude.shape}, expected ({n_rows}, {n_items})")
    exclude = sp.csr_matrix(exclude)
    rank = np.empty(n_items, dtype=np.int64)
    rank[order] = np.arange(n_items, dtype=np.int64)
    kernel = compiled_ranked_kernel()
    if kernel is not None:  # one short walk of the ranking per row, rows spread over threads
        idx = _kernel_ranked(kernel, order, n_valid, rank, exclude, k_eff)
        idx_out[:, :k_eff] = idx
        val_out[:, :k_eff] = np.where(idx >= 0, item_scores[np.maximum(idx, 0)], -np.inf)
        return idx_out, val_out
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(exclude.indptr))
    # Seen ranks, sorted within each row (one global sort of row-major keys), repeats dropped.
    keys = rows * n_items + rank[exclude.indices]
    keys.sort()
    if len(keys) > 1 and not exclude.has_canonical_format:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    seen_rows = keys // n_items
    seen_ranks = keys - seen_rows * n_items
    row_start = np.searchsorted(seen_rows, np.arange(n_rows + 1, dtype=np.int64))
    position = np.arange(len(keys), dtype=np.int64) - row_start[seen_rows]
    # (rank - position) is non-decreasing within a row: shift rows apart to search them all at once.
    stride = n_items + 1
    gaps = seen_rows * stride + (seen_ranks - position)
    j = np.arange(k_eff, dtype=np.int64)
    query = np.arange(n_rows, dtype=np.int64)[:, None] * stride + j[None, :]
    before = np.searchsorted(gaps, query.ravel(), side="right").reshape(n_rows, k_eff) - row_start[:-1, None]
    wanted = j[None, :] + before
    valid = wanted < n_valid
    picked = order[np.minimum(wanted, n_items - 1)]
    idx_out[:, :k_eff] = np.where(valid, picked, -1)
    val_out[:, :k_eff] = np.where(valid, item_scores[picked], -np.inf)
    return idx_out, val_out
