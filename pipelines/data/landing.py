"""The landing folder: where new interactions arrive in the lake, one immutable file per batch.

``<lake>/interactions/`` holds Parquet files with the canonical columns
(``user_id, item_id, rating, timestamp``), all stored as text so every batch has one schema
and a bad value reaches the cleaning step's quarantine intact, as with any other source. A
training run reads the whole folder (``source="parquet"``, ``path=<the folder>``) and freezes
it into its own snapshot; monitoring reads it to compare new interactions with a champion's
snapshot. Batches come from ``recsys land FILE`` (:func:`land_file`) and from the API's
feedback events (:mod:`pipelines.data.feedback`).

Each batch is written beside its place and renamed into it (:func:`pipelines.storage.write_file`):
readers see a whole batch or none. After a landing the flag file ``_landed`` is touched; the
training DAG's Asset watcher (Airflow's ``FileDeleteTrigger``) deletes it and records an
Asset event, so a landing by any process that can write the lake schedules training, with no
credentials for Airflow. Names starting with ``.`` or ``_`` are not data (readers skip them).
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.constants import INTERACTION_COLUMNS, ITEM, RATING, TIMESTAMP, USER
from pipelines.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LANDING_STAGE = "interactions"  # <lake>/interactions
LANDED_FLAG = "_landed"  # touched after a landing; the training DAG's Asset watcher consumes it
_ORIGIN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def landing_folder(lake_root: str | Path | None = None) -> Path:
    """``<lake>/interactions`` (the platform's lake when ``lake_root`` is None); not created here."""
    from pipelines.paths import lake

    return Path(lake_root) / LANDING_STAGE if lake_root is not None else lake() / LANDING_STAGE


def landed_flag(lake_root: str | Path | None = None) -> Path:
    """The flag file a landing touches (the training DAG's Asset watcher deletes it)."""
    return landing_folder(lake_root) / LANDED_FLAG


def landed_files(folder: str | Path) -> list[Path]:
    """The batches in the landing ``folder``, sorted by name (oldest landing first)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*.parquet") if not p.name.startswith((".", "_")))


def batch_name(origin: str, when: datetime | None = None) -> str:
    """``<UTC time to the microsecond>-<origin>-<random>.parquet``: unique, sorting by landing time."""
    if not _ORIGIN.match(origin):
        raise ValueError(f"origin must be lowercase letters, digits or '_' (at most 32), got {origin!r}")
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{when:%Y%m%dT%H%M%S%fZ}-{origin}-{uuid.uuid4().hex[:8]}.parquet"


def as_landed_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The canonical columns as nullable text, in order (the one schema of every landed batch)."""
    missing = [col for col in INTERACTION_COLUMNS if col not in frame.columns]
    if missing:
        raise DataError(f"cannot land interactions without {missing}; columns given: {list(frame.columns)}")
    out = frame[list(INTERACTION_COLUMNS)].copy()
    for col in INTERACTION_COLUMNS:
        values = out[col]
        out[col] = values.astype("string").where(values.notna())
    return out.astype("string").reset_index(drop=True)


def land_frame(
    frame: pd.DataFrame, lake_root: str | Path | None = None, origin: str = "file", name: str | None = None,
    signal: bool = True,
) -> dict[str, Any]:
    """Write ``frame`` (canonical columns) as one new batch of the landing folder.

    ``name`` fixes the file name (a rerun then replaces its own batch instead of adding one);
    default :func:`batch_name`. With ``signal`` the flag file is touched for the Asset watcher.

    Returns ``{"source": "parquet", "path": <landing folder>, "file", "rows", "origin"}``: what a
    training run needs to read the landed data (the folder) and what this landing added.

    Raises:
        DataError: a canonical column is missing, or ``frame`` has no row.
    """
    from pipelines.storage import sweep_dead_temporaries, write_file

    if len(frame) == 0:
        raise DataError("nothing to land: the batch has no row")
    folder = landing_folder(lake_root)
    target = folder / (name or batch_name(origin))
    landed = as_landed_text(frame)
    folder.mkdir(parents=True, exist_ok=True)
    sweep_dead_temporaries(folder)
    with write_file(target) as tmp:
        landed.to_parquet(tmp, index=False)
    if signal:
        landed_flag(lake_root).touch()
    log.info("landed %d interactions in %s", len(landed), target)
    return {"source": "parquet", "path": str(folder), "file": str(target), "rows": len(landed), "origin": origin}


def read_interactions_file(
    path: str | Path, column_map: dict[str, str] | None = None, delimiter: str = ","
) -> pd.DataFrame:
    """A CSV or Parquet file of interactions as the canonical columns (text for CSV, as given for Parquet).

    The same readers as the ingest step, so the same column aliases (``userId``, ``movieId``...)
    and maps apply.

    Raises:
        DataError: the file is missing, lacks a column, or has lines that cannot be read (their
            count and the first line's position are named: fix the file, it is not landed in part).
    """
    from pipelines.data.files import CSV_SUFFIXES, PARQUET_SUFFIXES, PARSE_ERROR
    from pipelines.data.files import read_csv_interactions, read_parquet_interactions

    source = Path(path)
    if not source.is_file():
        raise DataError(f"interactions file {str(source)!r} does not exist (give one CSV or Parquet file)")
    lowered = source.name.lower()
    if lowered.endswith(PARQUET_SUFFIXES):
        ddf = read_parquet_interactions(source, column_map)
    elif lowered.endswith(CSV_SUFFIXES):
        ddf = read_csv_interactions(source, column_map, delimiter)
    else:
        raise DataError(f"{str(source)!r}: land a CSV ({', '.join(CSV_SUFFIXES)}) or Parquet "
                        f"({', '.join(PARQUET_SUFFIXES)}) file")
    frame = ddf.compute(scheduler="threads")
    if PARSE_ERROR in frame.columns:
        bad = frame[frame[PARSE_ERROR].notna()]
        if len(bad):
            first = bad.iloc[0]
            raise DataError(
                f"{str(source)!r}: {len(bad)} line(s) cannot be read (first: data row {int(first['source_row'])}, "
                f"{first[PARSE_ERROR]}); fix the file and land it again"
            )
    return frame[list(INTERACTION_COLUMNS)]


def land_file(
    path: str | Path, lake_root: str | Path | None = None, column_map: dict[str, str] | None = None,
    delimiter: str = ",", signal: bool = True,
) -> dict[str, Any]:
    """Land one CSV or Parquet file of interactions (``recsys land``); see :func:`land_frame`.

    Raises:
        DataError: see :func:`read_interactions_file`; an empty file.
    """
    frame = read_interactions_file(path, column_map, delimiter)
    if len(frame) == 0:
        raise DataError(f"{str(path)!r} has no interaction rows: nothing landed")
    return {**land_frame(frame, lake_root, origin="file", signal=signal), "from": str(Path(path).resolve())}


def read_landed(folder: str | Path, files: list[Path] | None = None) -> pd.DataFrame:
    """The landed interactions of ``folder`` (or only ``files``) typed as cleaning types them.

    ``user_id``/``item_id`` text, ``rating`` float64, ``timestamp`` int64 epoch seconds; rows the
    cleaning step would reject for a missing id or an unreadable rating or timestamp are left out
    (monitoring and cut-offs look at usable rows only).
    """
    import pandas as pd

    from pipelines.cleaning.rules import normalize_ids, parse_ratings, parse_timestamps

    files = landed_files(folder) if files is None else files
    if not files:
        return pd.DataFrame({USER: pd.Series([], dtype="str"), ITEM: pd.Series([], dtype="str"),
                             RATING: pd.Series([], dtype="float64"), TIMESTAMP: pd.Series([], dtype="int64")})
    raw = pd.concat([pd.read_parquet(f, columns=list(INTERACTION_COLUMNS)) for f in files], ignore_index=True)
    typed = pd.DataFrame({USER: normalize_ids(raw[USER]), ITEM: normalize_ids(raw[ITEM]),
                          RATING: parse_ratings(raw[RATING]), TIMESTAMP: parse_timestamps(raw[TIMESTAMP])})
    typed = typed.dropna()
    return typed.astype({TIMESTAMP: "int64"}).reset_index(drop=True)
