"""NMF specifics: scikit-learn wiring, fold-in through transform, the final-loss callback, input checks.

MovieLens latest-small (stratified 75/25, seed 42, nDCG@10 / MAP@10, training items excluded),
binary input, ``init="nndsvda"``. Regularization matters most: without it the factors overfit.

| factors | alpha_W | max_iter | weighting | nDCG@10 | MAP@10 |
| --- | --- | --- | --- | --- | --- |
| 32 | 0 | 200 | none | 0.314 | 0.078 |
| 32 | 0.001 | 200 | none | 0.336 | 0.084 |
| 32 | 0.003 | 200 | none | 0.331 | 0.076 |
| 32 | 0.03 | 200 | none | 0.209 | 0.035 |
| 48 | 0.005 | 400 | none | 0.353 | 0.086 |
| **64** | **0.005** | **400** | **none** | **0.359** | **0.088** |
| 64 | 0.003 | 200 | none | 0.353 | 0.087 |
| 48 | 0.003 | 200 | linear (1 + rating) | 0.334 | 0.083 |
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from pipelines.errors import ConfigError
from pipelines.models import create_model, load_model
from pipelines.models.nmf import NmfRecommender

FAST = {"factors": 6, "alpha_W": 0.001, "max_iter": 300, "tol": 1e-3}


@pytest.fixture(scope="module")
def counts() -> sp.csr_matrix:
    matrix = sp.random(90, 50, density=0.2, format="csr", dtype=np.float32, random_state=8)
    matrix.data = np.ceil(5.0 * matrix.data)
    return matrix


def test_factors_are_scikit_learns(counts):
    from sklearn.decomposition import NMF

    model = NmfRecommender(**FAST, seed=3).fit(counts)
    reference = NMF(n_components=6, init="nndsvda", alpha_W=0.001, max_iter=300, tol=1e-3, random_state=3)
    users = reference.fit_transform(counts)
    np.testing.assert_allclose(model.user_factors_, users, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.item_factors_, reference.components_.T, rtol=1e-5, atol=1e-6)
    assert (model.user_factors_ >= 0).all() and (model.item_factors_ >= 0).all()
    seen = counts[:4]
    expected = reference.transform(seen) @ reference.components_
    np.testing.assert_allclose(model.score_new_users(seen), expected, rtol=1e-4, atol=1e-6)


def test_callback_hears_the_final_reconstruction_error_once(counts):
    heard = []
    model = NmfRecommender(**FAST).fit(counts, callback=lambda iteration, loss: heard.append((iteration, loss)))
    assert len(heard) == 1 and heard[0][0] == model.n_iter_ - 1
    residual = counts.toarray() - model.user_factors_ @ model.item_factors_.T
    assert heard[0][1] == pytest.approx(np.linalg.norm(residual), rel=1e-4)
    assert model.training_loss_ == [heard[0][1]]


def test_fold_in_survives_save_and_load(counts, tmp_path):
    model = NmfRecommender(**FAST).fit(counts)
    loaded = load_model(model.save(tmp_path / "nmf"))
    np.testing.assert_array_equal(loaded.score_new_users(counts[:5]), model.score_new_users(counts[:5]))
    # Folding a training row back in lands near that user's fitted scores.
    folded, fitted = model.score_new_users(counts[:5]), model.score(np.arange(5))
    assert np.corrcoef(folded.ravel(), fitted.ravel())[0, 1] > 0.95


def test_negative_values_are_refused_with_their_position(counts):
    signed = counts.copy()
    signed.data[3] = -2.0
    user = int(np.searchsorted(signed.indptr, 3, side="right") - 1)
    where = rf"\(user {user}, item {signed.indices[3]}\)"
    with pytest.raises(ValueError, match=rf"nmf needs non-negative values; train has -2 at {where}"):
        NmfRecommender(**FAST).fit(signed)
    model = NmfRecommender(**FAST).fit(counts)
    with pytest.raises(ValueError, match="seen has -2"):
        model.score_new_users(signed[: user + 1])


def test_stopping_at_max_iter_is_logged_once_naming_the_parameter(counts, caplog):
    with caplog.at_level(logging.WARNING, logger="pipelines.models.nmf"):
        NmfRecommender(factors=6, max_iter=2).fit(counts)
    assert [r.getMessage() for r in caplog.records] == [
        "nmf stopped at max_iter=2 before reaching tol=0.0001; raise max_iter to converge"
    ]


def test_svd_initialisation_needs_factors_within_the_matrix():
    small = sp.random(4, 9, density=0.6, format="csr", random_state=0)
    with pytest.raises(ValueError, match=r"factors must be at most min\(n_users, n_items\) = 4 with init='nndsvda'"):
        NmfRecommender(factors=5).fit(small)
    assert NmfRecommender(factors=5, init="random", max_iter=20).fit(small).is_fitted


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"factors": 0}, "factors"),
        ({"alpha_W": -0.1}, "alpha_W"),
        ({"alpha_H": -0.1}, "alpha_H"),
        ({"l1_ratio": 1.5}, "l1_ratio"),
        ({"init": "svd"}, "init"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": 0.0}, "tol"),
        ({"solver": "mu"}, "solver"),
    ],
)
def test_bad_hyperparameters_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        NmfRecommender(**params)
    with pytest.raises(ConfigError, match=rf"invalid parameters for model 'nmf': {field}"):
        create_model("nmf", params)
