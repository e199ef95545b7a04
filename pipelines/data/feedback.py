"""Move the API's feedback events into the lake: clicks become interactions, exactly once.

``recsys serve`` appends impressions and clicks to ``recsys_events`` in the serving database
(:mod:`pipelines.serving.tables`). :func:`ingest_feedback_events` lands the clicks past a
high-water mark as one batch of the landing folder (:mod:`pipelines.data.landing`), a click
being an interaction with rating ``click_rating`` at its event time. Impressions stay in the
serving database (monitoring reads them for click-through).

Exactly once: the batch is named by the id range it covers (``events-<first>-<last>.parquet``,
a rerun rewrites the same file) and the high-water mark is the larger of the last id in those
names and ``_events_high_water.json`` (which also advances over ranges without a click), so a
crash between the two writes neither loses nor repeats a row. One writer at a time (a lock file).
Ids are read in order and only up to the first event received less than ``settle_seconds``
ago: with several API processes a transaction can commit a lower id after a higher one.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipelines.constants import ITEM, RATING, TIMESTAMP, USER

log = logging.getLogger(__name__)

HIGH_WATER_FILE = "_events_high_water.json"
_EVENTS_BATCH = re.compile(r"^events-(\d+)-(\d+)\.parquet$")


class FeedbackIngestConfig(BaseModel):
    """How feedback events become landed interactions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    click_rating: float = Field(1.0, description="the rating a click is landed with (an implicit positive)")
    settle_seconds: float = Field(5.0, ge=0, le=3600, description="only events received at least this long ago are "
                                  "taken (a later run takes the rest)")
    max_events: int = Field(1_000_000, ge=1, description="events read per run at most (a later run takes the rest)")


def events_batch_name(first_id: int, last_id: int) -> str:
    return f"events-{first_id:012d}-{last_id:012d}.parquet"


def high_water_mark(folder: str | Path) -> int:
    """The last event id already landed from ``folder``'s batches and state file (0: none)."""
    folder = Path(folder)
    marks = [0]
    for path in folder.glob("events-*.parquet"):
        if match := _EVENTS_BATCH.match(path.name):
            marks.append(int(match.group(2)))
    state = folder / HIGH_WATER_FILE
    if state.is_file():
        marks.append(int(json.loads(state.read_text())["last_event_id"]))
    return max(marks)


def _save_high_water_mark(folder: Path, last_id: int) -> None:
    from pipelines.storage import write_file

    with write_file(folder / HIGH_WATER_FILE) as tmp:
        tmp.write_text(json.dumps({"last_event_id": last_id, "at": datetime.now(timezone.utc).isoformat()}) + "\n")


def ingest_feedback_events(
    config: FeedbackIngestConfig | dict[str, Any] | None = None,
    lake_root: str | Path | None = None,
    database_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Land the clicks of ``recsys_events`` past the high-water mark as one batch.

    Args:
        config: a :class:`FeedbackIngestConfig` or its fields.
        lake_root: the lake (default: the platform's).
        database_url: the serving database (default ``$RECSYS_SERVING_DB`` or SQLite in the home).
        now: the reference time for ``settle_seconds`` (tests).

    Returns:
        ``{"source": "parquet", "path": <landing folder>, "file": <batch or None>, "rows": clicks landed,
        "events_read", "first_event_id", "last_event_id", "origin": "events"}``; ``rows`` is 0 and
        ``file`` None when no click arrived.
    """
    import pandas as pd
    import sqlalchemy as sa

    from pipelines.data.landing import land_frame, landing_folder
    from pipelines.serving.tables import events, make_engine
    from pipelines.data.config import validate_config
    from pipelines.storage import partition_lock

    cfg = validate_config(FeedbackIngestConfig, config, "feedback ingest")
    folder = landing_folder(lake_root)
    folder.mkdir(parents=True, exist_ok=True)
    settled_before = (now or datetime.now(timezone.utc)) - timedelta(seconds=cfg.settle_seconds)
    engine = make_engine(database_url)
    try:
        with partition_lock(folder / "_events"):
            after = high_water_mark(folder)
            query = (sa.select(events.c.id, events.c.received_at, events.c.event_time, events.c.event_type,
                               events.c.user_id, events.c.item_id)
                     .where(events.c.id > after).order_by(events.c.id).limit(cfg.max_events))
            with engine.connect() as conn:
                rows = pd.DataFrame(conn.execute(query).mappings().all(),
                                    columns=["id", "received_at", "event_time", "event_type", "user_id", "item_id"])
            if len(rows):
                received = pd.to_datetime(rows["received_at"], utc=True)
                unsettled = (received > pd.Timestamp(settled_before)).to_numpy()
                if unsettled.any():  # keep the settled prefix only: a lower id may still commit
                    rows = rows.iloc[: int(unsettled.argmax())]
            result: dict[str, Any] = {"source": "parquet", "path": str(folder), "file": None, "rows": 0,
                                      "events_read": len(rows), "first_event_id": None, "last_event_id": after,
                                      "origin": "events"}
            if not len(rows):
                return result
            first, last = int(rows["id"].iloc[0]), int(rows["id"].iloc[-1])
            clicks = rows[rows["event_type"] == "click"]
            result.update(first_event_id=first, last_event_id=last)
            if len(clicks):
                stamps = pd.to_datetime(clicks["event_time"], utc=True)
                frame = pd.DataFrame({
                    USER: clicks["user_id"].to_numpy(), ITEM: clicks["item_id"].to_numpy(),
                    RATING: cfg.click_rating,
                    TIMESTAMP: ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(),
                })
                # No landing flag: the DAG task emits the Asset event itself, with these rows in its extra.
                landed = land_frame(frame, lake_root, origin="events", name=events_batch_name(first, last),
                                    signal=False)
                result.update(file=landed["file"], rows=landed["rows"])
            _save_high_water_mark(folder, last)
    finally:
        engine.dispose()
    log.info("feedback events %s..%s: %d read, %d clicks landed", result["first_event_id"], result["last_event_id"],
             result["events_read"], result["rows"])
    return result
