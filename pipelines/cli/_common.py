"""Small helpers shared by the CLI's subcommands."""

from __future__ import annotations

import json
from typing import Any, Sequence


def key_values(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options; values are JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"recsys: {what} must look like KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def tracking_uri_option(parser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite in $RECSYS_HOME)")
