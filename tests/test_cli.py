"""The ``recsys`` command line: train on a split made elsewhere, then recommend from the logged model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import planted_interactions

pytestmark = pytest.mark.slow


def _recsys(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def split_files(tmp_path):
    pairs = planted_interactions(n_users=150, n_items=80, per_user=16, seed=3)
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    frame["user_id"] = "u" + frame["user_id"].astype(str)
    frame["item_id"] = "i" + frame["item_id"].astype(str)
    frame["rating"] = 4.0
    frame["timestamp"] = 1_600_000_000 + frame.index
    test_mask = frame.groupby("user_id").cumcount() % 4 == 0
    train, test = tmp_path / "A.csv", tmp_path / "B.csv"
    frame[~test_mask].to_csv(train, index=False)
    frame[test_mask].to_csv(test, index=False)
    return train, test, frame[~test_mask]


def test_train_on_given_split_then_recommend_excludes_training_items(tmp_path, split_files, mlflow_home):
    train, test, train_frame = split_files
    env = {**os.environ, "RECSYS_HOME": str(tmp_path / "home")}
    out = _recsys("train", "--train", str(train), "--test", str(test), "--model", "als", "--factors", "8",
                  "--iterations", "5", "--run-name", "cli-test", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    als = summary["models"]["als"]
    assert 0.0 < als["metrics"]["ndcg@10"] <= 1.0
    assert als["metrics"]["n_users"] == 150
    assert summary["models"]["popularity"]["metrics"]["ndcg@10"] > 0

    users = ["u0", "u1", "u7", "nobody"]
    result = tmp_path / "recs.json"
    out = _recsys("recommend", "--model-uri", als["model_uri"], "--users", *users, "-k", "5",
                  "--format", "json", "-o", str(result), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    recs = json.loads(result.read_text())
    assert set(recs) == set(users)
    seen = train_frame.groupby("user_id")["item_id"].apply(set)
    for user in ("u0", "u1", "u7"):
        items = [row["item_id"] for row in recs[user]]
        assert len(items) == 5 and not set(items) & seen[user], user
        assert [row["rank"] for row in recs[user]] == [1, 2, 3, 4, 5]
    assert len(recs["nobody"]) == 5  # unknown user: popular items

    out = _recsys("recommend", "--model-uri", als["model_uri"], "--users", "u0", "-k", "3", env=env)
    assert out.returncode == 0
    assert list(pd.read_csv(__import__("io").StringIO(out.stdout)).columns) == ["user_id", "rank", "item_id", "score", "source"]


def test_help_explains_every_option():
    for args in (["--help"], ["train", "--help"], ["recommend", "--help"], ["status", "--help"]):
        out = _recsys(*args, env=dict(os.environ))
        assert out.returncode == 0
        assert "usage: recsys" in out.stdout


def test_bad_parameter_is_refused_before_work(tmp_path):
    out = _recsys("train", "--factors", "-4", "--no-track", env={**os.environ, "RECSYS_HOME": str(tmp_path)})
    assert out.returncode == 2
    assert "factors" in out.stderr and "greater than or equal to 1" in out.stderr
    assert not (tmp_path / "lake").exists()
