"""The one place that chooses the torch device (lenskit's ``configured_device()``, for torch).

Resolution order: the explicit request -> ``$RECSYS_DEVICE`` -> the CPU. A request for "gpu" or
"cuda" (or "cuda:N") gets that CUDA device when torch can use one; without CUDA it logs a
warning and returns the CPU: asking for a GPU never crashes a run. "auto" takes CUDA when
present, quietly. Anything else is a ValueError naming the bad value and its source.

torch itself is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from typing import TYPE_CHECKING, Any

from pipelines.constants import ENV_DEVICE

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_DEVICE_PATTERN = re.compile(r"^(cpu|gpu|auto|cuda(:\d+)?)$")
ALLOWED_DEVICES = "'cpu', 'gpu', 'cuda', 'cuda:N' or 'auto'"


def import_torch() -> Any:
    """Import torch, or raise ImportError saying which models need it and how to get it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed wherever the tests run
        raise ImportError(
            f"the deep models (ncf, multvae) need PyTorch, which is not installed ({exc}); "
            "install torch (CPU or CUDA build) into this environment"
        ) from exc
    return torch


def cuda_available() -> tuple[bool, str]:
    """Whether torch can use a CUDA device, and why not when it cannot."""
    torch = import_torch()
    if not torch.backends.cuda.is_built():
        return False, f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return False, "torch found no usable CUDA device"
    return True, f"{torch.cuda.device_count()} CUDA device(s)"


def resolve_torch_device(requested: str | None = None) -> "torch.device":
    """The torch device for ``requested`` (or ``$RECSYS_DEVICE``; neither means the CPU).

    Accepts "cpu", "gpu" (= "cuda"), "cuda", "cuda:N" and "auto" in any case. A GPU request
    without CUDA, or for a device index torch does not have, logs a warning (and issues a
    RuntimeWarning) and returns ``torch.device("cpu")``. Raises ValueError naming the value and
    where it came from for anything else.
    """
    torch = import_torch()
    source = "device" if requested else f"${ENV_DEVICE}"
    raw = requested if requested else os.environ.get(ENV_DEVICE, "")
    choice = str(raw).strip().lower() or "cpu"
    if not _DEVICE_PATTERN.match(choice):
        raise ValueError(f"{source} must be one of {ALLOWED_DEVICES}; got {raw!r}")
    if choice == "cpu":
        return torch.device("cpu")
    ok, reason = cuda_available()
    if choice == "auto":
        return torch.device("cuda") if ok else torch.device("cpu")
    index = int(choice.split(":")[1]) if ":" in choice else None
    if ok and (index is None or index < torch.cuda.device_count()):
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    if ok:
        reason = f"{choice} asked for but torch sees {torch.cuda.device_count()} CUDA device(s)"
    _warn_fallback(f"GPU requested ({source}={choice!r}) but not usable ({reason}); falling back to the CPU")
    return torch.device("cpu")


def _warn_fallback(message: str) -> None:
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
