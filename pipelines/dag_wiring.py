"""What every DAG file needs from pipelines/ to wire itself: its form and its schedule.

Cheap to import (the DAG processor parses every file often): Airflow's ``Param`` is imported
inside the function, and nothing heavy at the top.
"""

from __future__ import annotations

import os
from typing import Any, Mapping


def airflow_params(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Airflow ``Param`` objects (the trigger form) from a step's ``param_specs()``."""
    from airflow.sdk import Param

    params = {}
    for name, spec in specs.items():
        spec = dict(spec)
        params[name] = Param(spec.pop("default"), **spec)
    return params


def schedule_from_env(variable: str, default: str) -> str | None:
    """The cron expression or preset in ``$variable`` (else ``default``); None for '' or 'none'."""
    value = os.environ.get(variable, default).strip()
    return None if value.lower() in ("", "none") else value
