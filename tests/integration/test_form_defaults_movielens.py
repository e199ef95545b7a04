"""Families train on ml-latest-small from the trigger form's defaults: the run a user gets by only
picking the models, through the same ``from_params`` the DAG and the CLI use."""

from __future__ import annotations

import math
import os

import pytest

from pipelines.models import model_class, model_names
from pipelines.pipeline import from_params, run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Set to 1 to train every family; by default only those whose fit takes seconds here (the others
#: take minutes each on 2 CPU cores: see fit_seconds in benchmarks/results/quality.json).
EVERY_FAMILY_ENV = "RECSYS_TEST_EVERY_FAMILY"
QUICK_FAMILIES = ("als", "content", "ease", "hybrid", "itemknn", "svd")


def test_families_train_from_the_form_defaults_on_movielens(movielens_dir, tmp_path):
    from pipelines.serving.bundle import RecommenderBundle

    families = model_names() if os.environ.get(EVERY_FAMILY_ENV) == "1" else list(QUICK_FAMILIES)
    config = from_params({"source": "movielens", "path": str(movielens_dir), "models": families})
    result = run_pipeline(config, "form-defaults", out_root=str(tmp_path), track=False)

    by_model = {c["model"]: c for c in result["candidates"]}
    assert set(by_model) == {*families, "popularity"}
    for family in families:
        ndcg = by_model[family]["metrics"]["ndcg@10"]
        assert math.isfinite(ndcg) and ndcg > 0, (family, ndcg)
        trained = RecommenderBundle.load(by_model[family]["bundle_uri"]).model
        assert trained.config == model_class(family).config_class(), family  # exactly its own defaults
