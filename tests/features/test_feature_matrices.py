"""CSR construction: shape of the full encoding, float32, duplicates summed, bounds checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import DataError
from pipelines.features.matrices import build_csr, interactions_to_csr


def test_build_csr_sums_duplicates_and_keeps_full_shape() -> None:
    m = build_csr(np.array([0, 0, 2]), np.array([1, 1, 3]), np.array([1.0, 2.5, 4.0]), 5, 6)
    assert m.shape == (5, 6) and m.dtype == np.float32 and m.nnz == 2
    assert m[0, 1] == pytest.approx(3.5) and m[2, 3] == pytest.approx(4.0)
    assert m.has_canonical_format


def test_implicit_values_are_one() -> None:
    df = pd.DataFrame({"user_idx": [0, 1], "item_idx": [2, 0], "rating": [4.5, 1.0]})
    assert interactions_to_csr(df, 2, 3).toarray().tolist() == [[0, 0, 4.5], [1.0, 0, 0]]
    assert interactions_to_csr(df, 2, 3, implicit=True).toarray().tolist() == [[0, 0, 1], [1, 0, 0]]


def test_out_of_range_index_is_named() -> None:
    with pytest.raises(DataError, match="item_idx 3 is outside"):
        build_csr(np.array([0]), np.array([3]), None, 1, 3)
    with pytest.raises(DataError, match="differ in length"):
        build_csr(np.array([0, 1]), np.array([0]), None, 2, 2)
