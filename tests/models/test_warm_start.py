"""Warm starts: shared users and items start from the previous fit, new ones as a cold fit would,
the quality holds on MovieLens in time order, families that cannot are refused, and the train step
starts from a registered champion and says so in its run's tags."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.errors import WarmStartError
from pipelines.models import create_model, load_model
from pipelines.models.warm_start import WarmStart
from tests.conftest import planted_interactions

N_USERS, N_ITEMS = 120, 60


def _planted(n_users: int = N_USERS, n_items: int = N_ITEMS) -> sp.csr_matrix:
    rows, cols = zip(*planted_interactions(n_users=n_users, n_items=n_items, per_user=12))
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


def _retrain_ids(rng: np.random.Generator) -> tuple[list[np.ndarray], sp.csr_matrix, sp.csr_matrix]:
    """Previous ids (100 users, 50 items), the new fit's ids (shuffled, 20 new users and 10 new
    items), and both fits' matrices over their own encodings."""
    full = _planted()
    old_users, old_items = np.arange(100), np.arange(50)
    new_users, new_items = rng.permutation(N_USERS), rng.permutation(N_ITEMS)
    ids = [np.char.add("u", old_users.astype(str)), np.char.add("i", old_items.astype(str)),
           np.char.add("u", new_users.astype(str)), np.char.add("i", new_items.astype(str))]
    return ids, full[old_users][:, old_items].tocsr(), full[new_users][:, new_items].tocsr()


def test_als_starts_shared_rows_from_the_previous_factors_and_new_rows_fresh():
    ids, previous_train, train = _retrain_ids(np.random.default_rng(0))
    previous = create_model("als", {"factors": 8, "iterations": 2}).fit(previous_train)
    warm = WarmStart.from_ids(previous, *ids, source="test/1")
    assert (warm.shared_users, warm.shared_items) == (100, 50)
    assert warm.summary() == {"source": "test/1", "shared_users": 100, "new_users": 20,
                              "shared_items": 50, "new_items": 10}

    model = create_model("als", {"factors": 8, "iterations": 2, "seed": 7})
    users, items = model.initial_factors(train.shape, warm)  # what fit starts from (0 iterations)
    cold_users, cold_items = model.initial_factors(train.shape)
    for start, cold, mapping, old in ((users, cold_users, warm.user_map, previous.user_factors_),
                                      (items, cold_items, warm.item_map, previous.item_factors_)):
        shared = mapping >= 0
        np.testing.assert_array_equal(start[shared], old[mapping[shared]])  # by raw id, not by position
        np.testing.assert_array_equal(start[~shared], cold[~shared])  # the seeded cold draw
        assert not np.allclose(start[shared], cold[shared])
    # A warm fit trains from there: its first sweep ends nearer the optimum than a cold one's.
    warm_fit = create_model("als", {"factors": 8, "iterations": 1, "seed": 7}).fit(train, warm_start=warm)
    cold_fit = create_model("als", {"factors": 8, "iterations": 1, "seed": 7}).fit(train)
    assert warm_fit.training_loss_[0] < cold_fit.training_loss_[0]


def test_early_stopping_of_a_warm_start_holds_out_only_what_the_previous_model_never_saw():
    from pipelines.models.validation import split_for_early_stopping

    ids, previous_train, train = _retrain_ids(np.random.default_rng(3))
    previous = create_model("als", {"factors": 4, "iterations": 1}).fit(previous_train)
    warm = WarmStart.from_ids(previous, *ids, previous_seen=previous_train)
    # The previous interactions, carried to the new indices, are exactly the new matrix's old part.
    shared_users, shared_items = warm.user_map >= 0, warm.item_map >= 0
    old_part = sp.csr_matrix(train.multiply(shared_users[:, None]).multiply(shared_items[None, :]))
    old_part.eliminate_zeros()
    assert (warm.previous_seen != old_part).nnz == 0
    unseen = warm.unseen(train)
    assert unseen.sum() == train.nnz - old_part.nnz > 0

    kept, validation = split_for_early_stopping(train, None, 0.5, 10_000, np.random.default_rng(0), eligible=unseen)
    assert validation.relevant.nnz > 0 and validation.relevant.multiply(warm.previous_seen[validation.users]).nnz == 0
    assert kept.nnz + validation.relevant.nnz == train.nnz  # every user with a held-out item validates
    cold_kept, _ = split_for_early_stopping(train, None, 0.5, 10_000, np.random.default_rng(0))
    assert cold_kept.multiply(old_part).nnz < old_part.nnz  # without the mask, old interactions are held out too


def test_warm_als_is_at_least_as_good_at_equal_iterations_on_movielens_by_time(movielens_dir):
    from benchmarks.warm_start import RESULTS, ndcg, time_slices, warm_start_for

    slices = time_slices(movielens_dir)
    # Tolerance measured by the benchmark: twice the seed-to-seed spread of the cold model's nDCG@10.
    tolerance = json.loads((RESULTS / "warm_start.json").read_text())["families"]["als"]["equal_quality"]["tolerance"]
    champion = create_model("als", {"num_threads": 1}).fit(slices.champion)
    warm, _ = warm_start_for(champion, slices)
    assert warm.shared_users > 0 and warm.summary()["new_items"] > 0
    for iterations in (1, 2):
        params = {"iterations": iterations, "num_threads": 1}
        cold_ndcg = ndcg(create_model("als", params).fit(slices.train), slices)
        warm_ndcg = ndcg(create_model("als", params).fit(slices.train, warm_start=warm), slices)
        assert warm_ndcg >= cold_ndcg - tolerance, (iterations, warm_ndcg, cold_ndcg)


DEEP = {
    "multvae": {"latent_dim": 8, "encoder_dims": (16,)},
    "ncf": {"embedding_dim": 8, "user_input": "id+history", "tower_layers": (8,)},
    "sequence": {"embedding_dim": 8, "hidden_size": 8},
}


@pytest.mark.parametrize("family", sorted(DEEP))
def test_deep_model_warm_starts_from_a_saved_model(family, tmp_path):
    """Saved, loaded (as the registry hands it over), then warm started: with a learning rate too
    small to move a weight, the weights after one epoch are the start: the previous model's rows
    for shared users and items, whole tensors for the rest, fresh rows for new ids."""
    ids, previous_train, train = _retrain_ids(np.random.default_rng(1))
    settings = {**DEEP[family], "epochs": 2, "seed": 3}
    previous = create_model(family, settings).fit(previous_train)
    previous = load_model(previous.save(tmp_path / "previous"))
    warm = WarmStart.from_ids(previous, *ids)
    frozen = {**settings, "epochs": 1, "learning_rate": 1e-12}
    model = create_model(family, frozen).fit(train, warm_start=warm)
    cold = create_model(family, frozen).fit(train)
    rows = model._warm_rows(list(model.module_state_))
    assert {axis for axis, _, _ in rows.values()} == ({"item"} if family != "ncf" else {"user", "item"})
    for name, value in model.module_state_.items():
        old = previous.module_state_[name]
        if name not in rows:
            np.testing.assert_allclose(value, old, atol=1e-6, err_msg=name)
            continue
        axis, dim, offset = rows[name]
        mapping = warm.user_map if axis == "user" else warm.item_map
        shared = np.flatnonzero(mapping >= 0)
        fresh = np.flatnonzero(mapping < 0)
        np.testing.assert_allclose(np.take(value, shared + offset, dim), np.take(old, mapping[shared] + offset, dim),
                                   atol=1e-6, err_msg=name)
        np.testing.assert_allclose(np.take(value, fresh + offset, dim), np.take(cold.module_state_[name], fresh + offset, dim),
                                   atol=1e-6, err_msg=name)
    items, _ = model.recommend(np.arange(train.shape[0]), k=5, exclude=train)
    assert (items >= 0).all()


def test_families_that_cannot_warm_start_refuse_with_the_reason():
    ids, previous_train, train = _retrain_ids(np.random.default_rng(2))
    als = create_model("als", {"factors": 8, "iterations": 1}).fit(previous_train)
    warm = WarmStart.from_ids(als, *ids, source="recsys/4")
    with pytest.raises(WarmStartError, match=r"cannot warm start itemknn from recsys/4: model 'itemknn' cannot warm start"):
        create_model("itemknn").fit(train, warm_start=warm)
    with pytest.raises(WarmStartError, match=r"factors=8 \(previous\) vs 16"):
        create_model("als", {"factors": 16}).fit(train, warm_start=warm)
    popularity = create_model("popularity").fit(previous_train)
    with pytest.raises(WarmStartError, match="only warm start from a als model, not from 'popularity'"):
        create_model("als", {"factors": 8}).fit(train, warm_start=WarmStart.from_ids(popularity, *ids))
    with pytest.raises(WarmStartError, match="the training matrix is 119 x 60"):
        create_model("als", {"factors": 8}).fit(train[:119], warm_start=warm)
    model = create_model("als", {"factors": 8})
    with pytest.raises(WarmStartError):
        model.fit(train[:119], warm_start=warm)
    assert not model.is_fitted


@pytest.mark.slow  # a whole pipeline run with registration, then a train step
def test_train_step_warm_starts_from_the_registered_champion_and_tags_the_run(mlflow_home, tmp_path):
    from pipelines.cli import build_parser
    from pipelines.cli.train import pipeline_config
    from pipelines.data.config import IngestConfig
    from pipelines.features.run import load_feature_set
    from pipelines.pipeline import PipelineConfig, open_tracking, run_pipeline
    from pipelines.training.config import TrainConfig
    from pipelines.training.run import run_training
    from pipelines.training.warm_start import champion_warm_start

    args = build_parser().parse_args(["train", "--model", "als", "--model", "itemknn", "--warm-start"])
    assert [c.warm_start for c in pipeline_config(args).candidates] == [True, True, False]  # the baseline: never

    als = TrainConfig(model="als", params={"factors": 8, "iterations": 10, "regularization": 1.0}, warm_start=True)
    config = PipelineConfig(ingest=IngestConfig(source="synthetic", n_users=150, n_items=80, interactions_per_user=15),
                            candidates=(als,))
    first = run_pipeline(config, "warm-1", out_root=str(tmp_path / "lake"), register=True, tracking_uri=mlflow_home)
    client = mlflow.MlflowClient(mlflow_home)
    tags = client.get_run(first["candidates"][0]["run_id"]).data.tags
    assert (tags["warm_start"], tags["warm_start.reason"]) == ("false", "no champion yet (recsys@champion)")
    version = first["promotion"]["version"]
    client.set_registered_model_alias("recsys", "champion", version)  # whether or not it beat popularity

    # The next run's train step, as the DAG task calls it, finds that champion and starts from it.
    features_uri = first["features"]["features_uri"]
    tracking = open_tracking(config, "warm-2", mlflow_home)
    second = run_training(als, features_uri, str(tmp_path / "lake"), "warm-2", tracking, champion=("recsys", "champion"))
    tags = client.get_run(second["run_id"]).data.tags
    features = load_feature_set(features_uri)
    assert tags["warm_start"] == "true" and tags["warm_start.source"] == f"recsys/{version}"
    assert int(tags["warm_start.shared_users"]) == len(features.user_ids) and tags["warm_start.new_users"] == "0"
    assert int(tags["warm_start.shared_items"]) == len(features.item_ids)
    assert second["warm_start"] == {key: value for key, value in tags.items() if key.startswith("warm_start")}
    assert "warm_start:als" in second["timings"]

    # The other outcomes, and why: the reason a cold fit records.
    def reason(model: str, params: dict | None = None, name: str = "recsys") -> str:
        warm, tags = champion_warm_start(create_model(model, params), features, mlflow_home, name, "champion")
        assert warm is None and tags["warm_start"] == "false"
        return tags["warm_start.reason"]

    assert reason("itemknn") == "model 'itemknn' cannot warm start"
    assert reason("multvae") == f"champion recsys/{version} is a als model, not multvae"
    assert reason("als", {"factors": 16}) == (f"champion recsys/{version}: the parameter shapes differ from the "
                                              "previous als model: factors=8 (previous) vs 16")
    assert reason("als", name="nothing-registered") == "no champion yet (nothing-registered@champion)"
