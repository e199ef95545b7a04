"""Where the platform keeps its state: one home folder, a data lake inside it, keyed by run."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipelines.constants import ENV_HOME


# Absolute, so every process of a run finds the same home whatever its working directory
# (Airflow starts each task wherever its worker runs).
DEFAULT_HOME = "~/.recsys"


def home() -> Path:
    """The platform home, absolute and created if missing.

    ``$RECSYS_HOME`` when set (a relative value is taken against the current directory, once:
    a DAG run's plan records the absolute result and its tasks use that), else ``~/.recsys``.
    """
    path = Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def lake() -> Path:
    """Root of the data lake inside the home."""
    return home() / "lake"


_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def run_key(run_id: str) -> str:
    """A filesystem-safe key for an Airflow run id or CLI run name (stable: same id, same key)."""
    key = _UNSAFE.sub("_", run_id).strip("._")
    if not key:
        raise ValueError(f"run id {run_id!r} has no usable characters for a run key")
    return key


def run_dir(stage: str, key: str, root: str | os.PathLike | None = None) -> Path:
    """``<lake>/<stage>/<key>``: the partition a step writes for one run (it owns it and overwrites it)."""
    base = Path(root) if root is not None else lake()
    return base / stage / run_key(key)
