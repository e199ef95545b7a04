"""Confidence weighting of an interaction matrix (Hu, Koren and Volinsky style, or BM25).

Weights apply to the stored entries of a users x items CSR matrix; empty cells stay empty and the
input is never modified. Schemes, with ``r`` the stored value:

- ``none``:   1.0 (binary)
- ``raw``:    ``r`` as stored (ratings, counts): for models that weight their own inputs
- ``linear``: ``1 + alpha * r``
- ``log``:    ``1 + alpha * log1p(r / epsilon)``
- ``bm25``:   ``alpha *`` implicit's ``bm25_weight(matrix, K1=k1, B=b)``: with N users, ``df_i``
  the users of item i, ``len_u`` user u's row sum and ``avg`` their mean,
  ``r * (k1 + 1) / (k1 * ((1 - b) + b * len_u / avg) + r) * (log(N) - log1p(df_i))``.
  Like implicit, the IDF turns negative for an item nearly every user has.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from pipelines.errors import ConfigError, DataError
from pipelines.features.config import check_range

WeightingScheme = Literal["none", "raw", "linear", "log", "bm25"]


class WeightingConfig(BaseModel):
    """Which confidence weighting to apply and its constants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: WeightingScheme = "none"
    """``none`` (binary), ``raw`` (the stored values), ``linear``, ``log`` or ``bm25``."""
    alpha: float = 1.0
    """Confidence scale (> 0): slope of linear/log, multiplier of bm25."""
    epsilon: float = 1.0
    """``log`` only: values are divided by it before ``log1p`` (> 0)."""
    k1: float = 100.0
    """``bm25`` only: term-frequency saturation (> 0; implicit's default 100)."""
    b: float = 0.8
    """``bm25`` only: length normalisation in [0, 1] (implicit's default 0.8)."""

    @field_validator("alpha", "epsilon", "k1")
    @classmethod
    def _positive(cls, value: float, info: Any) -> float:
        return check_range(info.field_name, value, 0.0, None, low_open=True, high_open=True)

    @field_validator("b")
    @classmethod
    def _unit(cls, value: float) -> float:
        return check_range("b", value, 0.0, 1.0, low_open=False, high_open=False)


def weighting_config(scheme: str | WeightingConfig = "none", **params: Any) -> WeightingConfig:
    """Validate ``scheme`` and its constants; raises ConfigError naming the field and its range."""
    if isinstance(scheme, WeightingConfig):
        return scheme.model_copy(update=params) if params else scheme
    try:
        return WeightingConfig(scheme=scheme, **params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: "
            f"{str(err['msg']).removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid weighting: {problems}") from None


def apply_weighting(
    matrix: sp.spmatrix, scheme: str | WeightingConfig = "none", alpha: float = 1.0, **kw: Any
) -> sp.csr_matrix:
    """A weighted float32 copy of ``matrix`` (any SciPy sparse format; returned as CSR).

    ``scheme`` is a scheme name (with ``alpha`` and the keyword constants ``epsilon``, ``k1``,
    ``b``) or a :class:`WeightingConfig` (then ``alpha``/``kw`` are ignored). Raises ConfigError
    for an unknown scheme or a constant out of range, DataError for negative values under
    ``log``/``bm25``.
    """
    if isinstance(scheme, WeightingConfig):
        config = scheme
    else:
        config = weighting_config(scheme, alpha=alpha, **kw)
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.sum_duplicates()
    values = out.data.astype(np.float64)
    if config.scheme in ("log", "bm25") and len(values) and values.min() < 0:
        raise DataError(
            f"{config.scheme} weighting needs non-negative values; found {values.min():g}"
        )
    if config.scheme == "none":
        weighted = np.ones_like(values)
    elif config.scheme == "raw":
        weighted = values
    elif config.scheme == "linear":
        weighted = 1.0 + config.alpha * values
    elif config.scheme == "log":
        weighted = 1.0 + config.alpha * np.log1p(values / config.epsilon)
    else:
        weighted = config.alpha * _bm25(out, values, config.k1, config.b)
    out.data = weighted.astype(np.float32)
    return out


def _bm25(matrix: sp.csr_matrix, values: np.ndarray, k1: float, b: float) -> np.ndarray:
    """BM25 weights of the stored entries, as ``implicit.nearest_neighbours.bm25_weight``."""
    n_rows, n_cols = matrix.shape
    if len(values) == 0:
        return values
    rows = np.repeat(np.arange(n_rows), np.diff(matrix.indptr))
    cols = matrix.indices
    idf = np.log(float(n_rows)) - np.log1p(np.bincount(cols, minlength=n_cols))
    row_sums = np.bincount(rows, weights=values, minlength=n_rows)
    average = row_sums.mean()
    if average == 0:  # every value is 0: BM25's term factor is 0 too
        return np.zeros_like(values)
    length_norm = (1.0 - b) + b * row_sums / average
    return values * (k1 + 1.0) / (k1 * length_norm[rows] + values) * idf[cols]
