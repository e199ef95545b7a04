"""The shared top-K equals a full stable sort: ties, -inf, k above the catalogue, users who saw everything."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.compute import topk as topk_module
from pipelines.compute.topk import block_rows, top_k, top_k_dot, top_k_items
from pipelines.models.popularity import PopularityRecommender


def full_sort(scores: np.ndarray, k: int, exclude: sp.spmatrix | None) -> tuple[np.ndarray, np.ndarray]:
    """Reference: mask, stable sort of every row by (-score, index), pad non-finite slots."""
    masked = np.array(scores, dtype=np.float32)
    if exclude is not None:
        coo = sp.coo_matrix(exclude)
        masked[coo.row, coo.col] = -np.inf
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(masked, order, axis=1)
    idx = np.full((len(masked), k), -1, dtype=np.int64)
    val = np.full((len(masked), k), -np.inf, dtype=np.float32)
    width = order.shape[1]
    finite = np.isfinite(values)
    idx[:, :width] = np.where(finite, order, -1)
    val[:, :width] = np.where(finite, values, -np.inf)
    return idx, val


def random_case(seed: int, n_rows: int = 60, n_items: int = 40) -> tuple[np.ndarray, sp.csr_matrix]:
    """Scores drawn from few levels (many ties), some -inf, random exclusions, one user who saw all."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(n_rows, n_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    scores[3] = -np.inf  # a user with no finite score at all
    seen = (rng.random(scores.shape) < 0.3).astype(np.float32)
    seen[0] = 1.0  # a user who has seen everything
    seen[1, : n_items - 2] = 1.0  # a user with two candidates left
    return scores, sp.csr_matrix(seen)


def assert_same_ranking(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray],
                        scores: np.ndarray, exclude: sp.spmatrix) -> None:
    """Values equal the full sort's; indices equal it except where ties straddle the k-th slot."""
    idx, val = got
    want_idx, want_val = want
    np.testing.assert_array_equal(val, want_val)
    np.testing.assert_array_equal(idx == -1, want_idx == -1)
    seen = sp.csr_matrix(exclude).toarray() > 0
    for row in range(len(idx)):
        picked = idx[row][idx[row] >= 0]
        assert len(set(picked)) == len(picked)
        assert not seen[row, picked].any()
        np.testing.assert_array_equal(scores[row, picked], val[row, : len(picked)])
        if len(picked) and np.sum(np.where(seen[row], -np.inf, scores[row]) == val[row, len(picked) - 1]) == np.sum(
            val[row] == val[row, len(picked) - 1]
        ):
            np.testing.assert_array_equal(idx[row], want_idx[row])  # no tie at the cut: identical


@pytest.mark.parametrize("k", [1, 5, 40, 55])
@pytest.mark.parametrize("seed", [0, 1])
def test_top_k_equals_full_sort(k: int, seed: int) -> None:
    scores, seen = random_case(seed)
    got = top_k(scores.copy(), k, exclude=seen)
    assert got[0].shape == got[1].shape == (len(scores), k)
    assert (got[0][0] == -1).all() and np.isneginf(got[1][0]).all()  # saw everything
    assert (got[0][3] == -1).all()  # only -inf scores
    assert_same_ranking(got, full_sort(scores, k, seen), scores, seen)


@pytest.mark.parametrize("k", [1, 5, 40, 55])
def test_compiled_top_k_equals_full_sort_exactly_on_threads(k: int) -> None:
    """The numba kernel breaks ties at the cut by index too: identical to the stable sort,
    with the rows split over threads (ranges of at least 64 rows)."""
    assert topk_module.compiled_kernel() is not None
    scores, seen = random_case(5, n_rows=300)
    got = top_k(scores.copy(), k, exclude=seen, num_threads=3)
    want = full_sort(scores, k, seen)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    nan_scores = np.array([[np.nan, 1.0, np.nan, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(top_k(nan_scores, 3)[0], [[3, 1, -1]])  # NaN is never picked


@pytest.mark.parametrize("k", [1, 10, 50])
@pytest.mark.parametrize("levels", [3, 1000])
def test_compiled_top_k_on_wide_rows_equals_full_sort_exactly(k: int, levels: int) -> None:
    """Rows much wider than the kernel's chunks, with heavy ties (3 levels) or few, scores that
    rise along the row (every chunk beats the root) and -inf runs: identical to the stable sort."""
    rng = np.random.default_rng(levels + k)
    scores = rng.integers(0, levels, size=(200, 1500)).astype(np.float32)
    scores[:50] += np.linspace(0, levels, 1500, dtype=np.float32)  # better items late in the row
    scores[:, 100:300][rng.random((200, 200)) < 0.8] = -np.inf
    scores[7, 40:] = -np.inf  # fewer finite scores than chunk + k
    seen = sp.csr_matrix((rng.random(scores.shape) < 0.2).astype(np.float32))
    got = top_k(scores.copy(), k, exclude=seen, num_threads=2)
    want = full_sort(scores, k, seen)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("k", [1, 7, 60])
def test_top_k_items_kernel_equals_vectorised_search(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    """The compiled walk (rows on threads) and the NumPy segmented search agree exactly, with
    repeated entries in a non-canonical exclusion matrix and rows that saw everything."""
    rng = np.random.default_rng(k)
    n_rows, n_items = 400, 50
    item_scores = rng.integers(0, 8, n_items).astype(np.float32)
    item_scores[[3, 9]] = -np.inf
    rows = rng.integers(0, n_rows, 6000)
    cols = rng.integers(0, n_items, 6000)
    rows = np.concatenate([rows, np.zeros(n_items, dtype=np.int64)])  # row 0 saw everything (a long row)
    cols = np.concatenate([cols, rng.permutation(n_items)])
    seen = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_rows, n_items))
    dup_rows, dup_cols = np.concatenate([rows, rows[:50]]), np.concatenate([cols, cols[:50]])
    by_row = np.argsort(dup_rows, kind="stable")  # raw CSR arrays: the repeats stay stored
    indptr = np.concatenate([[0], np.cumsum(np.bincount(dup_rows, minlength=n_rows))])
    duplicated = sp.csr_matrix((np.ones(len(dup_rows), np.float32), dup_cols[by_row], indptr), shape=(n_rows, n_items))
    assert duplicated.nnz == len(dup_rows) and not duplicated.has_canonical_format
    assert topk_module.compiled_ranked_kernel() is not None
    compiled = top_k_items(item_scores, k, n_rows, exclude=duplicated)
    monkeypatch.setattr(topk_module, "compiled_ranked_kernel", lambda: None)
    vectorised = top_k_items(item_scores, k, n_rows, exclude=duplicated)
    want = full_sort(np.tile(item_scores, (n_rows, 1)), k, seen)
    for got in (compiled, vectorised):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert (compiled[0][0] == -1).all()


@pytest.mark.parametrize("numba_kernel", [True, False])
@pytest.mark.parametrize("threads", [1, 3])
def test_top_k_dot_equals_top_k_of_the_full_product(monkeypatch: pytest.MonkeyPatch, numba_kernel: bool, threads: int) -> None:
    """Fused per-thread product + ranking: the same lists as ranking the whole product, with an
    item bias, exclusions, rows not a multiple of a task, k above what is left for some rows."""
    if not numba_kernel:
        monkeypatch.setattr(topk_module, "compiled_kernel", lambda: None)
    rng = np.random.default_rng(threads)
    users = rng.standard_normal((300, 8)).astype(np.float32)
    items = rng.standard_normal((70, 8)).astype(np.float32)
    bias = rng.standard_normal(70).astype(np.float32)
    seen = (rng.random((300, 70)) < 0.3).astype(np.float32)
    seen[0] = 1.0  # saw everything
    seen[1] = 0.0
    seen[1, :65] = 1.0  # five left
    seen = sp.csr_matrix(seen)
    for k, b in ((10, bias), (69, None)):
        full = users @ items.T + (0 if b is None else b)
        got = top_k_dot(users, items, k, exclude=seen, item_bias=b, num_threads=threads)
        want = top_k(full.astype(np.float32), k, exclude=seen)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
        assert (got[0][0] == -1).all() and (got[0][1][:5] >= 0).all() and (got[0][1][5:] == -1).all()
    with pytest.raises(ValueError, match="exclude has shape"):
        top_k_dot(users, items, 3, exclude=seen[:10])


@pytest.mark.parametrize("torch_installed", [True, False])
def test_top_k_fallbacks_equal_full_sort(monkeypatch: pytest.MonkeyPatch, torch_installed: bool) -> None:
    monkeypatch.setattr(topk_module, "compiled_kernel", lambda: None)  # as if numba were not installed
    if not torch_installed:
        monkeypatch.setattr(topk_module, "_torch", False)
    scores, seen = random_case(2)
    for k in (3, 55):
        assert_same_ranking(top_k(scores.copy(), k, exclude=seen), full_sort(scores, k, seen), scores, seen)


def test_top_k_distinct_scores_match_exactly_and_accept_float64() -> None:
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((30, 25))  # float64, no ties
    idx, val = top_k(scores, 7)
    want_idx, want_val = full_sort(scores, 7, None)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)


@pytest.mark.parametrize("k", [1, 5, 40, 55])
@pytest.mark.parametrize("seed", [0, 1])
def test_top_k_items_equals_full_sort_exactly(k: int, seed: int) -> None:
    scores, seen = random_case(seed)
    item_scores = scores[5]  # ties and -inf
    broadcast = np.tile(item_scores, (len(scores), 1))
    got = top_k_items(item_scores, k, len(scores), exclude=seen)
    want = full_sort(broadcast, k, seen)
    np.testing.assert_array_equal(got[0], want[0])  # ties: lower index first, as the stable sort
    np.testing.assert_array_equal(got[1], want[1])
    none = top_k_items(item_scores, k, 4)
    np.testing.assert_array_equal(none[0], full_sort(broadcast[:4], k, None)[0])


def test_top_k_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k(np.zeros((2, 3), dtype=np.float32), 0)
    with pytest.raises(ValueError, match="exclude has shape"):
        top_k(np.zeros((2, 3), dtype=np.float32), 1, exclude=sp.csr_matrix((3, 3)))
    assert block_rows(20_000, 64 * 2**20) == 838


def test_popularity_recommend_uses_item_ranking_without_dense_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    scores, seen = random_case(4)
    train = sp.csr_matrix((np.random.default_rng(4).random(scores.shape) < 0.4).astype(np.float32))
    model = PopularityRecommender().fit(train)

    def no_block(users: np.ndarray) -> np.ndarray:
        raise AssertionError("popularity must not build a users x items block")

    monkeypatch.setattr(model, "_score_block", no_block)
    users = np.array([0, 1, 2, 59, 1000, -1])  # the last two are unknown: popular items, nothing excluded
    idx, val = model.recommend(users, k=45, exclude=seen)
    want_idx, want_val = full_sort(np.tile(model.item_scores_, (len(users), 1)), 45,
                                   sp.vstack([seen[users[:4]], sp.csr_matrix((2, seen.shape[1]))]))
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)
