"""Id encodings: contiguous, sorted by id, built with Dask, applied partition by partition."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from pipelines.errors import DataError
from pipelines.features.encoding import build_encodings, encode_interactions


def test_encodings_are_contiguous_and_sorted(interactions: pd.DataFrame) -> None:
    ddf = dd.from_pandas(interactions, npartitions=3)
    users, items = build_encodings(ddf)
    assert list(users.columns) == ["user_id", "user_idx"]
    assert np.array_equal(users["user_idx"].to_numpy(), np.arange(len(users)))
    assert users["user_idx"].dtype == np.int32 and items["item_idx"].dtype == np.int32
    assert users["user_id"].tolist() == sorted(interactions["user_id"].unique())
    assert items["item_id"].tolist() == sorted(interactions["item_id"].unique())


def test_encoding_does_not_depend_on_partitioning(interactions: pd.DataFrame) -> None:
    one = build_encodings(dd.from_pandas(interactions, npartitions=1))
    shuffled = interactions.sample(frac=1.0, random_state=3)
    four = build_encodings(dd.from_pandas(shuffled, npartitions=4))
    for a, b in zip(one, four):
        pd.testing.assert_frame_equal(a, b)


def test_encode_round_trips_ids(interactions: pd.DataFrame) -> None:
    ddf = dd.from_pandas(interactions, npartitions=2)
    users, items = build_encodings(ddf)
    encoded = encode_interactions(ddf, users, items).compute()
    assert dict(encoded.dtypes.astype(str)) == {
        "user_idx": "int32", "item_idx": "int32", "rating": "float32", "timestamp": "int64"
    }
    assert users["user_id"].to_numpy()[encoded["user_idx"]].tolist() == interactions["user_id"].tolist()
    assert items["item_id"].to_numpy()[encoded["item_idx"]].tolist() == interactions["item_id"].tolist()
    assert np.allclose(encoded["rating"], interactions["rating"])


def test_unknown_id_and_missing_column_are_named(interactions: pd.DataFrame) -> None:
    users, items = build_encodings(dd.from_pandas(interactions.iloc[:10], npartitions=1))
    with pytest.raises(DataError, match="is not in the encoding"):
        encode_interactions(dd.from_pandas(interactions, npartitions=1), users, items).compute()
    with pytest.raises(DataError, match="timestamp"):
        encode_interactions(dd.from_pandas(interactions.drop(columns="timestamp"), npartitions=1), users, items)
    with pytest.raises(DataError, match="item_id"):
        build_encodings(dd.from_pandas(interactions.drop(columns="item_id"), npartitions=1))


def test_one_pass_encoding_equals_the_two_pass_one(interactions: pd.DataFrame) -> None:
    from pipelines.features.encoding import encode_in_one_pass

    shuffled = interactions.sample(frac=1.0, random_state=5)
    ddf = dd.from_pandas(shuffled, npartitions=3)
    encoded, users, items, rows_read = encode_in_one_pass(ddf)
    want_users, want_items = build_encodings(ddf)
    pd.testing.assert_frame_equal(users, want_users)
    pd.testing.assert_frame_equal(items, want_items)
    want = encode_interactions(ddf, users, items).compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(encoded, want)
    assert rows_read == len(interactions)
    threshold = float(np.median(interactions["rating"]))
    kept, kept_users, _, rows_read = encode_in_one_pass(ddf, min_rating=threshold)
    assert rows_read == len(interactions) and len(kept) == int((interactions["rating"] >= threshold).sum())
    assert kept_users["user_id"].tolist() == sorted(shuffled.loc[shuffled["rating"] >= threshold, "user_id"].unique())
