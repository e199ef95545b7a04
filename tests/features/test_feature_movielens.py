"""The stratified split on MovieLens latest-small (skipped when the data set is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.features.splits import stratified_split

RATINGS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-latest-small" / "ratings.csv"


@pytest.mark.skipif(not RATINGS.exists(), reason=f"MovieLens latest-small not found at {RATINGS}")
def test_movielens_stratified_split() -> None:
    ratings = pd.read_csv(RATINGS).rename(
        columns={"userId": "user_idx", "movieId": "item_idx"}
    )
    train, test = stratified_split(ratings, test_fraction=0.25, seed=42)
    assert ratings["user_idx"].nunique() == 610
    assert train["user_idx"].nunique() == 610 and set(test["user_idx"]) <= set(train["user_idx"])
    assert len(train) + len(test) == len(ratings) == 100_836
    assert abs(len(train) / len(ratings) - 0.75) < 0.002
    per_user = train.groupby("user_idx").size() / ratings.groupby("user_idx").size()
    assert per_user.between(0.7, 0.8).all()  # every user has >= 20 ratings: rounding stays small
    assert not set(zip(train["user_idx"], train["item_idx"])) & set(zip(test["user_idx"], test["item_idx"]))
    again = stratified_split(ratings, test_fraction=0.25, seed=42)[1]
    assert np.array_equal(again.index, test.index)
