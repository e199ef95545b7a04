"""The one place that chooses the array module.

Factorization code is written once against ``xp`` (NumPy or CuPy) and the sparse module
that goes with it. The device is resolved explicit -> ``$RECSYS_DEVICE`` -> CPU. Asking for a
GPU where there is none logs a warning and returns the CPU backend; it never raises.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any, Literal

import numpy as np

from pipelines.constants import ENV_DEVICE

log = logging.getLogger(__name__)

Device = Literal["cpu", "gpu", "auto"]


@dataclass(frozen=True)
class ArrayBackend:
    """An array module, its sparse module, and transfers to and from the host."""

    name: str  # "numpy" or "cupy"
    xp: ModuleType
    sparse: ModuleType

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Host (or device) array -> this backend's array."""
        return self.xp.asarray(array, dtype=dtype)

    def to_host(self, array: Any) -> np.ndarray:
        """This backend's array -> NumPy array."""
        if self.is_gpu:
            return array.get()
        return np.asarray(array)

    def csr(self, matrix: Any, dtype: Any = np.float32) -> Any:
        """A SciPy sparse matrix -> this backend's CSR matrix (float32 unless ``dtype`` says)."""
        matrix = matrix.tocsr().astype(dtype)
        if self.is_gpu:
            return self.sparse.csr_matrix(matrix)
        return matrix

    def take_rows(self, source: Any, rows: Any, out: Any = None) -> Any:
        """``source[rows]`` for in-range row indices, written into ``out`` when given.

        On the CPU, NumPy's default ``take`` into ``out`` goes through a bounds-safe temporary
        copy; the indices here are valid by construction, so ``mode="clip"`` writes in place.
        """
        if self.is_gpu or out is None:
            return self.xp.take(source, rows, axis=0, out=out)
        return np.take(source, rows, axis=0, out=out, mode="clip")

    def gathered_rowdot(self, left: Any, right: Any, right_rows: Any) -> Any:
        """``out[j] = left[j] . right[right_rows[j]]`` for every row j of ``left``.

        This is the sampled dense-dense product at the heart of sparse factorization (one dot
        product per stored entry). ``left`` is (n, f), ``right`` is C-contiguous (m, f),
        ``right_rows`` is n indices into ``right``; returns a length-n vector of the same dtype.

        On the GPU the gather-multiply-sum is fast as written. On the CPU ``right[right_rows]``
        would cost a second (n, f) array per call, so the product runs as one block-sparse
        (BSR, 1 x f blocks) matrix-vector product that reads ``left`` once and ``right`` in place.
        """
        if self.is_gpu:
            return (left * right[right_rows]).sum(axis=1)
        n, f = left.shape
        if n == 0:
            return np.zeros(0, dtype=left.dtype)
        operator = self.sparse.bsr_matrix(
            (left.reshape(n, 1, f), right_rows, np.arange(n + 1, dtype=right_rows.dtype)),
            shape=(n, right.shape[0] * f),
        )
        return operator @ np.ascontiguousarray(right).reshape(-1)


@lru_cache(maxsize=1)
def gpu_available() -> tuple[bool, str]:
    """Probe for CuPy and a usable CUDA device; returns (available, reason)."""
    try:
        import cupy  # noqa: F401
    except ImportError as exc:
        return False, f"cupy is not installed ({exc}); install the [gpu] extra"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "cupy found no CUDA device"
        cupy.zeros(1)  # an allocation is the real test: import works without a GPU
    except Exception as exc:  # CUDARuntimeError and friends have no common public base
        return False, f"CUDA is not usable: {exc}"
    return True, "CUDA device available"


def resolve_device(requested: str | None = None) -> str:
    """Resolve ``requested`` (or ``$RECSYS_DEVICE``) to "cpu" or "gpu".

    "gpu" without a usable GPU warns and returns "cpu"; "auto" picks the GPU when present.
    Raises ValueError naming the allowed values for anything else.
    """
    source = "device" if requested else f"${ENV_DEVICE}"
    choice = str(requested or os.environ.get(ENV_DEVICE) or "cpu").strip().lower()
    if choice not in ("cpu", "gpu", "auto", "cuda"):
        raise ValueError(f"{source} must be one of 'cpu', 'gpu', 'auto' ('cuda' = 'gpu'); got {choice!r}")
    if choice == "cpu":
        return "cpu"
    ok, reason = gpu_available()
    if ok:
        return "gpu"
    if choice in ("gpu", "cuda"):
        msg = f"GPU requested but not usable ({reason}); falling back to the CPU (NumPy) backend"
        log.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return "cpu"


def get_backend(device: str | None = None) -> ArrayBackend:
    """The array backend for ``device`` (see :func:`resolve_device`)."""
    if resolve_device(device) == "gpu":
        import cupy
        import cupyx.scipy.sparse as cusparse

        return ArrayBackend("cupy", cupy, cusparse)
    import scipy.sparse as sparse

    return ArrayBackend("numpy", np, sparse)
