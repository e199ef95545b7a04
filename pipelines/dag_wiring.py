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


LANDING_POLL_SECONDS = 10.0  # how often the triggerer looks for the landing flag


def interactions_asset():
    """The interactions Asset with its watcher: the one definition every DAG file must use.

    Events come from ``recsys_ingest_events`` (the landed path in their extra) and from the
    watcher, a ``FileDeleteTrigger`` in the triggerer that consumes the flag file every landing
    touches. Airflow syncs an Asset's watchers from each DAG file that names it, whether as a
    schedule or an outlet: a file naming it without the watcher removes the watcher each time
    that file is parsed, and the triggerer stops looking for landed files.
    """
    from airflow.providers.standard.triggers.file import FileDeleteTrigger
    from airflow.sdk import Asset, AssetWatcher

    from pipelines.constants import INTERACTIONS_ASSET_URI
    from pipelines.data.landing import landed_flag

    trigger = FileDeleteTrigger(filepath=str(landed_flag()), poke_interval=LANDING_POLL_SECONDS)
    return Asset(INTERACTIONS_ASSET_URI, watchers=[AssetWatcher(name="landed_files", trigger=trigger)])


def schedule_from_env(variable: str, default: str) -> str | None:
    """The cron expression or preset in ``$variable`` (else ``default``); None for '' or 'none'."""
    value = os.environ.get(variable, default).strip()
    return None if value.lower() in ("", "none") else value
