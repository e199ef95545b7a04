"""ranking_metrics against values computed by hand (Microsoft Recommenders conventions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.evaluation.metrics import hit_matrix, ranking_metrics, ranking_metrics_at_ks


def relevance(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), n_items))


def test_hand_computed_case() -> None:
    recommended = np.array([[0, 1, 2], [5, 6, -1], [2, 3, 4], [7, 8, 9]])
    relevant = relevance([[1, 4], [5], [], [8, 9, 7, 0]])
    m = ranking_metrics(recommended, relevant, k=3, n_items=10)
    # A: hit at rank 2 of 2 relevant.  B: hit at rank 1 of 1.  C: no relevant item, not averaged.
    # D: hits at ranks 1, 2, 3 of 4 relevant.
    d2 = 1 / math.log2(3)
    ndcg_a = d2 / (1 + d2)
    assert m["n_users"] == 3
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert m["recall@3"] == pytest.approx((1 / 2 + 1 + 3 / 4) / 3)
    assert m["ndcg@3"] == pytest.approx((ndcg_a + 1 + 1) / 3)
    assert m["map@3"] == pytest.approx(((1 / 2) / 2 + 1 + 3 / 4) / 3)  # AP divides by all relevant
    assert m["hit_rate@3"] == pytest.approx(1.0)
    assert m["coverage@3"] == pytest.approx(8 / 10)  # {0,1,2,5,6,7,8,9} over the evaluated users


def test_second_hand_case_with_late_hits() -> None:
    # One user, relevant {3, 7}, list [1, 3, 5, 7, 9] at k=5: hits at ranks 2 and 4.
    m = ranking_metrics(np.array([[1, 3, 5, 7, 9]]), relevance([[3, 7]]), k=5, n_items=10)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert m["precision@5"] == pytest.approx(2 / 5)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["ndcg@5"] == pytest.approx(dcg / idcg)
    assert m["map@5"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["coverage@5"] == pytest.approx(0.5)


def test_perfect_ranker() -> None:
    relevant = relevance([[4, 2], [1, 3, 5, 7], [9]])
    recommended = np.array([[2, 4, -1, -1], [7, 5, 3, 1], [9, 0, 1, 2]])
    m = ranking_metrics(recommended, relevant, k=4, n_items=10)
    assert m["ndcg@4"] == pytest.approx(1.0) and m["map@4"] == pytest.approx(1.0)
    assert m["recall@4"] == pytest.approx(1.0) and m["hit_rate@4"] == 1.0
    assert m["precision@4"] == pytest.approx((2 / 4 + 4 / 4 + 1 / 4) / 3)


def test_wider_lists_are_cut_at_k_and_narrow_lists_padded() -> None:
    relevant = relevance([[0, 1]])
    wide = ranking_metrics(np.array([[5, 0, 1]]), relevant, k=1, n_items=10)
    assert wide["precision@1"] == 0.0 and wide["coverage@1"] == pytest.approx(0.1)
    narrow = ranking_metrics(np.array([[0]]), relevant, k=2, n_items=10)
    assert narrow["precision@2"] == pytest.approx(0.5) and narrow["recall@2"] == pytest.approx(0.5)


def test_no_relevant_users_and_explicit_zeros() -> None:
    empty = ranking_metrics(np.array([[0, 1]]), sp.csr_matrix((1, 5)), k=2, n_items=5)
    assert empty["n_users"] == 0 and empty["ndcg@2"] == 0.0
    stored_zero = sp.csr_matrix((np.array([0.0, 4.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 5))
    m = ranking_metrics(np.array([[0, 1]]), stored_zero, k=2, n_items=5)
    assert m["recall@2"] == 1.0 and m["precision@2"] == 0.5  # a stored 0 is not relevant


def test_hit_matrix_ignores_empty_and_out_of_range_slots() -> None:
    hits = hit_matrix(np.array([[-1, 2, 99], [2, 0, 1]]), relevance([[2], [0, 1]], n_items=3))
    assert hits.tolist() == [[False, True, False], [False, True, True]]


def test_input_errors() -> None:
    relevant = relevance([[1]])
    with pytest.raises(ValueError, match="k must be >= 1"):
        ranking_metrics(np.array([[1]]), relevant, k=0, n_items=10)
    with pytest.raises(ValueError, match="recommended has 2 rows but relevant has 1"):
        ranking_metrics(np.array([[1], [2]]), relevant, k=1, n_items=10)
    with pytest.raises(ValueError, match="row 0 repeats an item"):
        ranking_metrics(np.array([[1, 1]]), relevant, k=2, n_items=10)
    with pytest.raises(ValueError, match="2-D"):
        ranking_metrics(np.array([1, 2]), relevant, k=2, n_items=10)


def test_vectorised_on_many_users() -> None:
    gen = np.random.default_rng(0)
    n_users, n_items, k = 50_000, 500, 10
    relevant = sp.csr_matrix(gen.random((n_users, n_items), dtype=np.float32) < 0.01, dtype=np.float32)
    # Each user gets k consecutive items from a random start: distinct, uniformly placed.
    recommended = (gen.integers(0, n_items, (n_users, 1)) + np.arange(k)) % n_items
    m = ranking_metrics(recommended, relevant, k=k, n_items=n_items)
    # A random ranker: precision@k ~ density, recall@k ~ k / n_items.
    assert m["precision@10"] == pytest.approx(0.01, rel=0.1)
    assert m["recall@10"] == pytest.approx(k / n_items, rel=0.1)


def per_user_reference(recommended: np.ndarray, relevant: sp.csr_matrix, k: int, n_items: int) -> dict[str, float]:
    """The conventions of the module docstring, one user at a time in plain Python."""
    rows = []
    for user in range(relevant.shape[0]):
        truth = set(relevant[user].indices)
        if not truth:
            continue
        top = [int(i) for i in recommended[user, :k]]
        hits = [1.0 if i in truth else 0.0 for i in top] + [0.0] * (k - len(top))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(truth))))
        ap = sum(sum(hits[: j + 1]) / (j + 1) for j, h in enumerate(hits) if h) / len(truth)
        rows.append((sum(hits) / k, sum(hits) / len(truth), dcg / idcg, ap, float(sum(hits) > 0)))
    means = np.mean(rows, axis=0)
    shown = {int(i) for user in range(relevant.shape[0]) if relevant[user].nnz for i in recommended[user, :k] if 0 <= i < n_items}
    names = ("precision", "recall", "ndcg", "map", "hit_rate")
    return {**{f"{name}@{k}": float(v) for name, v in zip(names, means)}, f"coverage@{k}": len(shown) / n_items}


def test_every_cut_off_from_one_matrix_equals_a_per_user_reference() -> None:
    gen = np.random.default_rng(7)
    n_users, n_items = 300, 60
    relevant = sp.csr_matrix(gen.random((n_users, n_items)) < 0.08, dtype=np.float32)
    recommended = np.array([gen.permutation(n_items)[:12] for _ in range(n_users)])
    recommended[gen.random(recommended.shape) < 0.1] = -1  # empty slots anywhere in a list
    by_k = ranking_metrics_at_ks(recommended, relevant, (15, 1, 5, 12), n_items)
    assert list(by_k) == [1, 5, 12, 15]  # 15 is past the lists' width: the missing slots are misses
    for k, metrics in by_k.items():
        assert metrics == ranking_metrics(recommended, relevant, k, n_items)
        want = per_user_reference(recommended, relevant, k, n_items)
        for name, value in want.items():
            assert metrics[name] == pytest.approx(value, abs=1e-12), (k, name)
        assert metrics["n_users"] == int((np.diff(relevant.indptr) > 0).sum())
