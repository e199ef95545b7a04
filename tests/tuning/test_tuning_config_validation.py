"""TuningConfig validation, the validation carve and merging validation back into train."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.errors import ConfigError, DataError
from pipelines.tuning.config import TuningConfig, parse_tuning_config
from pipelines.tuning.run import merge_validation_into_train
from pipelines.tuning.validation import carve_validation, validation_split


def test_defaults_and_k():
    config = TuningConfig()
    assert (config.n_trials, config.metric, config.k, config.n_parallel, config.pruner) == (20, "ndcg@10", 10, 1, True)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": 1001}, "n_trials"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"metric": "rmse@10"}, "metric"),
        ({"metric": "ndcg"}, "metric"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"n_parallel": 0}, "n_parallel"),
        ({"search_space": {"factors": {"type": "int", "low": 3, "high": 1}}}, "search_space"),
        ({"trials": 5}, "trials"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=f"invalid tuning configuration: {field}"):
        parse_tuning_config(values)


def test_carve_is_per_user_disjoint_and_complete(planted):
    fit, validation = carve_validation(planted.train, 0.2, seed=7)
    assert fit.multiply(validation).nnz == 0
    assert (fit + validation != planted.train).nnz == 0, "values (ratings) are kept and nothing is lost"
    per_user = np.diff(planted.train.indptr)
    assert (np.diff(validation.indptr) == np.round(0.2 * per_user)).all()
    again = carve_validation(planted.train, 0.2, seed=7)[1]
    assert (again != validation).nnz == 0, "same seed, same carve"


def test_carve_refuses_an_empty_validation():
    one_each = sp.csr_matrix(np.eye(4, dtype=np.float32))
    with pytest.raises(DataError, match="no validation interactions"):
        carve_validation(one_each, 0.2, seed=0)


def test_own_validation_split_is_used_when_present(planted):
    fit, validation = carve_validation(planted.train, 0.25, seed=1)
    features = dataclasses.replace(planted, train=fit, validation=validation)
    got_fit, got_validation = validation_split(features, 0.5, seed=99)
    assert (got_fit != fit).nnz == 0 and (got_validation != validation).nnz == 0


def test_merge_validation_into_train(planted):
    fit, validation = carve_validation(planted.train, 0.25, seed=1)
    merged = merge_validation_into_train(dataclasses.replace(planted, train=fit, validation=validation))
    assert merged.validation is None
    assert (merged.train != planted.train).nnz == 0
    assert merged.manifest["validation_merged_into_train"] == validation.nnz
    assert merge_validation_into_train(planted) is planted


def test_merge_refuses_overlapping_splits(planted):
    with pytest.raises(DataError, match="share"):
        merge_validation_into_train(dataclasses.replace(planted, validation=planted.train[:, :]))


def test_restrict_order_keeps_the_ranks_of_the_fit_entries(planted):
    from pipelines.tuning.validation import restrict_order

    order = planted.train.copy()
    order.data = np.arange(1, order.nnz + 1, dtype=np.float32)
    fit, _ = carve_validation(planted.train, 0.2, seed=3)
    restricted = restrict_order(order, fit)
    assert np.array_equal(restricted.indptr, fit.indptr) and np.array_equal(restricted.indices, fit.indices)
    assert np.array_equal(restricted.data, np.asarray(order[fit.nonzero()]).ravel())
    assert restrict_order(None, fit) is None
