"""The training run a monitoring check asks for: what it trains on, what it holds out, and why.

When a check says ``retrain`` (:func:`pipelines.monitoring.run.monitor`), the monitoring DAG
triggers ``recsys_training`` with the conf :func:`retrain_conf` builds:

- the data: the interactions the check looked at (its source, else the champion's own training
  source, which a landing folder keeps growing);
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
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import ConfigError

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


def champion_training(tracking_uri: str | None, registered_model: str, version: str) -> dict[str, Any]:
    """Where the champion's data came from: ``{"source", "path"...}`` of its run and its snapshot URI."""
    from pipelines.tracking.promotion import registry_client

    client = registry_client(tracking_uri)
    mv = client.get_model_version(registered_model, str(version))
    run = client.get_run(mv.run_id)
    parent_id = run.data.tags.get("mlflow.parentRunId")
    params = client.get_run(parent_id).data.params if parent_id else run.data.params
    source = {"source": params.get("ingest.source")}
    for key, param in (("path", "ingest.path"), ("sql_conn_id", "ingest.conn_id"), ("sql_table", "ingest.table"),
                       ("sql_query", "ingest.query")):
        value = params.get(param)
        if value not in (None, "", "None"):
            source[key] = value
    return {"data": source, "snapshot_uri": mv.tags.get("lineage.snapshot_uri")}


def snapshot_end(snapshot_uri: str) -> int:
    """The latest usable timestamp (epoch seconds) in a raw snapshot folder.

    Raises:
        DataError: the snapshot is gone or holds no usable timestamp.
    """
    import pandas as pd

    from pipelines.cleaning.rules import parse_timestamps
    from pipelines.constants import TIMESTAMP
    from pipelines.data.snapshot import parquet_files
    from pipelines.errors import DataError

    files = parquet_files(snapshot_uri)
    if not files:
        raise DataError(f"champion snapshot {snapshot_uri!r} holds no Parquet file (was the lake cleared?)")
    stamps = parse_timestamps(pd.concat([pd.read_parquet(f, columns=[TIMESTAMP])[TIMESTAMP] for f in files]))
    if stamps.notna().sum() == 0:
        raise DataError(f"champion snapshot {snapshot_uri!r} has no readable timestamp")
    return int(stamps.max())


def current_interactions(data: Mapping[str, Any]):
    """The interactions of a training source, typed (ids text, rating float, timestamp int64), usable rows only."""
    import pandas as pd

    from pipelines.cleaning.rules import normalize_ids, parse_ratings, parse_timestamps
    from pipelines.constants import ITEM, RATING, TIMESTAMP, USER
    from pipelines.data.config import IngestConfig
    from pipelines.data.ingest import interactions_frame

    frame = interactions_frame(IngestConfig(**{k: v for k, v in data.items() if k in ("source", "path")}))
    raw = frame[[USER, ITEM, RATING, TIMESTAMP]].compute(scheduler="threads")
    typed = pd.DataFrame({USER: normalize_ids(raw[USER]), ITEM: normalize_ids(raw[ITEM]),
                          RATING: parse_ratings(raw[RATING]), TIMESTAMP: parse_timestamps(raw[TIMESTAMP])}).dropna()
    return typed.astype({TIMESTAMP: "int64"})


def holdout_split(interactions, after: int, holdout_fraction: float) -> dict[str, Any] | None:
    """The temporal cut-off that holds out the newest ``holdout_fraction`` of the rows after ``after``.

    Returns ``{"cutoff", "held_out", "warm_held_out", "new_rows"}`` or None when no new row would
    have a user and an item seen before the cut-off (no comparison on new data is possible).
    """
    import numpy as np

    from pipelines.constants import ITEM, TIMESTAMP, USER

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
    *,
    data: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    registered_model: str | None = None,
) -> dict[str, Any] | None:
    """The conf of the training run a monitoring ``result`` asks for; None when it asks for none.

    Args:
        result: :func:`pipelines.monitoring.run.monitor`'s result (``retrain``, ``reason``, ``champion``).
        config: a :class:`RetrainConfig` or its fields.
        data: the training source to use (form names: source, path, sql_*); None: the champion's own.
        tracking_uri, registered_model: where the champion is registered (its source and snapshot).

    Raises:
        ConfigError: ``config.params`` names a parameter the training form refuses.
    """
    from pipelines.constants import DEFAULT_REGISTERED_MODEL
    from pipelines.data.config import validate_config
    from pipelines.training.trigger import MAX_REASON

    cfg = validate_config(RetrainConfig, config if not isinstance(config, Mapping) else dict(config), "retrain")
    check_training_params(cfg.params)
    if not result.get("retrain"):
        return None
    champion = dict(result.get("champion") or {})
    reason = str(result.get("reason") or "monitoring asked for a retrain")
    trained = {}
    if champion.get("version") is not None:
        trained = champion_training(tracking_uri, registered_model or champion.get("registered_model")
                                    or DEFAULT_REGISTERED_MODEL, str(champion["version"]))
    source = {k: v for k, v in dict(data or trained.get("data") or {}).items() if k in SOURCE_PARAMS and v is not None}
    if not source.get("source"):
        raise ConfigError("retrain: no training source: the check named none and the champion's run records none")
    conf: dict[str, Any] = dict(source)
    note = "held out by the form's default split"
    snapshot = champion.get("snapshot_uri") or trained.get("snapshot_uri")
    if snapshot and source["source"] in ("csv", "parquet", "movielens", "movielens100k"):
        split = holdout_split(current_interactions(source), snapshot_end(snapshot), cfg.holdout_fraction)
        if split is not None:
            conf.update(split="temporal_cutoff", split_cutoff=str(split["cutoff"]),
                        max_cold_fraction=cfg.max_cold_fraction)
            note = (f"held out: the newest {split['held_out']} of {split['new_rows']} interactions since the "
                    f"champion's snapshot (from {split['cutoff']}), {split['warm_held_out']} of known users and items")
        else:
            note = "no new interactions of known users and items: held out by the form's default split"
    conf.update(cfg.params)
    conf["trigger_reason"] = f"monitoring: {reason}; {note}"[:MAX_REASON]
    return conf
