"""tune_model: improves on the default, prunes losing trials, repeats with a seed, records failures."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError
from pipelines.training.config import TrainConfig
from pipelines.training.run import fit_and_evaluate
from pipelines.tuning.study import tune_model
from pipelines.tuning.validation import carve_validation

# Small ALS spaces keep each trial at a few milliseconds on the planted data.
ALS_SPACE = {
    "factors": {"type": "int", "low": 4, "high": 32, "log": True},
    "regularization": {"type": "float", "low": 0.1, "high": 100.0, "log": True},
}
ALS = TrainConfig(model="als", params={"factors": 8, "iterations": 8, "regularization": 50.0})


def test_study_is_at_least_as_good_as_the_default(planted):
    tuning = {"n_trials": 8, "sampler_startup_trials": 4, "search_space": ALS_SPACE, "seed": 3}
    result = tune_model(ALS, planted, tuning)

    trials = result.trials
    assert len(trials) == result.n_trials == 8
    default = trials.iloc[0]
    assert (default["params.factors"], default["params.regularization"]) == (8, 50.0), "the given config runs first"
    assert result.best_value >= default["value"]
    assert result.best_value == trials["value"].max()
    assert result.config.params == {**ALS.params, **result.best_params}
    # Refit on all of train, scored once on test: the tuned config holds up against the default.
    _, tuned, _ = fit_and_evaluate(result.config, planted)
    _, untuned, _ = fit_and_evaluate(ALS, planted)
    assert tuned["ndcg@10"] >= untuned["ndcg@10"] - 0.01, (tuned["ndcg@10"], untuned["ndcg@10"])


def test_sequential_study_repeats_with_its_seed(planted):
    tuning = {"n_trials": 5, "sampler_startup_trials": 3, "search_space": ALS_SPACE, "seed": 11}
    first = tune_model(ALS, planted, tuning).trials
    second = tune_model(ALS, planted, tuning).trials
    columns = ["number", "state", "value", "params.factors", "params.regularization"]
    assert first[columns].equals(second[columns])
    other = tune_model(ALS, planted, {**tuning, "seed": 12}).trials
    assert not first[columns].equals(other[columns])


def test_median_pruner_stops_noisy_trials_early(planted, toy_family):
    tuning = {
        "n_trials": 12,
        "search_space": {"noise": {"type": "float", "low": 0.0, "high": 1.0}},
        "pruner_startup_trials": 3,
        "pruner_warmup_steps": 1,
        "sampler_startup_trials": 12,  # random sampling: plenty of bad draws to prune
        "seed": 0,
    }
    result = tune_model(TrainConfig(model=toy_family, params={"epochs": 6, "noise": 0.9}), planted, tuning)

    trials = result.trials
    pruned = trials[trials["state"] == "PRUNED"]
    assert result.n_pruned == len(pruned) >= 1
    assert (pruned["epochs_reported"] < 6).all(), "pruned trials stop before their last epoch"
    assert (trials.loc[trials["state"] == "COMPLETE", "epochs_reported"] == 6).all()
    assert pruned["params.noise"].min() > result.best_params["noise"]
    assert result.best_params["noise"] < 0.5


def test_pruner_off_prunes_nothing(planted, toy_family):
    tuning = {
        "n_trials": 6,
        "search_space": {"noise": {"type": "float", "low": 0.0, "high": 1.0}},
        "pruner": False,
        "pruner_startup_trials": 0,
        "seed": 0,
    }
    result = tune_model(TrainConfig(model=toy_family, params={"epochs": 3}), planted, tuning)
    assert result.n_pruned == 0 and result.n_complete == 6


def test_failed_trials_are_recorded_and_the_study_goes_on(planted, toy_family):
    tuning = {
        "n_trials": 6,
        "search_space": {"fail": {"type": "categorical", "choices": [True, False]}},
        "enqueue_defaults": False,
        "seed": 1,
    }
    result = tune_model(TrainConfig(model=toy_family, params={"epochs": 2}), planted, tuning)
    failed = result.trials[result.trials["state"] == "FAIL"]
    assert result.n_failed == len(failed) >= 1 and result.n_complete >= 1
    assert failed["error"].str.contains("ValueError: fail=True").all()
    assert result.best_params == {"fail": False}


def test_a_study_where_every_trial_fails_raises_with_the_first_error(planted, toy_family):
    tuning = {"n_trials": 2, "search_space": {"fail": {"type": "categorical", "choices": [True]}}}
    with pytest.raises(RuntimeError, match="no trial of 'toy_epochs' completed.*fail=True"):
        tune_model(TrainConfig(model=toy_family, params={"epochs": 2}), planted, tuning)


def test_timeout_stops_starting_trials(planted):
    result = tune_model(ALS, planted, {"n_trials": 50, "timeout_seconds": 1e-6, "search_space": ALS_SPACE})
    assert result.n_trials == 1


def test_the_features_own_validation_split_is_used(planted):
    import dataclasses

    fit, validation = carve_validation(planted.train, 0.3, seed=5)
    features = dataclasses.replace(planted, train=fit, validation=validation)
    result = tune_model(ALS, features, {"n_trials": 1, "search_space": ALS_SPACE})
    assert result.trials.iloc[0]["state"] == "COMPLETE"


def test_family_without_space_is_refused_before_any_trial(planted):
    with pytest.raises(ConfigError, match="'popularity' has no search space"):
        tune_model(TrainConfig(model="popularity"), planted, {"n_trials": 2})


def test_parallel_trials_share_the_cores_of_models_that_take_them_all():
    import os

    from pipelines.tuning.trial import _with_thread_share

    cores = len(os.sched_getaffinity(0))
    assert _with_thread_share("als", {"factors": 8}, 2) == {"factors": 8, "num_threads": max(1, cores // 2)}
    assert _with_thread_share("als", {"num_threads": 3}, 2) == {"num_threads": 3}, "an explicit count is kept"
    assert _with_thread_share("als", {}, 1) == {}
    assert _with_thread_share("ease", {}, 4) == {}, "no num_threads option"
