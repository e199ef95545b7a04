"""Compiled (numba) CPU kernel for one block of ALS conjugate-gradient updates.

The array-backend solver (:func:`pipelines.models.als_solver.solve_block`) runs a block's CG in
lockstep with whole-block NumPy/SciPy operations: each step makes several passes over
(rows, factors) temporaries and two over the gathered (entries, factors) rows, which is memory
traffic, not arithmetic. This kernel runs the same CG one row at a time, as ``implicit`` does:
the row's vectors stay in L1 and each stored entry's factor row is read once per product (its
dot product and its update in the same loop). Same steps, same stopping rule, same loss; only
the order of float additions differs.

Importing this module imports numba (and compiles on first call, cached on disk afterwards):
:mod:`pipelines.models.als_solver` imports it lazily and falls back to NumPy without numba.
``nogil=True``: the solver's thread pool runs blocks truly in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

# implicit stops a row's CG once its squared residual drops below this (as the NumPy path).
_CONVERGED = 1e-20
# No "reassoc": with it LLVM vectorizes the dot products with an order of additions that
# depends on where each array happens to be allocated, so the same seed gave models differing
# in the last float bits from one fit to the next (about half the runs of the contract suite's
# same-seed test; measured 0.84 vs 0.74 CPU s for a 40k x 8k, 64-factor, 3-iteration fit, within
# this machine's noise). No assumption about NaN or infinities.
_FASTMATH = {"contract", "arcp", "nsz"}


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _dot(u, v, f, zero):  # pragma: no cover - compiled
    """``u[:f] . v[:f]`` with eight running sums in a fixed order: independent chains that the
    compiler packs into one vector register without reassociation, so every fit adds in the
    same order whatever the arrays' alignment (bitwise reproducible) at vector speed."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    body = f - f % 8
    for a in range(0, body, 8):
        s0 += u[a] * v[a]
        s1 += u[a + 1] * v[a + 1]
        s2 += u[a + 2] * v[a + 2]
        s3 += u[a + 3] * v[a + 3]
        s4 += u[a + 4] * v[a + 4]
        s5 += u[a + 5] * v[a + 5]
        s6 += u[a + 6] * v[a + 6]
        s7 += u[a + 7] * v[a + 7]
    for a in range(body, f):
        s0 += u[a] * v[a]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def cg_block(indptr, indices, target, extra, x, y, gram, cg_steps, weighted, with_loss):  # pragma: no cover - compiled
    """``cg_steps`` CG steps for every row of ``x`` (updated in place); returns the entry loss.

    ``indptr``/``indices``/``target``/``extra`` are the block's CSR structure and per-entry
    ``C * P`` and ``C - 1`` (see ``RowBlock``); ``y`` the fixed factors, ``gram`` their
    ``Y^T Y + reg I``. With ``with_loss`` the sum over stored entries of ``C (P - s)^2 - s^2`` at
    the new factors is returned (float64), else 0.
    """
    n_rows, f = x.shape
    r = np.empty(f, dtype=x.dtype)
    p = np.empty(f, dtype=x.dtype)
    ap = np.empty(f, dtype=x.dtype)
    longest = 0
    for u in range(n_rows):
        longest = max(longest, indptr[u + 1] - indptr[u])
    dots_x = np.empty(longest, dtype=x.dtype)  # y_i . x_u per entry, kept current
    dots_p = np.empty(longest, dtype=x.dtype)  # y_i . p_u per entry, this step
    keep_dots = weighted and with_loss
    # Accumulators in the factors' dtype (a float64 literal would widen every float32 loop).
    zero = np.zeros(1, dtype=x.dtype)[0]
    loss = 0.0

    for u in range(n_rows):
        lo = indptr[u]
        hi = indptr[u + 1]
        xu = x[u]
        # r = b - A x = sum_i (C P - (C - 1) y_i.x) y_i - (Y^T Y + reg I) x; gram is symmetric,
        # so its product runs as axpys over its rows (vectorizes without reassociation).
        for a in range(f):
            r[a] = 0.0
        for b in range(f):
            xb = xu[b]
            for a in range(f):
                r[a] -= gram[b, a] * xb
        for j in range(lo, hi):
            yi = y[indices[j]]
            w = target[j]
            if weighted:
                d = _dot(yi, xu, f, zero)
                dots_x[j - lo] = d
                w -= extra[j] * d
            for a in range(f):
                r[a] += w * yi[a]
        for a in range(f):
            p[a] = r[a]
        rs_old = _dot(r, r, f, zero)
        if rs_old >= _CONVERGED:
            for _ in range(cg_steps):
                for a in range(f):
                    ap[a] = 0.0
                for b in range(f):
                    pb = p[b]
                    for a in range(f):
                        ap[a] += gram[b, a] * pb
                if weighted:
                    for j in range(lo, hi):
                        yi = y[indices[j]]
                        d = _dot(yi, p, f, zero)
                        if keep_dots:
                            dots_p[j - lo] = d
                        w = extra[j] * d
                        for a in range(f):
                            ap[a] += w * yi[a]
                curvature = _dot(p, ap, f, zero)
                if not curvature > 0:
                    break
                step = rs_old / curvature
                for a in range(f):
                    xu[a] += step * p[a]
                    r[a] -= step * ap[a]
                rs_new = _dot(r, r, f, zero)
                if keep_dots:
                    for j in range(hi - lo):
                        dots_x[j] += step * dots_p[j]
                if rs_new < _CONVERGED:
                    break
                beta = rs_new / rs_old
                for a in range(f):
                    p[a] = r[a] + beta * p[a]
                rs_old = rs_new
        if with_loss:
            for j in range(lo, hi):
                if keep_dots:
                    s = np.float64(dots_x[j - lo])
                else:
                    s = np.float64(_dot(y[indices[j]], xu, f, zero))
                preference = 1.0 if target[j] > 0 else 0.0
                loss += (np.float64(extra[j]) + 1.0) * (preference - s) ** 2 - s * s
    return loss
