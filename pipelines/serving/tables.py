"""The serving database: batch recommendations, feedback events and the request log.

One SQLAlchemy database (SQLite in the platform home unless ``$RECSYS_SERVING_DB`` or the
step's config names another URL) holds:

- ``recsys_recommendations``: top-K per (model, version, user), written in chunks by batch
  scoring; primary key (model_name, model_version, user_id, rank), so a rerun cannot duplicate;
- ``recsys_batch_runs``: one row per scored version, ``running`` until every chunk is in;
- ``recsys_current_batch``: which complete version readers see, switched in one transaction;
- ``recsys_current_recommendations``: the view readers query (recommendations of the current version);
- ``recsys_events``: impressions and clicks posted to the API (monitoring, next training run);
- ``recsys_request_log``: one row per API answer with its latency, source, model version and HTTP
  status (error answers of the recommendation endpoints are logged too, with source ``none``).
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

ENV_SERVING_DB = "RECSYS_SERVING_DB"
ID = 256  # longest raw id stored

metadata = sa.MetaData()

recommendations = sa.Table(
    "recsys_recommendations", metadata,
    sa.Column("model_name", sa.String(ID), primary_key=True),
    sa.Column("model_version", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(ID), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(ID), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("explanation", sa.String(2 * ID), nullable=False),
    sa.Column("because_item_id", sa.String(ID)),
)

batch_runs = sa.Table(
    "recsys_batch_runs", metadata,
    sa.Column("model_name", sa.String(ID), primary_key=True),
    sa.Column("model_version", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # running | complete
    sa.Column("k", sa.Integer, nullable=False),
    sa.Column("users", sa.Integer, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
)

current_batch = sa.Table(
    "recsys_current_batch", metadata,
    sa.Column("model_name", sa.String(ID), primary_key=True),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("switched_at", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "recsys_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_type", sa.String(16), nullable=False),  # impression | click
    sa.Column("user_id", sa.String(ID), nullable=False),
    sa.Column("item_id", sa.String(ID), nullable=False),
    sa.Column("request_id", sa.String(64)),
    sa.Column("position", sa.Integer),
    sa.Column("model_version", sa.String(32)),
)

request_log = sa.Table(
    "recsys_request_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("endpoint", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(ID), nullable=False),
    sa.Column("k", sa.Integer, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # model | seed_items | popularity
    sa.Column("model_name", sa.String(ID), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("items", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("status", sa.Integer, nullable=False, server_default="200"),  # HTTP status of the answer
)

CURRENT_VIEW = "recsys_current_recommendations"
_VIEW_SELECT = (
    "SELECT r.model_name, r.model_version, r.user_id, r.rank, r.item_id, r.score, r.source, "
    "r.explanation, r.because_item_id FROM recsys_recommendations r "
    "JOIN recsys_current_batch c ON r.model_name = c.model_name AND r.model_version = c.model_version"
)


def default_database_url() -> str:
    """``$RECSYS_SERVING_DB``, else SQLite in the platform home."""
    from pipelines.paths import home

    return os.environ.get(ENV_SERVING_DB) or f"sqlite:///{home() / 'serving.db'}"


def make_engine(url: str | None = None, **kwargs: Any) -> sa.Engine:
    """An engine on ``url`` (default :func:`default_database_url`) with the serving tables created.

    SQLite gets WAL journaling and a busy timeout: the API's writer and a batch run write to
    the same file, and readers must not block on a writer.
    """
    engine = sa.create_engine(url or default_database_url(), **kwargs)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # noqa: ANN001 - SQLAlchemy's hook signature
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
    create_tables(engine)
    return engine


def create_tables(engine: sa.Engine) -> None:
    """Create the tables and the current-recommendations view when missing (idempotent)."""
    metadata.create_all(engine)
    add_missing_columns(engine)
    with engine.begin() as conn:
        if CURRENT_VIEW not in sa.inspect(conn).get_view_names():
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text(f"CREATE OR REPLACE VIEW {CURRENT_VIEW} AS {_VIEW_SELECT}"))
            else:
                conn.execute(sa.text(f"CREATE VIEW IF NOT EXISTS {CURRENT_VIEW} AS {_VIEW_SELECT}"))


def add_missing_columns(engine: sa.Engine) -> None:
    """Add the columns later versions gave an existing table (``create_all`` never alters one).

    Today: ``recsys_request_log.status`` (rows logged before it existed were successful answers).
    """
    with engine.begin() as conn:
        present = {column["name"] for column in sa.inspect(conn).get_columns(request_log.name)}
        if "status" not in present:
            conn.execute(sa.text(f"ALTER TABLE {request_log.name} ADD COLUMN status INTEGER NOT NULL DEFAULT 200"))
