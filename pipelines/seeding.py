"""One seed helper for every stochastic step."""

from __future__ import annotations

import random

import numpy as np

DEFAULT_SEED = 42


def rng(seed: int | None = DEFAULT_SEED) -> np.random.Generator:
    """Return a NumPy Generator for ``seed`` (``None`` means DEFAULT_SEED, never entropy)."""
    return np.random.default_rng(DEFAULT_SEED if seed is None else seed)


def seed_everything(seed: int = DEFAULT_SEED) -> None:
    """Seed Python, NumPy's legacy global state and torch (if already imported)."""
    import sys

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
