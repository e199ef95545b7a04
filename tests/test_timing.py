"""Every step timed: seconds and peak memory per step, in the CLI's JSON and as a terminal table."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.timing import current_rss_mib, print_timings_table, timed_step, timings_table


def test_timed_step_records_seconds_and_the_steps_own_peak_memory() -> None:
    timings: dict = {}
    with timed_step("small", timings):
        pass
    before = current_rss_mib()
    with timed_step("allocates", timings):
        block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        del block
    assert set(timings) == {"small", "allocates"}
    assert timings["small"]["seconds"] >= 0
    assert timings["allocates"]["peak_rss_mib"] >= before + 250  # the peak inside the step, freed after
    assert timings["small"]["peak_rss_mib"] < timings["allocates"]["peak_rss_mib"]


def test_timed_step_records_even_when_the_step_fails() -> None:
    timings: dict = {}
    with pytest.raises(RuntimeError), timed_step("fails", timings):
        raise RuntimeError("boom")
    assert timings["fails"]["seconds"] >= 0 and timings["fails"]["peak_rss_mib"] > 0


def test_table_lists_each_step_and_prints_only_on_a_terminal() -> None:
    timings = {"ingest": {"seconds": 1.5, "peak_rss_mib": 200.0}, "fit:als": {"seconds": 2.25, "peak_rss_mib": 900.0}}
    table = timings_table(timings).splitlines()
    assert table[1].split() == ["ingest", "1.50", "200"] and table[2].split() == ["fit:als", "2.25", "900"]
    assert table[-1].split() == ["total", "3.75"]
    piped = io.StringIO()
    print_timings_table(timings, piped)
    assert piped.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    print_timings_table(timings, terminal)
    assert "fit:als" in terminal.getvalue()


@pytest.mark.slow
def test_cli_json_carries_every_steps_timing(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    code = main(["train", "--source", "synthetic", "--synthetic-users", "120", "--synthetic-items", "60",
                 "--model", "als", "--iterations", "2", "--factors", "4", "--no-track", "--run-name", "timed"])
    assert code == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    steps = summary["timings"]
    for name in ("ingest", "clean", "features", "fit:als", "evaluate:als", "fit:popularity", "evaluate:popularity"):
        assert steps[name]["seconds"] >= 0, name
        assert steps[name]["peak_rss_mib"] > 0, name
    assert "total" not in out.err  # stderr is not a terminal here: no table
