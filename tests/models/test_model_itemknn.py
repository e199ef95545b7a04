"""ItemKNN specifics: the similarity against a brute-force one, banding, fold-in, empty items,
the shrinkage chosen at fit.

ItemKNN prefers BM25 input (implicit's defaults k1 100, b 0.8): the IDF factor down-weights
blockbusters as evidence. The shrinkage is in units of the input's scale (binary input wants far
less than BM25), so by default it is chosen at fit relative to the mean squared item norm; the
values chosen on MovieLens and their scores are in ``benchmarks/results/quality.json``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from pipelines.errors import ConfigError
from pipelines.models import create_model, load_model
from pipelines.models.itemknn import ItemKnnConfig, ItemKnnRecommender, top_k_cosine


@pytest.fixture(scope="module")
def ratings() -> sp.csr_matrix:
    """Random ratings in [1, 5), with item 4 never rated."""
    matrix = sp.random(80, 40, density=0.2, format="csr", dtype=np.float32, random_state=5)
    matrix.data = 1.0 + 4.0 * matrix.data
    matrix = matrix.tolil()
    matrix[:, 4] = 0
    return matrix.tocsr()


def brute_force(matrix: sp.csr_matrix, neighbours: int, shrinkage: float) -> np.ndarray:
    dense = matrix.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    similarity = dense.T @ dense / (np.outer(norms, norms) + shrinkage + 1e-300)
    np.fill_diagonal(similarity, 0.0)
    kept = np.zeros_like(similarity)
    for item, row in enumerate(similarity):
        best = np.argsort(-row, kind="stable")[:neighbours]
        best = best[row[best] > 0]
        kept[item, best] = row[best]
    return kept


@pytest.mark.parametrize(("neighbours", "shrinkage"), [(5, 0.0), (12, 3.0), (100, 1.0)])
def test_similarity_matches_brute_force(ratings, neighbours, shrinkage):
    model = ItemKnnRecommender(neighbours=neighbours, shrinkage=shrinkage).fit(ratings)
    similarity = model.similarity_
    assert similarity.dtype == np.float32 and similarity.has_sorted_indices
    np.testing.assert_allclose(similarity.toarray(), brute_force(ratings, neighbours, shrinkage), rtol=1e-5, atol=1e-7)
    assert similarity[4].nnz == 0 and similarity[:, 4].nnz == 0  # the unrated item has no neighbours


def test_band_size_does_not_change_the_result(ratings):
    whole = top_k_cosine(ratings, neighbours=7, shrinkage=2.0)
    for elements in (1, 40 * 3, 40 * 17):
        banded = top_k_cosine(ratings, neighbours=7, shrinkage=2.0, block_elements=elements)
        assert (banded != whole).nnz == 0


def test_scores_are_the_users_row_times_the_similarity(ratings):
    model = ItemKnnRecommender(neighbours=10, shrinkage=0.0).fit(ratings)
    expected = (ratings[[0, 9]] @ model.similarity_).toarray()
    np.testing.assert_allclose(model.score([0, 9]), expected, rtol=1e-6)
    assert np.isfinite(model.score(np.arange(80))).all()


def test_fold_in_scores_new_users_like_known_ones(ratings, tmp_path):
    model = ItemKnnRecommender(neighbours=10).fit(ratings)
    np.testing.assert_allclose(model.score_new_users(ratings[:5]), model.score(np.arange(5)), rtol=1e-6)
    loaded = load_model(model.save(tmp_path / "itemknn"))
    assert (loaded.similarity_ != model.similarity_).nnz == 0
    np.testing.assert_array_equal(loaded.score_new_users(ratings[:5]), model.score_new_users(ratings[:5]))
    with pytest.raises(TypeError, match="seen must be a SciPy sparse matrix"):
        model.score_new_users(ratings[:5].toarray())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"neighbours": 0}, "neighbours"),
        ({"neighbours": 20_000}, "neighbours"),
        ({"shrinkage": -1.0}, "shrinkage"),
        ({"shrinkage": float("nan")}, "shrinkage"),
        ({"block_elements": 0}, "block_elements"),
        ({"k": 10}, "k"),
    ],
)
def test_bad_hyperparameters_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        ItemKnnRecommender(**params)
    with pytest.raises(ConfigError, match=rf"invalid parameters for model 'itemknn': {field}"):
        create_model("itemknn", params)


def test_block_elements_is_a_runtime_option():
    assert set(ItemKnnConfig().hyperparameters()) == {"seed", "neighbours", "shrinkage"}


def test_default_shrinkage_is_chosen_and_beats_popularity(planted_shape, planted_ndcg, tmp_path):
    """Left None, the shrinkage is chosen on a carve of train: item-kNN beats popularity on planted
    data of every size and density, and the choice is recorded, saved and reproducible."""

    name, split = planted_shape
    model = create_model("itemknn").fit(split.train)
    chosen = model.shrinkage_
    assert model.config.shrinkage is None and model.fitted_params() == {"shrinkage": chosen}
    popularity = create_model("popularity").fit(split.train)
    assert planted_ndcg(model, split) > planted_ndcg(popularity, split) + 0.03, name
    assert load_model(model.save(tmp_path / "itemknn")).shrinkage_ == chosen
    assert create_model("itemknn").fit(split.train).shrinkage_ == chosen


def test_the_chosen_shrinkage_follows_the_data_scale(planted):
    """The grid is relative to the mean squared item norm: values c times larger give c^2 times
    the shrinkage and the same neighbourhoods; an explicit value is used as given."""
    model = create_model("itemknn").fit(planted.train)
    scaled = create_model("itemknn").fit(planted.train * 3.0)
    assert scaled.shrinkage_ == pytest.approx(9.0 * model.shrinkage_, rel=1e-5)
    np.testing.assert_array_equal(scaled.similarity_.indices, model.similarity_.indices)
    assert ItemKnnRecommender(shrinkage=7.0).fit(planted.train).shrinkage_ == 7.0


def test_one_pass_gives_each_shrinkages_neighbourhoods(ratings):
    from pipelines.models.itemknn import top_k_cosines

    together = top_k_cosines(ratings, 6, [0.0, 5.0, 500.0])
    for shrinkage, similarity in zip([0.0, 5.0, 500.0], together):
        alone = top_k_cosine(ratings, 6, shrinkage)
        np.testing.assert_array_equal(similarity.indices, alone.indices)
        np.testing.assert_allclose(similarity.data, alone.data, rtol=1e-6)
