"""Compiled (numba) CPU kernel of the shared top-K: a bounded heap per row.

Each row is scanned once, keeping its ``k`` best (score, item) pairs in a min-heap whose root
is the worst kept: most scores lose one comparison against the root and cost nothing else, so
a row costs about one read per score, where ``torch.topk`` measured twice the CPU time here and
``np.argpartition`` seven times (see benchmarks/README.md). Ties go to the lower item index,
in the list and at the cut. -inf and NaN scores are never selected.

Importing this module imports numba (and compiles on first call, cached on disk afterwards):
:mod:`pipelines.compute.topk` imports it lazily and falls back to torch or NumPy without numba.
``nogil=True``: row ranges run truly in parallel on a thread pool.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, inline="always")
def _worse(value_a, index_a, value_b, index_b):  # pragma: no cover - compiled
    """Whether (value_a, index_a) ranks below (value_b, index_b): lower score, or equal score and higher index."""
    return value_a < value_b or (value_a == value_b and index_a > index_b)


@numba.njit(nogil=True, cache=True)
def _sift_down(heap_val, heap_idx, size, value, index):  # pragma: no cover - compiled
    """Put (value, index) at the root of the heap of ``size`` entries and restore the heap."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(heap_val[right], heap_idx[right], heap_val[child], heap_idx[child]):
            child = right
        if _worse(value, index, heap_val[child], heap_idx[child]):
            break
        heap_val[pos] = heap_val[child]
        heap_idx[pos] = heap_idx[child]
        pos = child
    heap_val[pos] = value
    heap_idx[pos] = index


@numba.njit(nogil=True, cache=True)
def top_k_rows(scores, k, start, stop, out_idx, out_val):  # pragma: no cover - compiled
    """Rows ``start:stop`` of ``scores`` (float32, rows x items): their ``k`` best items, best
    first, into ``out_idx`` (int64) and ``out_val`` (float32); slots past a row's finite
    scores get -1 and -inf."""
    n_items = scores.shape[1]
    heap_val = np.empty(k, dtype=np.float32)
    heap_idx = np.empty(k, dtype=np.int64)
    for r in range(start, stop):
        row = scores[r]
        count = 0
        for j in range(n_items):
            value = row[j]
            if count < k:
                if not (value > -np.inf):  # -inf (excluded) and NaN
                    continue
                pos = count  # sift up: the root stays the worst kept
                count += 1
                while pos > 0:
                    parent = (pos - 1) >> 1
                    if _worse(heap_val[parent], heap_idx[parent], value, j):
                        break
                    heap_val[pos] = heap_val[parent]
                    heap_idx[pos] = heap_idx[parent]
                    pos = parent
                heap_val[pos] = value
                heap_idx[pos] = j
            elif value > heap_val[0]:  # an equal score has a higher index: it loses the tie
                _sift_down(heap_val, heap_idx, k, value, j)
        size = count
        while size > 0:  # pop worst first into the last free slot
            out_val[r, size - 1] = heap_val[0]
            out_idx[r, size - 1] = heap_idx[0]
            size -= 1
            if size > 0:
                _sift_down(heap_val, heap_idx, size, heap_val[size], heap_idx[size])
        for slot in range(count, k):
            out_val[r, slot] = -np.inf
            out_idx[r, slot] = -1
