"""The training run a monitoring check asks for: what it trains on, what it holds out, and why.

When a check says ``retrain`` (:func:`pipelines.monitoring.run.monitor`), the monitoring DAG
triggers ``recsys_training`` with the conf :func:`retrain_conf` builds:

- the data: the source of the interactions the check looked at (its own, else the champion's
  training source, which a landing folder keeps growing), read again by the training run;
- the held-out data: the newest ``holdout_fraction`` of the interactions that arrived after the
  champion's snapshot (a ``temporal_cutoff`` split). The champion never saw them and the
  candidate is trained on everything before them, so promotion compares both on the same
  newest data (the champion is re-scored on the run's held-out split). Held-out rows of users or
  items that nobody trained on are dropped and counted rather than failing the run
  (``max_cold_fraction`` 1 by default): after a drift many new interactions are by new users;
- ``trigger_reason``: the check's reason, recorded on the run's MLflow parent run;
- ``params``: any other training parameter (models, model_params, K...), as the monitoring form gives it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from pipelines.constants import TIMESTAMP
from pipelines.errors import ConfigError, DataError
from pipelines.storage import MANIFEST

log = logging.getLogger(__name__)

TRAINING_DAG = "recsys_training"
#: The form parameters that say where a training run reads its data.
SOURCE_PARAMS = ("source", "path", "sql_conn_id", "sql_table", "sql_query")


class RetrainConfig(BaseModel):
    """How a retrain asked for by monitoring is set up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    holdout_fraction: float = Field(0.25, gt=0, lt=1, description="share of the interactions since the champion's "
                                    "snapshot held out for the comparison (the newest ones)")
    max_cold_fraction: float = Field(1.0, ge=0, le=1, description="the run's max_cold_fraction (see the module doc)")
    params: dict[str, Any] = Field(default_factory=dict, description="other training parameters (the training "
                                   "form's names); they win over what this module sets")


def check_training_params(params: Mapping[str, Any]) -> None:
    """Refuse parameters the training form does not know or refuses (ConfigError naming them)."""
    from pipelines.params import check_params

    check_params({key: value for key, value in params.items() if key != "model_params"})


def source_params(raw_partition: str) -> dict[str, Any]:
    """The training form's source parameters of the data a check read (its raw partition's manifest).

    Raises:
        ConfigError: no manifest, or a SQL source given by URL (never stored; use a connection id).
    """
    from pipelines.data.snapshot import read_json

    raw = Path(raw_partition)
    manifest = (raw.parent if raw.name == "interactions" else raw) / MANIFEST
    if not manifest.is_file():
        raise ConfigError(f"retrain: the check's data manifest {manifest} is gone; give the monitoring run a source")
    settings = dict(read_json(manifest).get("config") or {})
    if settings.get("source") == "sql" and not settings.get("conn_id"):
        raise ConfigError("retrain: the data was read from SQL through a URL, which never travels to a DAG run; "
                          "give the monitoring run an Airflow connection id (sql_conn_id)")
    named = {"source": settings.get("source"), "path": settings.get("path"), "sql_conn_id": settings.get("conn_id"),
             "sql_table": settings.get("table"), "sql_query": settings.get("query")}
    return {key: value for key, value in named.items() if value is not None}


def clean_interactions(folders: Sequence[str]):
    """The clean interactions (typed by the cleaning step) in ``folders``, as one pandas frame."""
    import pandas as pd

    from pipelines.constants import ITEM, TIMESTAMP, USER
    from pipelines.features.run import interaction_files

    files = [path for folder in folders for path in interaction_files(Path(folder))]
    if not files:
        raise DataError(f"retrain: no clean interactions in {', '.join(map(str, folders))}")
    frame = pd.concat([pd.read_parquet(f, columns=[USER, ITEM, TIMESTAMP]) for f in files], ignore_index=True)
    return frame.astype({USER: str, ITEM: str, TIMESTAMP: "int64"})


def holdout_split(interactions, after: int, holdout_fraction: float) -> dict[str, Any] | None:
    """The temporal cut-off that holds out the newest ``holdout_fraction`` of the rows after ``after``.

    Returns ``{"cutoff", "held_out", "warm_held_out", "new_rows"}`` or None when no new row would
    have a user and an item seen before the cut-off (no comparison on new data is possible).
    """
    import numpy as np

    from pipelines.constants import ITEM, USER

    new = interactions[interactions[TIMESTAMP] > after]
    if new.empty:
        return None
    cutoff = max(int(np.quantile(new[TIMESTAMP].to_numpy(), 1.0 - holdout_fraction, method="higher")), after + 1)
    before, held = interactions[interactions[TIMESTAMP] < cutoff], interactions[interactions[TIMESTAMP] >= cutoff]
    warm = held[USER].isin(before[USER]) & held[ITEM].isin(before[ITEM])
    if not warm.any():
        return None
    return {"cutoff": cutoff, "held_out": int(len(held)), "warm_held_out": int(warm.sum()), "new_rows": int(len(new))}


def retrain_conf(
    result: Mapping[str, Any],
    config: RetrainConfig | Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The conf of the training run a monitoring ``result`` asks for; None when it asks for none.

    Args:
        result: :func:`pipelines.monitoring.run.monitor`'s result: ``retrain``, ``reason``, the
            champion's ``snapshot`` (``clean_uris``) and the check's data ``partitions``.
        config: a :class:`RetrainConfig` or its fields.
        data: the source to train on when the result names none (no champion): form names
            (source, path, sql_*).

    Raises:
        ConfigError: ``config.params`` names a parameter the training form refuses, or no source is known.
    """
    from pipelines.data.config import validate_config
    from pipelines.training.trigger import MAX_REASON

    cfg = validate_config(RetrainConfig, dict(config) if isinstance(config, Mapping) else config, "retrain")
    check_training_params(cfg.params)
    if not result.get("retrain"):
        return None
    partitions = result.get("partitions") or {}
    source = source_params(partitions["raw"]) if partitions.get("raw") else dict(data or {})
    source = {key: value for key, value in source.items() if key in SOURCE_PARAMS and value is not None}
    if not source.get("source") and "source" not in cfg.params:
        raise ConfigError("retrain: no data to train on: the check read none (no champion) and the monitoring run "
                          "names no source; give it one, or source in retrain_params")
    conf: dict[str, Any] = dict(source)
    note = "held out by the form's default split"
    snapshot = ((result.get("champion") or {}).get("snapshot") or {}).get("clean_uris")
    if snapshot and partitions.get("clean"):
        current = clean_interactions([partitions["clean"]])
        split = holdout_split(current, int(clean_interactions(snapshot)[TIMESTAMP].max()), cfg.holdout_fraction)
        if split is not None:
            conf.update(split="temporal_cutoff", split_cutoff=str(split["cutoff"]),
                        max_cold_fraction=cfg.max_cold_fraction)
            note = (f"held out: the newest {split['held_out']} of {split['new_rows']} interactions since the "
                    f"champion's snapshot (from {split['cutoff']}), {split['warm_held_out']} of known users and items")
        else:
            note = "no new interactions of known users and items: held out by the form's default split"
    conf.update(cfg.params)
    reason = str(result.get("reason") or "monitoring asked for a retrain")
    conf["trigger_reason"] = f"monitoring: {reason}; {note}"[:MAX_REASON]
    return conf
