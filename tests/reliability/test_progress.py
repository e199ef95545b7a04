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
