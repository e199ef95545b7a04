"""The item-stratified split: Microsoft Recommenders' MovieLens benchmark protocol, exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.features.config import FeatureConfig
from pipelines.features.splits import item_stratified_split, split_interactions

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


def pairs(df: pd.DataFrame, user: str = "user_idx", item: str = "item_idx") -> set[tuple[int, int]]:
    return set(zip(df[user].tolist(), df[item].tolist()))


def recommenders_item_split(data: pd.DataFrame, ratio: float, seed: int, item: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """recommenders/datasets/python_splitters.py ``_do_stratification(filter_by="item",
    is_random=True)`` transcribed line by line (global seed replaced by the same RandomState)."""
    data = data.copy()
    data["random"] = np.random.RandomState(seed).rand(data.shape[0])
    data = data.sort_values([item, "random"])
    groups = data.groupby(item)
    data["count"] = groups[item].transform("count")
    data["rank"] = groups.cumcount() + 1
    data["rank"] = data["rank"] / data["count"]
    splits, previous = [], None
    for threshold in np.cumsum([ratio, 1 - ratio]):
        condition = data["rank"] <= threshold
        if previous is not None:
            condition &= data["rank"] > previous
        splits.append(data[condition])
        previous = threshold
    return splits[0], splits[1]


@pytest.mark.parametrize("seed", [42, 7])
def test_item_split_is_recommenders_partition(encoded: pd.DataFrame, seed: int) -> None:
    train, test = item_stratified_split(encoded, 0.25, seed=seed)
    ref_train, ref_test = recommenders_item_split(encoded, 0.75, seed, "item_idx")
    assert (pairs(train), pairs(test)) == (pairs(ref_train), pairs(ref_test))
    assert list(train.index) == sorted(train.index)  # input row order kept
    sizes = encoded.groupby("item_idx").size()
    n_train = train.groupby("item_idx").size().reindex(sizes.index, fill_value=0)
    assert (n_train == np.floor(0.75 * sizes)).all()  # an item rated once is test only


def test_item_split_through_the_features_config(encoded: pd.DataFrame) -> None:
    parts = split_interactions(encoded, FeatureConfig(split="stratified", stratify_by="item", seed=42))
    train, test = item_stratified_split(encoded, 0.25, seed=42)
    # Test rows of users with no training row are dropped (and counted) by the step.
    warm = test["user_idx"].isin(train["user_idx"])
    assert pairs(parts.test) == pairs(test[warm]) and parts.cold_dropped == int((~warm).sum())
    assert pairs(parts.train) == pairs(train)
    default = split_interactions(encoded, FeatureConfig(seed=42))
    assert pairs(default.test) != pairs(parts.test)  # the default stays per user


def test_item_split_with_validation(encoded: pd.DataFrame) -> None:
    parts = split_interactions(encoded, FeatureConfig(stratify_by="item", validation_fraction=0.2))
    assert len(parts.validation) > 0
    assert len(parts.train) + len(parts.test) + len(parts.validation) + parts.cold_dropped == len(encoded)
    for a, b in ((parts.train, parts.test), (parts.train, parts.validation), (parts.test, parts.validation)):
        assert not pairs(a) & pairs(b)


def test_movielens_item_split_in_file_order(movielens_dir) -> None:
    ratings = pd.read_csv(movielens_dir / "ratings.csv")
    train, test = item_stratified_split(ratings, 0.25, seed=42, col_item="movieId")
    ref_train, ref_test = recommenders_item_split(ratings, 0.75, 42, "movieId")
    assert pairs(train, "userId", "movieId") == pairs(ref_train, "userId", "movieId")
    assert len(test) == len(ref_test) and len(train) + len(test) == 100_836
    # Items rated once (3,446 of 9,724) have no training row: a sparser train than the per-user split.
    once = ratings.groupby("movieId").size().eq(1)
    assert not set(train["movieId"]) & set(once[once].index)
