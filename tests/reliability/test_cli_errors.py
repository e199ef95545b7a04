"""``recsys`` speaks in one line: bad URIs, aliases, users and paths never print a traceback
unless ``-v``; two runs started at the same instant on different data keep their own results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main

pytestmark = pytest.mark.slow
BAD = Path(__file__).resolve().parents[1] / "data" / "bad"


def _one_line_error(capsys, argv: list[str], status: int, pattern: str) -> None:
    import re

    assert main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("recsys ")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), err


def _recommend_errors_are_one_line_and_v_shows_the_traceback(model_uri, tmp_path, capsys):
    rec = ["recommend", "--users", "u1"]
    _one_line_error(capsys, [*rec, "--model-uri", "models:/recsys@nope"], 2,
                    r"cannot load model 'models:/recsys@nope': .*not found.*check the name, version or alias")
    _one_line_error(capsys, [*rec, "--model-uri", "models:/no-such-model/3"], 2, r"cannot load model .*no-such-model")
    _one_line_error(capsys, [*rec, "--model-uri", "not a uri"], 2, r"cannot load model 'not a uri'")
    _one_line_error(capsys, [*rec, "--model-uri", model_uri, "-o", str(tmp_path / "missing" / "recs.csv")], 2,
                    r"cannot write -o .*recs.csv: folder .*missing does not exist")
    _one_line_error(capsys, ["recommend", "--model-uri", model_uri, "--users-file", str(tmp_path / "none.txt")], 2,
                    r"users file .*none.txt does not exist")

    assert main(["-v", *rec, "--model-uri", "models:/recsys@nope"]) == 2
    assert "Traceback" in capsys.readouterr().err  # -v: the traceback, then the line

    out = tmp_path / "recs.csv"
    assert main(["recommend", "--model-uri", model_uri, "--users", "u1", "stranger", "-k", "3", "-o", str(out)]) == 0
    recs = pd.read_csv(out, dtype=str)
    assert recs.groupby("user_id")["source"].first().to_dict() == {"u1": "model", "stranger": "popularity"}
    assert "Traceback" not in capsys.readouterr().err


def test_two_runs_at_the_same_instant_then_recommend_errors_in_one_line(tmp_path, mlflow_home, capsys):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    runs = {}
    for users in (120, 200):  # different data, same second, no run name: the key must still differ
        argv = [sys.executable, "-m", "pipelines.cli", "train", "--synthetic-users", str(users),
                "--synthetic-items", "80", "--model", "popularity"]
        runs[users] = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    summaries = {}
    for users, proc in runs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err
        summaries[users] = json.loads(out)
    assert summaries[120]["run_key"] != summaries[200]["run_key"]
    for users, summary in summaries.items():
        assert summary["models"]["popularity"]["metrics"]["n_users"] == users
        rows = summary["rows"]
        assert rows["rows_in"] == rows["rows_train"] + rows["rows_test"] + rows["rows_quarantined"] + rows["duplicates_dropped"]
    import mlflow

    client = mlflow.MlflowClient()
    for summary in summaries.values():  # each run's logged model is still there
        run = client.get_run(summary["models"]["popularity"]["run_id"])
        assert run.info.status == "FINISHED"
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        assert parent.data.metrics["data.rows_in"] == summary["rows"]["rows_in"]  # the accounting, logged
    _recommend_errors_are_one_line_and_v_shows_the_traceback(
        summaries[120]["models"]["popularity"]["model_uri"], tmp_path, capsys)
