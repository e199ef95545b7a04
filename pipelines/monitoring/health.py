"""Service health from ``recsys_request_log``: traffic, latency, errors and fallbacks in a window.

The API writes one row per recommendation answer (one per user of a batch request) and one per
error answer (4xx/5xx, ``status`` column). Latency percentiles and the fallback share are over the
successful answers (an instant 422 would flatter the latency); the error rate is over all rows.
A fallback is an answer not from the model: ``popularity`` (unknown user) or ``seed_items``
(a new user folded in from the items they gave).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

FALLBACK_SOURCES = ("popularity", "seed_items")


def read_request_log(engine: Any, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows with ``start <= at < end``: endpoint, source, status, latency_ms, model_version."""
    import sqlalchemy as sa

    from pipelines.serving.tables import request_log

    log = request_log.c
    query = sa.select(log.endpoint, log.source, log.status, log.latency_ms, log.model_version).where(
        log.at >= start, log.at < end)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=["endpoint", "source", "status", "latency_ms", "model_version"])


def health_measures(log: pd.DataFrame) -> dict[str, float | None]:
    """``requests``, ``errors``, ``error_rate``, ``latency_p50_ms``/``p95``/``p99``, ``fallback_share``,
    ``popularity_share`` and ``seed_items_share`` (None where there is nothing to measure)."""
    status = log["status"].fillna(200).to_numpy(np.int64) if len(log) else np.zeros(0, dtype=np.int64)
    ok = status < 400
    answered = log.loc[ok]
    latency = answered["latency_ms"].to_numpy(np.float64)
    out: dict[str, float | None] = {
        "requests": float(len(log)),
        "errors": float((~ok).sum()),
        "error_rate": float((~ok).mean()) if len(log) else None,
    }
    for q in (50, 95, 99):
        out[f"latency_p{q}_ms"] = float(np.percentile(latency, q)) if len(latency) else None
    sources = answered["source"].astype(str)
    for name, share in (("fallback_share", sources.isin(FALLBACK_SOURCES)), ("popularity_share", sources == "popularity"),
                        ("seed_items_share", sources == "seed_items")):
        out[name] = float(share.mean()) if len(answered) else None
    return out


def latencies(log: pd.DataFrame) -> np.ndarray:
    """Latency (ms) of the successful answers, for the report's histogram."""
    if not len(log):
        return np.zeros(0)
    ok = log["status"].fillna(200).to_numpy(np.int64) < 400
    return log.loc[ok, "latency_ms"].to_numpy(np.float64)
