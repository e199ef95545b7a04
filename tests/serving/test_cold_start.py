"""Cold start through the serving bundle and the pyfunc, one path per case.

(a) a new item with metadata becomes recommendable (content featurizer + content models);
(b) a new user with a few seed items is folded in (``score_new_users``);
(c) an unknown user without seeds gets the popular items.

The catalog has four genres; each user likes one genre (and strays once), so a good model
recommends a genre's items to its fans and to a new user seeded with that genre.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.features.content import FEATURIZER_JSON, FEATURIZER_NPZ, ContentFeaturizer, fit_item_content_features
from pipelines.models import create_model
from pipelines.serving.bundle import RecommenderBundle, parse_seed_items

GENRES = ("Comedy", "Drama", "Horror", "Western")
WORDS = {"Comedy": "laugh", "Drama": "tears", "Horror": "scream", "Western": "cowboy"}
PER_GENRE, N_USERS = 12, 80
FAST = {
    "als": {"factors": 8, "iterations": 10, "regularization": 1.0},
    "content": {},
    "hybrid": {"base_params": {"factors": 8, "iterations": 10, "regularization": 1.0}},
    "item2vec": {"window": 20, "epochs": 20, "subsample": 0.0, "vector_size": 16},  # tiny corpus: no subsampling
    "sequence": {"epochs": 10, "patience": 0, "hidden_size": 32, "embedding_dim": 32, "max_length": 20,
                 "learning_rate": 0.01, "batch_size": 32, "loss": "sampled", "n_negatives": 20},
}


def genre_of(item: int) -> str:
    return GENRES[item // PER_GENRE]


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    items = np.arange(len(GENRES) * PER_GENRE)
    return pd.DataFrame(
        {
            "item_id": [f"m{i:03d}" for i in items],
            "title": [f"The {WORDS[genre_of(i)]} story {i} (1999)" for i in items],
            "genres": [genre_of(i) for i in items],
            "tags": [f"{WORDS[genre_of(i)]} classic" for i in items],
        }
    )


@pytest.fixture(scope="module")
def interactions():
    """(train CSR, time order CSR): user u likes genre u % 4, picks 7 of its items and 1 other."""
    rng = np.random.default_rng(0)
    rows, cols = [], []
    for user in range(N_USERS):
        genre = user % len(GENRES)
        liked = genre * PER_GENRE + rng.choice(PER_GENRE, size=7, replace=False)
        stray = rng.choice(np.setdiff1d(np.arange(len(GENRES) * PER_GENRE), np.arange(genre * PER_GENRE, (genre + 1) * PER_GENRE)))
        picks = rng.permutation(np.r_[liked, stray])
        rows.extend([user] * len(picks))
        cols.extend(picks.tolist())
    shape = (N_USERS, len(GENRES) * PER_GENRE)
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    ranks = np.concatenate([np.arange(1, 9)] * N_USERS).astype(np.float32)
    order = sp.csr_matrix((ranks, (rows, cols)), shape=shape)
    return train, order


def make_bundle(name: str, catalog: pd.DataFrame, interactions, with_featurizer: bool = True) -> RecommenderBundle:
    train, order = interactions
    index = pd.DataFrame({"item_id": catalog["item_id"], "item_idx": np.arange(len(catalog))})
    features, featurizer = fit_item_content_features(catalog, index)
    model = create_model(name, FAST[name])
    inputs = {"item_features": features}
    if model.uses_interaction_order:
        inputs["interaction_order"] = order
    model.fit(train, **inputs)
    return RecommenderBundle(
        model=model,
        user_ids=np.array([f"u{u:03d}" for u in range(N_USERS)]),
        item_ids=catalog["item_id"].to_numpy(),
        seen=train,
        featurizer=featurizer if with_featurizer and model.requires_item_features else None,
    )


def share_of_genre(item_ids, genre: str) -> float:
    return float(np.mean([genre_of(int(i[1:])) == genre for i in item_ids]))


# -- (a) new items with metadata ------------------------------------------------------------
def test_featurizer_saves_plain_files_and_featurizes_new_items(catalog, tmp_path):
    index = pd.DataFrame({"item_id": catalog["item_id"], "item_idx": np.arange(len(catalog))})
    features, featurizer = fit_item_content_features(catalog, index)
    folder = featurizer.save(tmp_path / "featurizer")
    assert sorted(p.name for p in folder.iterdir()) == sorted([FEATURIZER_JSON, FEATURIZER_NPZ])
    meta = json.loads((folder / FEATURIZER_JSON).read_text())
    assert meta["genres"] == sorted(GENRES)
    with np.load(folder / FEATURIZER_NPZ, allow_pickle=False) as arrays:  # no pickled objects
        assert set(arrays.files) == {"idf_title", "idf_tag"}
    loaded = ContentFeaturizer.load(folder)
    assert loaded.feature_names == featurizer.feature_names
    np.testing.assert_allclose(loaded.transform(catalog).toarray(), features.toarray(), rtol=1e-6)
    new = pd.DataFrame({"item_id": ["new"], "title": ["Scream again"], "genres": ["Horror|Musical"], "tags": [None]})
    row = pd.Series(loaded.transform(new).toarray()[0], index=loaded.feature_names)
    assert row["genre=Horror"] > 0 and row["title=scream"] > 0  # "Musical" and "again" are unknown
    assert set(row[row > 0].index) == {"genre=Horror", "title=scream"}
    assert np.isclose(np.linalg.norm(row), 1.0)
    with pytest.raises(Exception, match="no content featurizer"):
        ContentFeaturizer.load(tmp_path / "nowhere")


@pytest.mark.parametrize(("name", "beaten"), [("content", 1.0), ("hybrid", 0.9)])
def test_content_models_recommend_a_new_item(name, beaten, catalog, interactions, tmp_path):
    """The new horror item outranks every item of another genre for horror fans (content) or
    nearly all of them (hybrid: a cold item's collaborative part is neutral, and a fan's one
    stray pick lifts a few items of another genre)."""
    bundle = make_bundle(name, catalog, interactions)
    new = pd.DataFrame(
        {"item_id": ["fresh", "m000"], "title": ["Scream scream", "ignored"], "genres": ["Horror", "Drama"],
         "tags": ["scream classic", ""]}
    )
    assert bundle.add_items(new) == ["fresh"]  # m000 is known: left as it is
    assert bundle.add_items(new) == []
    assert bundle.seen.shape == (N_USERS, len(catalog) + 1)
    horror_fans = [f"u{u:03d}" for u in range(2, N_USERS, 4)]
    ranked = bundle.recommend(horror_fans, k=len(catalog) + 1)
    for _, frame in ranked.groupby("user_id"):
        position = dict(zip(frame["item_id"], frame["rank"]))
        others = np.array([position[i] for i in position if i != "fresh" and genre_of(int(i[1:])) != "Horror"])
        assert np.mean(position["fresh"] < others) >= beaten
    reloaded = RecommenderBundle.load(bundle.save(tmp_path / "bundle"))
    assert reloaded.featurizer is not None and "fresh" in set(reloaded.item_ids)
    pd.testing.assert_frame_equal(reloaded.recommend(horror_fans, k=5), bundle.recommend(horror_fans, k=5))


def test_other_models_and_bundles_without_featurizer_refuse_new_items(catalog, interactions):
    als = make_bundle("als", catalog, interactions)
    with pytest.raises(ValueError, match="model 'als' cannot recommend items without interactions"):
        als.add_items(catalog.head(1).assign(item_id="x"))
    with pytest.raises(NotImplementedError, match="cannot add items after fit"):
        als.model.add_items(sp.csr_matrix((1, 3)))
    bare = make_bundle("content", catalog, interactions, with_featurizer=False)
    with pytest.raises(ValueError, match="no content featurizer"):
        bare.add_items(catalog.head(1).assign(item_id="x"))


# -- (b) new users with seed items ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FAST))
def test_seed_items_fold_a_new_user_in(name, catalog, interactions):
    bundle = make_bundle(name, catalog, interactions)
    seeds = ["m024", "m025", "m026", "not-an-item"]  # three horror movies and an unknown id
    result = bundle.recommend_for_seed_items(seeds, k=5)
    assert list(result.columns) == ["rank", "item_id", "score", "source"] and result["rank"].tolist() == [1, 2, 3, 4, 5]
    assert not set(result["item_id"]) & set(seeds)
    assert share_of_genre(result["item_id"], "Horror") >= 0.6, result


def test_als_fold_in_solves_the_users_vector(interactions):
    train, _ = interactions
    model = create_model("als", {"factors": 8, "iterations": 30, "regularization": 1.0, "cg_steps": 8}).fit(train)
    np.testing.assert_allclose(model.score_new_users(train[:10]), model.score(np.arange(10)), atol=0.02)
    weighted = train[:3].copy()
    weighted.data *= 3.0  # confidences above 1 take the exact weighted solve
    assert np.isfinite(model.score_new_users(weighted)).all()
    empty = model.score_new_users(sp.csr_matrix((1, train.shape[1]), dtype=np.float32))
    np.testing.assert_array_equal(empty[0], model.item_popularity_)


def test_seed_parsing():
    assert parse_seed_items("a| b ||c") == ["a", "b", "c"]
    assert parse_seed_items(["a", 7]) == ["a", "7"] and parse_seed_items(np.array(["x"])) == ["x"]
    assert parse_seed_items(None) == [] and parse_seed_items(float("nan")) == [] and parse_seed_items("") == []
    assert parse_seed_items(pd.NA) == []
    with pytest.raises(TypeError, match="seed items must be"):
        parse_seed_items(3)


# -- (c) unknown users without seeds ---------------------------------------------------------
def test_unknown_users_without_seeds_get_the_popular_items(catalog, interactions):
    bundle = make_bundle("als", catalog, interactions)
    train, _ = interactions
    popular = np.argsort(-np.asarray((train > 0).sum(axis=0)).ravel(), kind="stable")[:5]
    expected_scores = np.sort(np.asarray((train > 0).sum(axis=0)).ravel())[::-1][:5]
    nobody = bundle.recommend(["nobody"], k=5)
    np.testing.assert_array_equal(nobody["score"], expected_scores)
    assert set(nobody["item_id"]) <= set(bundle.item_ids[np.argsort(-bundle.model.item_popularity_)[:10]])
    assert set(bundle.item_ids[popular[:1]]) <= set(nobody["item_id"])
    unknown_seeds = bundle.recommend_for_seed_items(["not-an-item"], k=5)
    np.testing.assert_array_equal(unknown_seeds["item_id"], nobody["item_id"])


# -- the pyfunc: seed_items column -----------------------------------------------------------
def test_pyfunc_takes_seed_items_for_unknown_users(catalog, interactions, tmp_path, mlflow_home):
    import mlflow

    from pipelines.tracking.pyfunc import log_bundle_model

    bundle = make_bundle("als", catalog, interactions)
    folder = bundle.save(tmp_path / "bundle")
    with mlflow.start_run():
        info = log_bundle_model(folder, example_users=["u000"])
    model = mlflow.pyfunc.load_model(info.model_uri)
    frame = pd.DataFrame(
        {
            "user_id": ["u001", "new-a", "new-b", "nobody"],
            "seed_items": [["m024"], ["m024", "m025", "m026"], "m012|m013|m014", None],
        }
    )
    out = model.predict(frame, params={"k": 4})
    assert out["user_id"].drop_duplicates().tolist() == ["u001", "new-a", "new-b", "nobody"]
    by_user = {user: part["item_id"].tolist() for user, part in out.groupby("user_id")}
    # A known user ignores the seeds: same as without them.
    assert by_user["u001"] == bundle.recommend(["u001"], k=4)["item_id"].tolist()
    assert share_of_genre(by_user["new-a"], "Horror") >= 0.75 and not {"m024", "m025", "m026"} & set(by_user["new-a"])
    assert share_of_genre(by_user["new-b"], "Drama") >= 0.75
    assert by_user["nobody"] == bundle.recommend(["nobody"], k=4)["item_id"].tolist()
    plain = model.predict(pd.DataFrame({"user_id": ["nobody", "u001"]}), params={"k": 4})
    assert plain["user_id"].drop_duplicates().tolist() == ["nobody", "u001"]
