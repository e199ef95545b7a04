"""Split properties: disjoint, complete, seeded, right fractions, temporal order respected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import ConfigError
from pipelines.features.config import FeatureConfig
from pipelines.features.splits import (
    _order_by_group_then_draw,
    random_split,
    split_interactions,
    stratified_split,
    temporal_cutoff,
    temporal_last_n,
)

from feature_fixtures import make_interactions


@pytest.fixture
def encoded() -> pd.DataFrame:
    raw = make_interactions(n_users=60, n_items=50, per_user=(1, 20), seed=1)
    return pd.DataFrame(
        {
            "user_idx": pd.factorize(raw["user_id"], sort=True)[0].astype(np.int32),
            "item_idx": pd.factorize(raw["item_id"], sort=True)[0].astype(np.int32),
            "rating": raw["rating"].astype(np.float32),
            "timestamp": raw["timestamp"],
        }
    )


def pairs(df: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(df["user_idx"].tolist(), df["item_idx"].tolist()))


def assert_valid_split(df: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame) -> None:
    assert not pairs(train) & pairs(test)
    assert set(test["user_idx"]) <= set(train["user_idx"])


def recommenders_stratified(data: pd.DataFrame, ratio: float, seed: int) -> tuple[set, set]:
    """Microsoft Recommenders' _do_stratification (filter_by="user", is_random=True), transcribed."""
    data = data.copy()
    data["random"] = np.random.RandomState(seed).rand(data.shape[0])  # = np.random.seed(seed); rand()
    data = data.sort_values(["user_idx", "random"])
    groups = data.groupby("user_idx")
    data["count"] = groups["user_idx"].transform("count")
    data["rank"] = groups.cumcount() + 1
    train = data[data["rank"] <= round(ratio * data["count"])]
    test = data[(data["rank"] > round(ratio * data["count"])) & (data["rank"] <= round(1.0 * data["count"]))]
    return pairs(train), pairs(test)


def test_stratified_matches_recommenders_protocol(encoded: pd.DataFrame) -> None:
    train, test = stratified_split(encoded, 0.25, seed=42)
    assert (pairs(train), pairs(test)) == recommenders_stratified(encoded, 0.75, 42)
    assert_valid_split(encoded, train, test)
    assert len(train) + len(test) == len(encoded)
    sizes = encoded.groupby("user_idx").size()
    n_train = train.groupby("user_idx").size().reindex(sizes.index, fill_value=0)
    assert (n_train == np.round(0.75 * sizes)).all()  # round half to even, like pandas


def test_stratified_is_seeded(encoded: pd.DataFrame) -> None:
    a = stratified_split(encoded, 0.25, seed=7)[1]
    b = stratified_split(encoded, 0.25, seed=7)[1]
    c = stratified_split(encoded, 0.25, seed=8)[1]
    pd.testing.assert_frame_equal(a, b)
    assert pairs(a) != pairs(c)


def test_stratified_keeps_one_train_row_per_user() -> None:
    df = pd.DataFrame({"user_idx": [0, 1, 1], "item_idx": [0, 0, 1], "timestamp": [1, 2, 3]})
    train, test = stratified_split(df, 0.9, seed=0)
    assert sorted(train["user_idx"]) == [0, 1] and test["user_idx"].tolist() == [1]


def test_random_split_fraction_and_guarantees(encoded: pd.DataFrame) -> None:
    train, test = random_split(encoded, 0.3, seed=3)
    assert_valid_split(encoded, train, test)
    assert len(train) + len(test) == len(encoded)
    assert abs(len(test) / len(encoded) - 0.3) < 0.06
    assert set(train["user_idx"]) == set(encoded["user_idx"])
    pd.testing.assert_frame_equal(test, random_split(encoded, 0.3, seed=3)[1])
    assert pairs(test) != pairs(random_split(encoded, 0.3, seed=4)[1])


def test_bad_fraction_is_a_config_error(encoded: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match=r"test_fraction must be in \(0, 1\)"):
        random_split(encoded, 1.5)


@pytest.mark.parametrize("n", [1, 3])
def test_temporal_last_n_picks_the_latest(encoded: pd.DataFrame, n: int) -> None:
    train, test = temporal_last_n(encoded, n)
    assert_valid_split(encoded, train, test)
    sizes = encoded.groupby("user_idx").size()
    assert set(test["user_idx"]) == set(sizes[sizes > n].index)
    assert (test.groupby("user_idx").size() == n).all()
    latest_train = train.groupby("user_idx")["timestamp"].max()
    earliest_test = test.groupby("user_idx")["timestamp"].min()
    assert (earliest_test >= latest_train.reindex(earliest_test.index)).all()


def test_temporal_cutoff_drops_cold_rows(encoded: pd.DataFrame) -> None:
    cutoff = int(encoded["timestamp"].quantile(0.8))
    late_only = pd.DataFrame(  # a user and an item that appear only after the cutoff
        {"user_idx": [60, 60, 0], "item_idx": [0, 1, 50], "rating": 3.0, "timestamp": cutoff + 10}
    )
    encoded = pd.concat([encoded, late_only.astype(encoded.dtypes.to_dict())], ignore_index=True)
    train, test, cold = temporal_cutoff(encoded, cutoff)
    assert (train["timestamp"] < cutoff).all() and (test["timestamp"] >= cutoff).all()
    assert len(train) + len(test) + cold == len(encoded)
    assert set(test["item_idx"]) <= set(train["item_idx"])
    assert_valid_split(encoded, train, test)
    # Every row after the cutoff whose user or item is new to train was dropped, and counted.
    late = encoded[encoded["timestamp"] >= cutoff]
    warm = late["user_idx"].isin(train["user_idx"]) & late["item_idx"].isin(train["item_idx"])
    assert cold == int((~warm).sum()) >= 3


@pytest.mark.parametrize(
    "params",
    [
        {"split": "stratified"},
        {"split": "random"},
        {"split": "temporal_last_n", "last_n": 2},
        {"split": "temporal_cutoff", "cutoff": 1_070_000_000},
    ],
)
def test_split_interactions_with_validation(encoded: pd.DataFrame, params: dict) -> None:
    parts = split_interactions(encoded, FeatureConfig(validation_fraction=0.2, **params))
    train, test, validation = parts.train, parts.test, parts.validation
    assert validation is not None and len(validation) > 0 and len(test) > 0
    assert len(train) + len(test) + len(validation) + parts.cold_dropped == len(encoded)
    for a, b in ((train, test), (train, validation), (test, validation)):
        assert not pairs(a) & pairs(b)
    assert set(test["user_idx"]) | set(validation["user_idx"]) <= set(train["user_idx"])


def test_split_interactions_without_validation(encoded: pd.DataFrame) -> None:
    parts = split_interactions(encoded, FeatureConfig())
    assert parts.validation is None and parts.cold_dropped == 0
    assert len(parts.train) + len(parts.test) == len(encoded)


@pytest.mark.parametrize("sorted_groups", [True, False])
def test_group_then_draw_order_equals_lexsort(sorted_groups: bool) -> None:
    """The blocked single-key order (rows sorted by user, more than 1023 users, tied draws)
    is exactly np.lexsort's; unsorted groups take lexsort itself."""
    gen = np.random.default_rng(11)
    groups = gen.integers(0, 3000, 20_000).astype(np.int32)
    if sorted_groups:
        groups.sort()
    draws = np.random.RandomState(3).rand(len(groups))
    draws[100:110] = draws[100]  # ties inside a group are broken by row order
    np.testing.assert_array_equal(_order_by_group_then_draw(groups, draws), np.lexsort((draws, groups)))
    off_grid = draws * 0.999999  # not k / 2**53: the integer key would not be exact, lexsort runs
    np.testing.assert_array_equal(_order_by_group_then_draw(groups, off_grid), np.lexsort((off_grid, groups)))
