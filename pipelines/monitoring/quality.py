"""Live quality: the champion on the interactions that arrived after its snapshot, and its served lists.

**Live ranking metrics.** No retraining: the champion's bundle ranks items for the users it knows
that have new interactions, each user's snapshot items excluded, and the shared
:func:`~pipelines.evaluation.bundle_eval.evaluate_bundle` scores the lists against the new items
(pairs already in the snapshot, re-ratings, are not discoveries and are left out). Items the
champion never saw count as relevant: missing them is part of how it ages. ``live_quality_ratio``
is live nDCG@K over the nDCG@K the champion's run recorded on its own test split.

**Served recommendations.** From ``recsys_events`` in the window: ``ctr`` = clicks / impressions,
and ``impression_conversion`` = the share of impressed (user, item) pairs that the user went on
to interact with (a new interaction at or after the first impression). Events that name another
model version than the champion are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.constants import ITEM, TIMESTAMP, USER

if TYPE_CHECKING:
    import scipy.sparse as sp

    from pipelines.serving.bundle import RecommenderBundle


@dataclass(frozen=True)
class LiveSplit:
    """What :func:`evaluate_bundle` reads of a feature set: history (excluded) and new items (relevant)."""

    train: "sp.csr_matrix"
    test: "sp.csr_matrix"
    user_ids: np.ndarray
    item_ids: np.ndarray


def live_split(bundle: "RecommenderBundle", history: pd.DataFrame, fresh: pd.DataFrame) -> LiveSplit | None:
    """Users the bundle knows with new interactions: their history and their new items as CSR rows.

    ``history`` and ``fresh`` have user_id and item_id. Pairs of ``fresh`` already in ``history``
    are dropped. None when no known user has a new interaction.
    """
    import scipy.sparse as sp

    fresh = fresh[[USER, ITEM]].astype(str)
    history = history[[USER, ITEM]].astype(str)
    fresh = fresh.loc[bundle.user_index(fresh[USER].to_numpy()) >= 0]
    if len(history) and len(fresh):
        pairs = pd.util.hash_pandas_object(fresh, index=False)
        fresh = fresh.loc[~pairs.isin(pd.util.hash_pandas_object(history, index=False)).to_numpy()]
    if len(fresh) == 0:
        return None
    users = pd.Index(fresh[USER].unique())
    history = history.loc[history[USER].isin(users)]
    items = pd.Index(pd.concat([history[ITEM], fresh[ITEM]], ignore_index=True).unique())
    shape = (len(users), len(items))

    def matrix(frame: pd.DataFrame) -> sp.csr_matrix:
        rows, cols = users.get_indexer(frame[USER]), items.get_indexer(frame[ITEM])
        out = sp.csr_matrix((np.ones(len(frame), dtype=np.float32), (rows, cols)), shape=shape)
        out.sum_duplicates()
        out.data[:] = 1.0
        return out

    return LiveSplit(train=matrix(history), test=matrix(fresh), user_ids=users.to_numpy(dtype=str),
                     item_ids=items.to_numpy(dtype=str))


def live_ranking_metrics(bundle: "RecommenderBundle", history: pd.DataFrame, fresh: pd.DataFrame,
                         k: int) -> dict[str, float | None]:
    """``live_users``, ``live_ndcg``, ``live_recall``, ``live_precision``, ``live_hit_rate`` at ``k``
    (None when no known user has a new interaction)."""
    from pipelines.evaluation.bundle_eval import evaluate_bundle

    split = live_split(bundle, history, fresh)
    if split is None:
        return {"live_users": 0.0, "live_ndcg": None, "live_recall": None, "live_precision": None,
                "live_hit_rate": None}
    metrics = evaluate_bundle(bundle, split, k=k)
    return {"live_users": float(metrics["n_users"]), "live_ndcg": metrics[f"ndcg@{k}"],
            "live_recall": metrics[f"recall@{k}"], "live_precision": metrics[f"precision@{k}"],
            "live_hit_rate": metrics[f"hit_rate@{k}"]}


def recorded_metric(client: Any, run_id: str | None, name: str, k: int) -> float | None:
    """The champion run's test ``name@k`` (``ndcg``, ``recall``): the metric logged at the run's K,
    else the ``<name>_at_k`` curve at step ``k``; None when the run recorded neither."""
    if not run_id:
        return None
    run = client.get_run(run_id)
    value = run.data.metrics.get(f"{name}_at_{k}")
    if value is not None:
        return float(value)
    for point in client.get_metric_history(run_id, f"{name}_at_k"):
        if int(point.step) == k:
            return float(point.value)
    return None


def _epoch_seconds(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values, utc=True)
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def read_events(engine: Any, start: datetime, end: datetime) -> pd.DataFrame:
    """``recsys_events`` rows with ``start <= event_time < end``: event_type, user_id, item_id,
    model_version, and ``at`` (epoch seconds)."""
    import sqlalchemy as sa

    from pipelines.serving.tables import events

    query = sa.select(events.c.event_time, events.c.event_type, events.c.user_id, events.c.item_id,
                      events.c.model_version).where(events.c.event_time >= start, events.c.event_time < end)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["event_time", "event_type", USER, ITEM, "model_version"])
    frame["at"] = _epoch_seconds(frame.pop("event_time")) if len(frame) else np.zeros(0, dtype=np.int64)
    return frame


def event_measures(events: pd.DataFrame, fresh: pd.DataFrame, version: str | None = None) -> dict[str, float | None]:
    """``impressions``, ``clicks``, ``ctr`` and ``impression_conversion`` (see the module docstring).

    ``events``: as :func:`read_events` returns; ``fresh``: the new interactions (user_id, item_id,
    timestamp in epoch seconds); ``version``: keep only events of this model version (or of none).
    """
    if version is not None and len(events):
        events = events.loc[events["model_version"].isna() | (events["model_version"].astype(str) == str(version))]
    impressions = events.loc[events["event_type"] == "impression"]
    n_impressions, n_clicks = int(len(impressions)), int((events["event_type"] == "click").sum())
    out: dict[str, float | None] = {"impressions": float(n_impressions), "clicks": float(n_clicks),
                                    "ctr": n_clicks / n_impressions if n_impressions else None,
                                    "impression_conversion": None}
    if not n_impressions:
        return out
    first = (impressions.assign(**{USER: impressions[USER].astype(str), ITEM: impressions[ITEM].astype(str)})
             .groupby([USER, ITEM], as_index=False, sort=False)["at"].min())
    later = fresh[[USER, ITEM, TIMESTAMP]].astype({USER: str, ITEM: str})
    joined = first.merge(later, on=[USER, ITEM], how="inner")
    converted = joined.loc[joined[TIMESTAMP].to_numpy(np.int64) >= joined["at"].to_numpy(np.int64), [USER, ITEM]]
    out["impression_conversion"] = len(converted.drop_duplicates()) / len(first)
    return out
