"""The time order of training interactions: the rank matrix, its checks, and the features step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.errors import DataError
from pipelines.features.order import check_interaction_order, interaction_order_csr, user_sequences
from pipelines.features.run import run_features
from pipelines.features.store import load_feature_set

FRAME = pd.DataFrame(
    {"user_idx": [0, 0, 0, 1, 1], "item_idx": [3, 1, 2, 0, 3], "timestamp": [30, 10, 10, 5, 1]}
)


def test_ranks_follow_time_with_ties_broken_by_item():
    order = interaction_order_csr(FRAME, 2, 4)
    np.testing.assert_array_equal(order.toarray(), [[0, 1, 2, 3], [2, 0, 0, 1]])
    train = sp.csr_matrix(np.array([[0, 5, 4, 3], [1, 0, 0, 2]], dtype=np.float32))
    assert [s.tolist() for s in user_sequences(train, order)] == [[1, 2, 3], [3, 0]]
    shuffled = user_sequences(train, None, np.random.default_rng(0))
    assert [sorted(s.tolist()) for s in shuffled] == [[1, 2, 3], [0, 3]]
    with pytest.raises(ValueError, match="needs an rng"):
        user_sequences(train, None)
    with pytest.raises(DataError, match="repeats a"):
        interaction_order_csr(pd.concat([FRAME, FRAME.head(1)]), 2, 4)
    with pytest.raises(DataError, match="no column"):
        interaction_order_csr(FRAME.drop(columns="timestamp"), 2, 4)


def test_order_must_match_the_training_entries():
    train = sp.csr_matrix(np.array([[0, 5, 4, 3], [1, 0, 0, 2]], dtype=np.float32))
    order = interaction_order_csr(FRAME, 2, 4)
    assert check_interaction_order(order, train).nnz == train.nnz
    with pytest.raises(TypeError, match="SciPy sparse"):
        check_interaction_order(order.toarray(), train)
    with pytest.raises(ValueError, match=r"does not cover the same .*\(first at user 1\)"):
        check_interaction_order(order, sp.csr_matrix(np.array([[0, 5, 4, 3], [1, 2, 0, 0]], dtype=np.float32)))
    negative = order.copy()
    negative.data[0] = -1
    with pytest.raises(ValueError, match="positive finite ranks"):
        check_interaction_order(negative, train)


def test_features_step_writes_the_order_and_the_featurizer(tmp_path: Path, clean_uri: Path, items_uri: Path):
    result = run_features({}, str(clean_uri), str(items_uri), str(tmp_path / "lake"), "r")
    fs = load_feature_set(result["features_uri"])
    assert fs.train_order is not None and fs.train_order.shape == fs.train.shape
    fs.train.sort_indices()
    check_interaction_order(fs.train_order, fs.train)  # same entries as train
    rows = pd.read_parquet(Path(result["features_uri"]) / "train.parquet")
    user = int(rows["user_idx"].iloc[0])
    mine = rows[rows["user_idx"] == user].sort_values(["timestamp", "item_idx"])
    ranks = fs.train_order[user].toarray()[0, mine["item_idx"].to_numpy()]
    np.testing.assert_array_equal(ranks, np.arange(1, len(mine) + 1))
    assert fs.content_featurizer is not None
    assert fs.content_featurizer.feature_names == fs.item_feature_names
