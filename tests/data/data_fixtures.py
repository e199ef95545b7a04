"""Helpers shared by the data tests (imported by name; conftest.py only holds fixtures)."""

from __future__ import annotations

from pathlib import Path


def write_csv(path: Path, text: str) -> Path:
    """Write a small CSV fixture (dedented text) and return its path."""
    import textwrap

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path
