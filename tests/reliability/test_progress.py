"""Progress bars show on a terminal only: the CLI turns them on when stderr is a TTY."""

from __future__ import annotations

import os

from pipelines.progress import ENV_PROGRESS, step_bar


def test_bar_only_when_asked(monkeypatch, capsys):
    monkeypatch.delenv(ENV_PROGRESS, raising=False)
    with step_bar(2, "recsys train") as bar:
        bar.set_postfix_str("ingest")
        bar.update()
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(ENV_PROGRESS, "1")
    with step_bar(2, "recsys train") as bar:
        bar.set_postfix_str("ingest")
        bar.update()
    assert "recsys train" in capsys.readouterr().err


def test_cli_leaves_bars_off_when_stderr_is_piped(monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.delenv(ENV_PROGRESS, raising=False)
    assert main(["recommend", "--model-uri", "x", "-k", "0", "--users", "u"]) == 2  # fails before any work
    assert ENV_PROGRESS not in os.environ  # capsys' stderr is not a terminal
    assert capsys.readouterr().err.strip() == "recsys recommend: -k must be >= 1, got 0"


def test_a_fit_shows_a_bar_per_iteration_with_its_loss_only_when_asked(monkeypatch, capsys):
    """The train step's bar counts the family's iterations and shows the loss; silent otherwise."""
    from types import SimpleNamespace

    from pipelines.data.synthetic import planted_split
    from pipelines.training.config import TrainConfig
    from pipelines.training.run import fit_and_evaluate

    planted = planted_split(200, 80, rank=4, per_user=15, test_per_user=3, seed=0)
    features = SimpleNamespace(train=planted.train, test=planted.test, validation=None, item_features=None)
    config = TrainConfig(model="als", params={"factors": 8, "iterations": 3})
    monkeypatch.delenv(ENV_PROGRESS, raising=False)
    fit_and_evaluate(config, features)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(ENV_PROGRESS, "1")
    model, _, _ = fit_and_evaluate(config, features)
    shown = capsys.readouterr().err
    assert "fit als" in shown and "3/3" in shown and "loss" in shown
    assert len(model.training_history_) == 3
