"""run_features end to end: partition layout, round trip through load_feature_set, idempotency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.errors import ConfigError, DataError
from pipelines.features.run import run_features
from pipelines.features.store import load_feature_set

from feature_fixtures import write_clean


def snapshot(features_uri: str) -> dict:
    """Everything a features partition holds, in comparable form."""
    folder = Path(features_uri)
    out: dict = {"files": sorted(p.name for p in folder.iterdir())}
    for path in sorted(folder.iterdir()):
        if path.is_dir():  # the content featurizer: JSON vocabularies and NPZ IDF weights
            out[path.name] = {
                p.name: p.read_text() if p.suffix == ".json" else {k: v.tolist() for k, v in np.load(p).items()}
                for p in sorted(path.iterdir())
            }
        elif path.suffix == ".npz":
            out[path.name] = sp.load_npz(path).toarray()
        elif path.suffix == ".parquet":
            out[path.name] = pd.read_parquet(path)
        else:
            out[path.name] = path.read_text()
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a["files"] == b["files"]
    for name in a["files"]:
        if isinstance(a[name], np.ndarray):
            assert np.array_equal(a[name], b[name]), name
        elif isinstance(a[name], pd.DataFrame):
            pd.testing.assert_frame_equal(a[name], b[name])
        else:
            assert a[name] == b[name], name


def test_round_trip(tmp_path: Path, clean_uri: Path, items_uri: Path, interactions: pd.DataFrame) -> None:
    lake = tmp_path / "lake"
    result = run_features({"validation_fraction": 0.1}, str(clean_uri), str(items_uri), str(lake), "run 1")
    uri = Path(result["features_uri"])
    assert uri == lake / "features" / "run_1"
    assert sorted(p.name for p in uri.iterdir()) == sorted(
        ["user_index.parquet", "item_index.parquet", "train.npz", "test.npz", "validation.npz",
         "train.parquet", "test.parquet", "item_features.npz", "item_feature_names.json", "manifest.json",
         "train_order.npz", "content_featurizer"]
    )
    fs = load_feature_set(uri)
    n_users, n_items = interactions["user_id"].nunique(), interactions["item_id"].nunique()
    assert (result["n_users"], result["n_items"]) == (n_users, n_items) == (fs.n_users, fs.n_items)
    assert fs.train.shape == fs.test.shape == fs.validation.shape == (n_users, n_items)
    assert (fs.train.nnz, fs.test.nnz, fs.validation.nnz) == (
        result["n_train"], result["n_test"], result["n_validation"]
    )
    assert result["n_train"] + result["n_test"] + result["n_validation"] == len(interactions)
    assert fs.train.multiply(fs.test).nnz == 0 and fs.train.multiply(fs.validation).nnz == 0

    # Indices map back to the raw ids and ratings of the clean data.
    truth = interactions.set_index(["user_id", "item_id"])["rating"]
    test_rows = pd.read_parquet(uri / "test.parquet")
    assert list(test_rows.columns) == ["user_idx", "item_idx", "rating", "timestamp"]
    keys = list(zip(fs.user_ids[test_rows["user_idx"]], fs.item_ids[test_rows["item_idx"]]))
    assert np.allclose(truth.loc[keys].to_numpy(), test_rows["rating"])
    coo = fs.test.tocoo()
    assert np.allclose(truth.loc[list(zip(fs.user_ids[coo.row], fs.item_ids[coo.col]))].to_numpy(), coo.data)

    # Content features: one row per item_idx, item "i005" had no metadata.
    assert fs.item_features.shape == (n_items, len(fs.item_feature_names))
    assert fs.item_features[list(fs.item_ids).index("i005")].nnz == 0

    manifest = fs.manifest
    assert manifest["config"]["validation_fraction"] == 0.1 and manifest["cold_dropped"] == 0
    assert manifest["below_min_rating"] == 0 and manifest["n_interactions"] == len(interactions)


def test_rerun_is_idempotent(tmp_path: Path, clean_uri: Path, items_uri: Path) -> None:
    lake = str(tmp_path / "lake")
    config = {"split": "random", "validation_fraction": 0.2, "seed": 5}
    first = snapshot(run_features(config, str(clean_uri), str(items_uri), lake, "k")["features_uri"])
    second = snapshot(run_features(config, str(clean_uri), str(items_uri), lake, "k")["features_uri"])
    assert_same(first, second)
    # A re-run with another config replaces the partition: no stale validation or content files.
    uri = run_features({"content_features": False}, str(clean_uri), str(items_uri), lake, "k")["features_uri"]
    assert not (Path(uri) / "validation.npz").exists() and not (Path(uri) / "item_features.npz").exists()
    assert load_feature_set(uri).validation is None
    assert [p.name for p in (tmp_path / "lake" / "features").iterdir()] == ["k"]


def test_layout_does_not_change_the_result(tmp_path: Path, interactions: pd.DataFrame) -> None:
    one = write_clean(tmp_path / "a", interactions, n_files=1)
    three = write_clean(tmp_path / "b", interactions.sample(frac=1.0, random_state=1), n_files=3)
    first = snapshot(run_features({}, str(one), None, str(tmp_path / "out"), "one")["features_uri"])
    second = snapshot(run_features({}, str(three / "interactions"), None, str(tmp_path / "out"), "two")["features_uri"])
    for name in ("train.npz", "test.npz", "user_index.parquet", "item_index.parquet"):
        assert_same({"files": [name], name: first[name]}, {"files": [name], name: second[name]})


def test_min_rating_temporal_and_implicit(tmp_path: Path, clean_uri: Path, interactions: pd.DataFrame) -> None:
    config = {"split": "temporal_last_n", "last_n": 2, "min_rating": 2.5, "implicit": True}
    result = run_features(config, str(clean_uri), None, str(tmp_path / "lake"), "r")
    fs = load_feature_set(result["features_uri"])
    below = int((interactions["rating"] < 2.5).sum())
    assert fs.manifest["below_min_rating"] == below > 0
    assert result["n_train"] + result["n_test"] == len(interactions) - below
    assert set(fs.train.data) == {1.0} and set(fs.test.data) == {1.0}
    train_rows = pd.read_parquet(Path(result["features_uri"]) / "train.parquet")
    assert train_rows["rating"].min() >= 2.5  # the parquet keeps the ratings
    assert fs.item_features is None and fs.manifest["n_item_features"] == 0


def test_errors_name_the_input(tmp_path: Path, clean_uri: Path, interactions: pd.DataFrame) -> None:
    lake = str(tmp_path / "lake")
    earlier = Path(run_features({}, str(clean_uri), None, lake, "r")["features_uri"])
    with pytest.raises(DataError, match="clean partition .*nowhere.* does not exist"):
        run_features({}, str(tmp_path / "nowhere"), None, lake, "r")
    # A failed re-run leaves the earlier complete partition as it was, and no temporary folder.
    assert load_feature_set(earlier).n_users > 0
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["r"]
    unfinished = write_clean(tmp_path / "half", interactions)
    (unfinished / "manifest.json").unlink()  # what a crash or a manual clear leaves
    with pytest.raises(DataError, match="has no manifest.json: it is incomplete"):
        run_features({}, str(unfinished), None, lake, "r")
    with pytest.raises(ConfigError, match="test_fraction"):
        run_features({"test_fraction": 2}, str(clean_uri), None, lake, "r")
    with pytest.raises(DataError, match="missing.parquet"):
        run_features({}, str(clean_uri), str(tmp_path / "missing.parquet"), lake, "r")
    doubled = write_clean(tmp_path / "dup", pd.concat([interactions, interactions.iloc[:1]]))
    with pytest.raises(DataError, match=r"1 repeated \(user_id, item_id\) pairs, e.g. \('u000'"):
        run_features({}, str(doubled), None, lake, "r")
    with pytest.raises(DataError, match="has no manifest.json"):
        load_feature_set(tmp_path)


def test_cold_test_rows_are_counted_warned_and_capped(tmp_path: Path, interactions: pd.DataFrame, caplog) -> None:
    from pipelines.errors import ColdTestRowsError
    from pipelines.features.run import run_features_from_split

    users = sorted(interactions["user_id"].unique())
    train = interactions[interactions["user_id"].isin(users[:20])]
    warm_test = interactions[interactions["user_id"].isin(users[20:22])]
    cold_users = interactions[interactions["user_id"].isin(users[22:])]
    # Test rows of users 20-21 are warm only if those users also have training rows: split them.
    warm_train, warm_held = warm_test.iloc[::2], warm_test.iloc[1::2]
    train_uri = write_clean(tmp_path / "train", pd.concat([train, warm_train]))
    test_uri = write_clean(tmp_path / "test", pd.concat([warm_held, cold_users]))
    lake = str(tmp_path / "lake")
    n_cold, total = len(cold_users), len(warm_held) + len(cold_users)
    assert n_cold / total > 0.5  # past the default ceiling
    with pytest.raises(ColdTestRowsError, match=rf"{n_cold} of {total} held-out rows .* above max_cold_fraction=0.5"):
        run_features_from_split({}, str(train_uri), str(test_uri), None, lake, "cold")
    assert not (Path(lake) / "features" / "cold").exists()
    with caplog.at_level("WARNING"):
        result = run_features_from_split({"max_cold_fraction": 1.0}, str(train_uri), str(test_uri), None, lake, "cold")
    assert result["cold_dropped"] == n_cold and result["n_test"] == len(warm_held)
    assert "above warn_cold_fraction=0.1" in caplog.text
