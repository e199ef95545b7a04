"""Quality floor through the whole pipeline on real data (ml-latest-small).

The platform's own steps, as the DAG runs them: MovieLens ingest, cleaning, per-user
stratified 75/25 split with seed 42, K=10, training items excluded, every test rating
relevant; default hyperparameters of the trigger form (64 factors, 15 iterations).
Reference: ALS 0.347, popularity 0.21 (independent evaluation).
"""

from __future__ import annotations

import pytest

from pipelines.pipeline import from_params, run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_als_beats_floor_on_movielens_through_the_pipeline(movielens_dir, tmp_path):
    config = from_params({"source": "movielens", "path": str(movielens_dir), "split": "stratified",
                          "test_fraction": 0.25, "seed": 42, "k": 10, "models": ["als"]})
    assert config.candidates[0].params == {"seed": 42}  # ALS with its own defaults
    result = run_pipeline(config, "movielens-quality", out_root=str(tmp_path), track=False)

    assert result["ingest"]["rows"] == 100_836
    assert result["clean"]["rows_quarantined"] == 0
    assert (result["features"]["n_train"], result["features"]["n_test"]) == (75_630, 25_206)
    metrics = {c["model"]: c["metrics"] for c in result["candidates"]}
    assert metrics["popularity"]["ndcg@10"] == pytest.approx(0.21, abs=0.015)
    assert metrics["als"]["ndcg@10"] >= 0.33, metrics["als"]
    assert metrics["als"]["n_users"] == 610
