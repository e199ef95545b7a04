"""A SQL source (any SQLAlchemy URL): read in chunks and written out chunk by chunk.

The whole result is never held in memory: each chunk of ``chunksize`` rows is mapped onto the
canonical columns and written as its own Parquet file. Values are written as text (NULL stays
missing) so every chunk has the same schema, whatever types a chunk happens to infer, and so
bad values reach the cleaning step like they do from CSV.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from pipelines.constants import INTERACTION_COLUMNS, SOURCE_ROW
from pipelines.data.columns import resolve_column_map
from pipelines.data.config import IngestConfig
from pipelines.data.scheduling import ROW_GROUP_ROWS
from pipelines.errors import ConfigError, DataError

# Airflow connection types whose name is not a SQLAlchemy dialect.
_DIALECTS = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql"}


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _where(cfg: IngestConfig) -> str:
    """The source as messages name it: the connection id or the URL without its password."""
    return f"connection {cfg.conn_id!r}" if cfg.conn_id else _safe_url(cfg.url.get_secret_value())


def _url_from_parts(conn_type: str, login: Any, password: Any, host: Any, port: Any, schema: Any, extra: Any) -> Any:
    from sqlalchemy.engine import URL

    if conn_type == "sqlite":  # Airflow keeps the database file in host
        return URL.create("sqlite", database=host or schema)
    query = extra if isinstance(extra, dict) else {}
    return URL.create(
        _DIALECTS.get(conn_type, conn_type), username=login or None, password=password or None, host=host or None,
        port=int(port) if port else None, database=schema or None,
        query={k: str(v) for k, v in query.items() if isinstance(v, (str, int, float))},
    )


def _url_from_env(conn_id: str, value: str) -> Any:
    """An ``AIRFLOW_CONN_<ID>`` value (URI or JSON, as Airflow accepts them) as a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    if value.lstrip().startswith("{"):
        try:
            conn = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"AIRFLOW_CONN_{conn_id.upper()} is neither a URI nor valid JSON: {exc.msg}") from None
        return _url_from_parts(conn.get("conn_type", ""), conn.get("login"), conn.get("password"), conn.get("host"),
                               conn.get("port"), conn.get("schema"), conn.get("extra"))
    url = make_url(value)
    dialect = url.drivername.replace("-", "_")
    return url.set(drivername=_DIALECTS.get(dialect, dialect))


def resolve_sql_url(cfg: IngestConfig) -> Any:
    """The SQLAlchemy URL to read, resolved only where the read happens (never stored or returned as text).

    ``cfg.url`` is used as given; ``cfg.conn_id`` is looked up as Airflow does: the
    ``AIRFLOW_CONN_<ID>`` environment variable first, then Airflow's connections (metadata
    database or secrets backend) when the step runs inside an Airflow task.

    Raises:
        ConfigError: the connection is not defined anywhere.
    """
    if cfg.url is not None:
        from sqlalchemy.engine import make_url

        return make_url(cfg.url.get_secret_value())
    env = os.environ.get(f"AIRFLOW_CONN_{cfg.conn_id.upper()}")
    if env:
        return _url_from_env(cfg.conn_id, env)
    try:
        from airflow.sdk import Connection
    except ImportError:
        raise ConfigError(
            f"conn_id {cfg.conn_id!r}: no AIRFLOW_CONN_{cfg.conn_id.upper()} variable and Airflow is not installed"
        ) from None
    try:
        conn = Connection.get(cfg.conn_id)
    except Exception as exc:  # the SDK raises different types inside and outside a task
        raise ConfigError(
            f"conn_id {cfg.conn_id!r}: no such Airflow connection (nor AIRFLOW_CONN_{cfg.conn_id.upper()}): "
            f"{exc.__class__.__name__}"
        ) from None
    return _url_from_parts(conn.conn_type or "", conn.login, conn.password, conn.host, conn.port, conn.schema,
                           conn.extra_dejson)


def _statement(engine: Any, cfg: IngestConfig) -> Any:
    """The SELECT to run: the configured query, or every column of the reflected table."""
    import sqlalchemy as sa

    if cfg.query:
        return sa.text(cfg.query)
    schema, _, name = cfg.table.rpartition(".")
    try:
        table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=engine)
    except sa.exc.NoSuchTableError as exc:
        raise DataError(f"SQL table {cfg.table!r} not found at {_where(cfg)}") from exc
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
    """Canonical interaction chunks (text columns + ``source_row``) from the configured database.

    Raises:
        DataError: the database cannot be reached or queried, the table is missing, or a
            mapped/required column is missing (the message names the table or query).
    """
    import sqlalchemy as sa

    where = f"SQL {'table ' + repr(cfg.table) if cfg.table else 'query ' + repr(cfg.query)} at {_where(cfg)}"
    engine = sa.create_engine(resolve_sql_url(cfg))
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
        chunk.to_parquet(out / f"part.{index:05d}.parquet", index=False, row_group_size=ROW_GROUP_ROWS)
        rows += len(chunk)
    if rows == 0 and not any(out.glob("*.parquet")):
        empty_interactions().to_parquet(out / f"part.{index:05d}.parquet", index=False)
    return rows
