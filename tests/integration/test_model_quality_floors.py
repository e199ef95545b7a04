"""Every family, trained from the trigger form's defaults on ml-latest-small, holds its recorded score.

The floors are ``benchmarks/results/quality.json``: each family's nDCG@10 minus the tolerance
measured there across seeds, under the same protocol and code path (``benchmarks/quality.py``'s
own functions: ``from_params`` with only the source, split and seed set, the DAG's ingest,
cleaning and features steps, ``fit_and_evaluate``). The data goes through the steps once; every
family trains on that one split. So this also shows that every family trains from the form's
defaults without error. Skipped when the data is absent.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.quality import K, RESULTS, SEED, build_features, evaluate_candidate, form_config, ingest_and_clean
from pipelines.models import model_names

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FAMILIES = model_names()


@pytest.fixture(scope="module")
def report() -> dict:
    report = json.loads((RESULTS / "quality.json").read_text())
    assert report["protocol"]["seed"] == SEED and report["protocol"]["k"] == K
    return report


@pytest.fixture(scope="module")
def recorded(report) -> dict[str, dict]:
    return {row["model"]: row for row in report["leaderboard"]}


@pytest.fixture(scope="module")
def form_run(movielens_dir, tmp_path_factory):
    """(candidates by family, features): the form's config for every family, the split built once."""
    config = form_config("movielens", movielens_dir, FAMILIES, SEED)
    lake = tmp_path_factory.mktemp("floors-lake")
    ingested, cleaned = ingest_and_clean(config, lake)
    features, counts = build_features(config, ingested, cleaned, lake)
    return {c.model: c for c in config.candidates}, features, counts


def test_the_split_is_the_recorded_one(form_run, report):
    _, _, counts = form_run
    assert counts == report["dataset"]["counts"]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_holds_its_recorded_ndcg(family, form_run, recorded):
    candidates, features, _ = form_run
    assert family in recorded, f"{family} has no row in benchmarks/results/quality.json: rerun benchmarks/quality.py"
    row, _ = evaluate_candidate(candidates[family], features)
    assert "error" not in row, row.get("error")
    floor = recorded[family][f"ndcg@{K}"] - recorded[family]["tolerance"]
    assert row[f"ndcg@{K}"] >= floor, (family, row[f"ndcg@{K}"], floor)
