"""The synthetic generator: deterministic, partitioned, heavy-tailed, and learnable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.data import synthetic
from pipelines.data.config import IngestConfig
from pipelines.data.synthetic import generate_partition, synthetic_interactions, synthetic_items

CFG = IngestConfig(n_users=400, n_items=200, interactions_per_user=25, n_factors=6, n_partitions=4, seed=7)


def test_same_seed_same_frame_and_other_seed_differs():
    first = generate_partition(CFG, 1)
    pd.testing.assert_frame_equal(first, generate_partition(CFG, 1))
    other = generate_partition(CFG.model_copy(update={"seed": 8}), 1)
    assert not first[["item_id", "rating"]].equals(other[["item_id", "rating"]])


def test_partitions_hold_disjoint_users_and_differ():
    parts = [generate_partition(CFG, p) for p in range(4)]
    users = [set(part["user_id"]) for part in parts]
    assert all(users[a].isdisjoint(users[b]) for a in range(4) for b in range(a + 1, 4))
    assert sum(len(u) for u in users) == CFG.n_users
    assert not parts[0]["item_id"].reset_index(drop=True).equals(parts[1]["item_id"].reset_index(drop=True))


def test_schema_ranges_and_one_event_per_user_item():
    frame = generate_partition(CFG, 0)
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp", "source_row"]
    assert frame["rating"].dtype == np.float64 and frame["timestamp"].dtype == np.int64
    assert frame["rating"].between(0.5, 5.0).all()
    assert ((frame["rating"] * 2) % 1 == 0).all()  # half steps
    assert frame["timestamp"].between(synthetic.TIME_START, synthetic.TIME_START + synthetic.TIME_SPAN).all()
    assert not frame.duplicated(["user_id", "item_id"]).any()
    assert frame["rating"].nunique() >= 6


def test_dask_frame_is_lazy_and_matches_the_partitions(monkeypatch):
    calls = []
    real = synthetic.generate_partition

    def counting(cfg, part_index, row_offset=None):
        calls.append(part_index)
        return real(cfg, part_index, row_offset)

    monkeypatch.setattr(synthetic, "generate_partition", counting)
    ddf = synthetic_interactions(CFG)
    assert ddf.npartitions == 4 and calls == []  # building the frame generates nothing
    one = ddf.partitions[2].compute()
    assert calls == [2]
    pd.testing.assert_frame_equal(one.reset_index(drop=True), real(CFG, 2), check_dtype=False)

    whole = ddf.compute()
    assert np.array_equal(whole["source_row"].to_numpy(), np.arange(len(whole)))  # exact global row numbers


def test_a_partition_of_a_huge_dataset_needs_only_its_own_users():
    huge = IngestConfig(n_users=1_000_000, n_items=2_000, interactions_per_user=20, n_partitions=1_000)
    offset = int(synthetic.partition_offsets(huge)[-1])
    last = generate_partition(huge, 999, row_offset=offset)
    assert last["user_id"].nunique() == 1_000
    assert last["user_id"].iloc[0] == "u999000"
    assert last["source_row"].iloc[0] == offset


def test_auto_partitions_target_a_million_rows():
    assert synthetic.n_partitions(IngestConfig()) == 1
    assert synthetic.n_partitions(IngestConfig(n_users=1_000_000, interactions_per_user=40)) == 40


def test_item_popularity_is_heavy_tailed():
    frame = synthetic_interactions(CFG).compute()
    counts = frame["item_id"].value_counts().to_numpy()
    top_decile_share = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_decile_share > 0.25  # uniform popularity would give about 0.10
    assert counts.max() / np.median(counts) > 5


def test_item_metadata_follows_the_dominant_factor():
    items = synthetic_items(CFG)
    world = synthetic._item_world(CFG.seed, CFG.n_items, CFG.n_factors)
    assert list(items.columns) == ["item_id", "title", "genres", "tags"]
    assert len(items) == CFG.n_items and items["item_id"].is_unique
    for row, dominant in zip(items.itertuples(), world["dominant"]):
        assert row.genres.split("|")[0] == synthetic.genre_name(int(dominant))
        words = synthetic.THEME_WORDS[int(dominant) % len(synthetic.THEME_WORDS)]
        assert row.title.split()[1] in words
    assert synthetic.genre_name(25) == "Documentary 2"


def _recall_at_10(scores: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    scores = scores.copy()
    scores[train.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    recalls = []
    for user in range(test.shape[0]):
        held = set(test[user].indices)
        if held:
            recalls.append(len(held.intersection(top[user])) / min(10, len(held)))
    return float(np.mean(recalls))


def test_matrix_factorization_clearly_beats_popularity():
    from scipy.sparse.linalg import svds

    frame = synthetic_interactions(CFG).compute()
    users = frame["user_id"].str[1:].astype(int).to_numpy()
    items = frame["item_id"].str[1:].astype(int).to_numpy()
    held_out = np.random.default_rng(0).random(len(frame)) < 0.2
    shape = (CFG.n_users, CFG.n_items)
    train = sp.csr_matrix((np.ones((~held_out).sum()), (users[~held_out], items[~held_out])), shape=shape)
    test = sp.csr_matrix((np.ones(held_out.sum()), (users[held_out], items[held_out])), shape=shape)

    popularity = np.tile(np.asarray(train.sum(axis=0)).ravel(), (CFG.n_users, 1))
    u, s, vt = svds(train, k=CFG.n_factors + 2, random_state=0)
    pop_recall = _recall_at_10(popularity, train, test)
    mf_recall = _recall_at_10((u * s) @ vt, train, test)
    assert mf_recall > 1.4 * pop_recall, (mf_recall, pop_recall)


def test_generate_partition_rejects_a_bad_index():
    with pytest.raises(IndexError, match=r"part_index must be in \[0, 4\)"):
        generate_partition(CFG, 4)


def test_picks_are_distinct_exact_in_number_and_follow_the_mixture():
    world = synthetic._item_world(3, 50, 4)
    rng = np.random.default_rng(0)
    n_users = 4000
    components = np.column_stack([np.zeros(n_users, dtype=np.int64), np.full(n_users, 2), np.full(n_users, 3)])
    weights = np.tile([0.2, 0.5, 0.3], (n_users, 1))
    counts = np.ones(n_users, dtype=np.int64)
    counts[:3] = [50, 49, 30]  # the whole catalogue: drawn to the end by the exact fallback
    rows, items = synthetic._distinct_picks(components, weights, world, counts, rng)
    assert np.array_equal(np.bincount(rows, minlength=n_users), counts)
    assert len(np.unique(rows * 50 + items)) == len(rows)  # no (user, item) twice
    # Single picks follow the mixture of the pick distributions (a table draw or its remainder).
    single = items[rows >= 3]
    want = weights[0] @ world["pick_probs"][components[0]] * len(single)
    observed = np.bincount(single, minlength=50)
    assert ((observed - want) ** 2 / want).sum() < 100  # chi-square, 49 degrees of freedom: p < 1e-5 to fail
