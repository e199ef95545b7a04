"""A SQL source (any SQLAlchemy URL): read in chunks and written out chunk by chunk.

The whole result is never held in memory: each chunk of ``chunksize`` rows is mapped onto the
canonical columns and written as its own Parquet file. Values are written as text (NULL stays
missing) so every chunk has the same schema, whatever types a chunk happens to infer, and so
bad values reach the cleaning step like they do from CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from pipelines.constants import INTERACTION_COLUMNS, SOURCE_ROW
from pipelines.data.columns import resolve_column_map
from pipelines.data.config import IngestConfig
from pipelines.errors import DataError


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _statement(engine: Any, cfg: IngestConfig) -> Any:
    """The SELECT to run: the configured query, or every column of the reflected table."""
    import sqlalchemy as sa

    if cfg.query:
        return sa.text(cfg.query)
    schema, _, name = cfg.table.rpartition(".")
    try:
        table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=engine)
    except sa.exc.NoSuchTableError as exc:
        raise DataError(f"SQL table {cfg.table!r} not found at {_safe_url(cfg.url)}") from exc
    return sa.select(table)


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as text; NULL/NaN stay missing; datetimes in ISO-8601."""
    out = {}
    for col in frame.columns:
        series = frame[col]
        if pd.api.types.is_datetime64_any_dtype(series):
            series = series.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        out[col] = series.astype("str").where(series.notna())
    return pd.DataFrame(out, index=frame.index).astype("str")


def iter_sql_chunks(cfg: IngestConfig) -> Iterator[pd.DataFrame]:
    """Canonical interaction chunks (text columns + ``source_row``) from ``cfg.url``.

    Raises:
        DataError: the database cannot be reached or queried, the table is missing, or a
            mapped/required column is missing (the message names the table or query).
    """
    import sqlalchemy as sa

    where = f"SQL {'table ' + repr(cfg.table) if cfg.table else 'query ' + repr(cfg.query)} at {_safe_url(cfg.url)}"
    engine = sa.create_engine(cfg.url)
    try:
        with engine.connect() as conn:
            chunks = pd.read_sql(_statement(conn, cfg), conn, chunksize=cfg.chunksize, coerce_float=False)
            offset = 0
            mapping: dict[str, str] | None = None
            for chunk in chunks:
                if mapping is None:
                    mapping = resolve_column_map(chunk.columns, cfg.effective_column_map(), where)
                frame = as_text(chunk[list(mapping)].rename(columns=mapping)[list(INTERACTION_COLUMNS)])
                frame[SOURCE_ROW] = pd.RangeIndex(offset, offset + len(frame), dtype="int64")
                offset += len(frame)
                yield frame.reset_index(drop=True)
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(f"cannot read {where}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        engine.dispose()


def empty_interactions() -> pd.DataFrame:
    """A zero-row frame with the schema SQL chunks are written with."""
    frame = pd.DataFrame({col: pd.Series([], dtype="str") for col in INTERACTION_COLUMNS})
    frame[SOURCE_ROW] = pd.Series([], dtype="int64")
    return frame


def write_sql_interactions(cfg: IngestConfig, out_dir: str | Path) -> int:
    """Write every chunk of the SQL source as ``out_dir/part.NNNNN.parquet``; returns the row count.

    A result with no rows still writes one empty file, so readers see the schema.

    Raises:
        DataError: see :func:`iter_sql_chunks`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    index = 0
    for index, chunk in enumerate(iter_sql_chunks(cfg)):
        chunk.to_parquet(out / f"part.{index:05d}.parquet", index=False)
        rows += len(chunk)
    if rows == 0 and not any(out.glob("*.parquet")):
        empty_interactions().to_parquet(out / f"part.{index:05d}.parquet", index=False)
    return rows
