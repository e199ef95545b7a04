"""The ``recsys`` command line: options generated from the form, each family with its own defaults;
train on a split made elsewhere, then recommend from the logged model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from pipelines.cli import build_parser, main
from pipelines.cli.train import pipeline_config
from pipelines.errors import ConfigError
from pipelines.models import create_model, model_class, model_names
from pipelines.params import param_specs
from pipelines.pipeline import from_params
from tests.conftest import planted_interactions


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


@pytest.mark.slow
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
    assert als["fitted"]["regularization"] > 0  # chosen on a validation carve, reported back
    timings = summary["timings"]  # each step's seconds and peak memory
    assert {"ingest", "clean", "features", "fit:als", "evaluate:als", "fit:popularity", "evaluate:popularity"} <= set(timings)
    assert all(t["seconds"] >= 0 and t["peak_rss_mib"] > 0 for t in timings.values()), timings
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


@pytest.mark.slow
def test_help_explains_every_option():
    for args in (["--help"], ["train", "--help"], ["recommend", "--help"], ["status", "--help"]):
        out = _recsys(*args, env=dict(os.environ))
        assert out.returncode == 0
        assert "usage: recsys" in out.stdout


@pytest.mark.slow
def test_bad_parameter_is_refused_before_work(tmp_path):
    out = _recsys("train", "--factors", "-4", "--no-track", env={**os.environ, "RECSYS_HOME": str(tmp_path)})
    assert out.returncode == 2
    assert "model_params.als.factors" in out.stderr and "greater than or equal to 1" in out.stderr
    assert not (tmp_path / "lake").exists()


# -- options and the configs they build (in process, nothing trains) ------------------------


def _config(*argv: str):
    return pipeline_config(build_parser().parse_args(["train", *argv]))


def _candidate(config, family: str):
    return next(c for c in config.candidates if c.model == family)


@pytest.mark.parametrize("family", model_names())
def test_every_family_from_the_cli_gets_exactly_its_own_default_config(family):
    config = _config("--model", family)
    candidate = _candidate(config, family)
    assert candidate.params == {} and candidate.weighting is None
    assert create_model(family, candidate.model_params()).config == model_class(family).config_class()
    assert config == from_params({"models": [family]})  # the CLI and the form build the same run


def test_every_form_parameter_has_a_cli_option():
    options = vars(build_parser().parse_args(["train"]))
    assert set(param_specs()) <= set(options)
    assert {options[name] for name in param_specs()} == {None}  # unset: the form's default applies


def test_family_qualified_param_reaches_only_that_family():
    config = _config("--model", "ease", "--model", "als", "--param", "ease.regularization=300")
    assert _candidate(config, "ease").params == {"regularization": 300}
    assert _candidate(config, "als").params == {}
    assert create_model("als", _candidate(config, "als").model_params()).config == model_class("als").config_class()


def test_nested_param_sets_a_family_weighting():
    config = _config("--model", "als", "--param", "als.weighting.scheme=bm25", "--param", "als.weighting.k1=50")
    weighting = _candidate(config, "als").weighting
    assert (weighting.scheme, weighting.k1) == ("bm25", 50)


def test_unqualified_param_is_refused_naming_the_families_that_have_it():
    refusal = r"must name the family.*ease\.regularization.*field 'regularization': als, bpr, ease"
    with pytest.raises(SystemExit, match=refusal):
        _config("--model", "ease", "--param", "regularization=300")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--model", "ease", "--param", "ease.regularization=-1"], r"model_params\.ease\.regularization"),
        (["--model", "ease", "--param", "ease.factors=8"], r"model_params\.ease\.factors: no such field"),
        (["--model", "als", "--param", "bpr.factors=8"], r"model_params\.bpr: bpr is not trained"),
        (["--model", "als", "--factors", "0"], r"model_params\.als\.factors"),
        (["--kcore", "-1"], "kcore"),
    ],
)
def test_bad_values_are_refused_naming_family_and_field(argv, named, capsys):
    with pytest.raises(ConfigError, match=named):
        _config(*argv)
    assert main(["train", "--no-track", *argv]) == 2  # the command itself: exit 2, message on stderr
    assert "recsys train: invalid" in capsys.readouterr().err


def test_shorthands_need_one_model():
    assert _candidate(_config("--model", "als", "--factors", "8", "--iterations", "5"), "als").params == {
        "factors": 8, "iterations": 5}
    with pytest.raises(SystemExit, match="only apply with one --model"):
        _config("--model", "als", "--model", "bpr", "--factors", "8")
    weighting = _candidate(_config("--model", "itemknn", "--alpha", "2"), "itemknn").weighting
    assert (weighting.scheme, weighting.alpha) == ("bm25", 2.0)  # --alpha alone keeps the family's scheme


def test_generated_options_reach_their_steps():
    config = _config("--source", "sql", "--sql-conn-id", "warehouse", "--sql-table", "ratings", "--kcore", "5",
                     "--tune", "--n-trials", "3", "--seed", "7", "--no-gpu", "-k", "20", "--margin", "0.01",
                     "--registered-model", "other")
    assert (config.ingest.conn_id, config.ingest.table, config.cleaning.kcore) == ("warehouse", "ratings", 5)
    assert config.ingest.url is None  # a password-bearing URL is never an option: it would reach logs and params
    assert (config.tuning.n_trials, config.tuning.seed, config.features.seed) == (3, 7, 7)
    assert _candidate(config, "als").model_params() == {"seed": 7, "device": "cpu"}
    promotion = config.promotion
    assert (promotion.metric, promotion.margin, promotion.registered_model) == ("ndcg@20", 0.01, "other")
