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


#: Scores tested together against the heap's root: one vectorised comparison pass per chunk,
#: and only a chunk holding a better score is walked element by element.
_CHUNK = 32


@numba.njit(nogil=True, cache=True)
def _sift_up(heap_val, heap_idx, pos, value, index):  # pragma: no cover - compiled
    """Put (value, index) at slot ``pos`` (the heap's new last entry) and restore the heap."""
    while pos > 0:
        parent = (pos - 1) >> 1
        if _worse(heap_val[parent], heap_idx[parent], value, index):
            break
        heap_val[pos] = heap_val[parent]
        heap_idx[pos] = heap_idx[parent]
        pos = parent
    heap_val[pos] = value
    heap_idx[pos] = index


@numba.njit(nogil=True, cache=True)
def _drain(heap_val, heap_idx, count, k, r, out_idx, out_val):  # pragma: no cover - compiled
    """Pop the heap worst first into row ``r`` of the outputs (best first), pad past ``count``."""
    size = count
    while size > 0:
        out_val[r, size - 1] = heap_val[0]
        out_idx[r, size - 1] = heap_idx[0]
        size -= 1
        if size > 0:
            _sift_down(heap_val, heap_idx, size, heap_val[size], heap_idx[size])
    for slot in range(count, k):
        out_val[r, slot] = -np.inf
        out_idx[r, slot] = -1


@numba.njit(nogil=True, cache=True)
def top_k_rows(scores, k, start, stop, out_idx, out_val):  # pragma: no cover - compiled
    """Rows ``start:stop`` of ``scores`` (float32, rows x items): their ``k`` best items, best
    first, into ``out_idx`` (int64) and ``out_val`` (float32); slots past a row's finite
    scores get -1 and -inf.

    Items are visited in index order, so a score equal to the root (which has a lower index)
    loses the tie. Once the heap is full, each chunk of ``_CHUNK`` scores is first compared
    with the root in one vectorisable pass; most chunks hold nothing better and cost no more.
    """
    n_items = scores.shape[1]
    heap_val = np.empty(k, dtype=np.float32)
    heap_idx = np.empty(k, dtype=np.int64)
    for r in range(start, stop):
        row = scores[r]
        count = 0
        j = 0
        while j < n_items and count < k:  # fill with the first k finite scores
            value = row[j]
            if value > -np.inf:  # not -inf (excluded), not NaN
                _sift_up(heap_val, heap_idx, count, value, j)
                count += 1
            j += 1
        if count == k:
            root = heap_val[0]
            while j + _CHUNK <= n_items:
                better = False
                for t in range(_CHUNK):
                    better |= row[j + t] > root
                if better:
                    for t in range(_CHUNK):
                        value = row[j + t]
                        if value > root:
                            _sift_down(heap_val, heap_idx, k, value, j + t)
                            root = heap_val[0]
                j += _CHUNK
            while j < n_items:
                value = row[j]
                if value > root:
                    _sift_down(heap_val, heap_idx, k, value, j)
                    root = heap_val[0]
                j += 1
        _drain(heap_val, heap_idx, count, k, r, out_idx, out_val)


@numba.njit(nogil=True, cache=True)
def top_k_ranked_rows(order, n_valid, rank, indptr, indices, k, start, stop, out_idx):  # pragma: no cover - compiled
    """Rows ``start:stop`` of a shared ranking: each row's first ``k`` items of ``order`` (the
    global ranking, best first; its first ``n_valid`` entries are rankable) that the row's
    excluded items (CSR ``indptr``/``indices``; ``rank[item]`` = position in ``order``) do not
    hold, into ``out_idx``; -1 past the end. Cost per row: sorting its excluded ranks plus k.
    """
    longest = 0
    for r in range(start, stop):
        longest = max(longest, indptr[r + 1] - indptr[r])
    seen = np.empty(longest, dtype=np.int64)  # one scratch buffer: no allocation per row
    for r in range(start, stop):
        n_seen = indptr[r + 1] - indptr[r]
        for i in range(n_seen):
            seen[i] = rank[indices[indptr[r] + i]]
        if n_seen > 48:
            seen[:n_seen].sort()
        else:  # insertion sort: short rows, no call
            for i in range(1, n_seen):
                value = seen[i]
                pos = i
                while pos > 0 and seen[pos - 1] > value:
                    seen[pos] = seen[pos - 1]
                    pos -= 1
                seen[pos] = value
        position = 0
        s = 0
        for slot in range(k):
            while s < n_seen and seen[s] <= position:  # skip seen ranks (repeats included)
                if seen[s] == position:
                    position += 1
                s += 1
            if position >= n_valid:
                for rest in range(slot, k):
                    out_idx[r, rest] = -1
                break
            out_idx[r, slot] = order[position]
            position += 1


@numba.njit(nogil=True, cache=True)
def mask_rows(scores, indptr, indices, first_row):  # pragma: no cover - compiled
    """Write -inf into ``scores[r, j]`` for every stored ``j`` of CSR row ``first_row + r``."""
    for r in range(scores.shape[0]):
        for p in range(indptr[first_row + r], indptr[first_row + r + 1]):
            scores[r, indices[p]] = -np.inf
