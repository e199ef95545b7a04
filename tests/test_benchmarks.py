"""The benchmark scripts' own arithmetic and the summary page they feed (no benchmark is run here)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_scale_exponent_recovers_known_growth():
    scale = _load("scale")
    sizes = [1_000_000, 5_000_000, 20_000_000]
    assert scale.exponent(sizes, [2.0 * s for s in sizes]) == pytest.approx(1.0, abs=1e-3)
    assert scale.exponent(sizes, [3e-9 * s**1.3 for s in sizes]) == pytest.approx(1.3, abs=1e-3)
    assert scale.exponent(sizes[:1], [1.0]) is None
    assert [scale.parse_size(t) for t in ("200k", "5M", "1500")] == [200_000, 5_000_000, 1500]
    assert [scale.label(n) for n in (200_000, 5_000_000)] == ["200k", "5M"]


def test_scale_summary_bars_and_shares():
    scale = _load("scale")

    def run(n, fit, evaluate, peak):
        return {"interactions_requested": n, "wall_seconds": 10 + fit + evaluate, "peak_rss_tree_mib": peak,
                "steps": {"fit_als": {"seconds": fit}, "evaluate_als": {"seconds": evaluate}, "ingest": {"seconds": 10.0}}}

    summary = scale.summarize({"1M": run(1_000_000, 4.0, 3.0, 900), "20M": run(20_000_000, 80.0, 100.0, 13 * 1024)})
    assert summary["largest"] == "20M"
    assert summary["evaluate_over_fit_at_largest"] == pytest.approx(1.25)
    assert summary["bars"]["evaluate_not_longer_than_fit"] is False
    assert summary["bars"]["peak_memory_at_20M_under_12GiB"] is False
    assert math.isclose(sum(summary["share_of_steps_at_largest"].values()), 1.0, abs_tol=0.01)


def test_summary_page_renders_every_committed_result(tmp_path):
    summary = _load("summary")
    results = ROOT / "benchmarks" / "results"
    text = summary.main(results, tmp_path / "SUMMARY.md")
    assert (tmp_path / "SUMMARY.md").read_text() == text
    assert "could not be summarized" not in text
    for title, name, _ in summary.SECTIONS:
        assert (f"## {title}" in text) == (results / name).exists(), name
