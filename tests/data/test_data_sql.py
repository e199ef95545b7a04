"""The SQL source: chunked reads written chunk by chunk, on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cleaning.run import run_cleaning
from pipelines.data.ingest import run_ingest
from pipelines.errors import DataError

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"

EVENTS = pd.DataFrame(
    {
        "uid": [1, 1, 2, 3, 3, None, 4],
        "movie": [10, 11, 10, 12, 13, 14, 15],
        "stars": [4.0, 3.5, None, 5.0, 2.0, 1.0, 4.5],
        "ts": [964982703, 964982704, 964982705, 964982706, 964982707, 964982708, 964982709],
    }
)
MAP = {"uid": "user_id", "movie": "item_id", "stars": "rating", "ts": "timestamp"}


def _check_snapshot(result: dict) -> pd.DataFrame:
    files = sorted(Path(result["snapshot_uri"]).glob("*.parquet"))
    assert [f.name for f in files] == ["part.00000.parquet", "part.00001.parquet", "part.00002.parquet"]  # 3+3+1 rows
    frame = pd.read_parquet(result["snapshot_uri"])
    assert result["rows"] == len(frame) == len(EVENTS)
    assert frame["source_row"].tolist() == list(range(len(EVENTS)))
    return frame


def test_sqlite_table_in_chunks(tmp_path: Path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'events.db'}"
    EVENTS.to_sql("events", sa.create_engine(url), index=False)
    config = {"source": "sql", "url": url, "table": "events", "column_map": MAP, "chunksize": 3}
    result = run_ingest(config, tmp_path / "lake", "sqlite")
    frame = _check_snapshot(result)
    assert frame["user_id"].iloc[0] == "1.0"  # an integer column with NULLs comes back as float
    assert frame["user_id"].isna().sum() == 1 and frame["rating"].isna().sum() == 1

    cleaned = run_cleaning({"max_rejected_fraction": 0.5}, result["snapshot_uri"], tmp_path / "lake", "sqlite")
    assert cleaned["reasons"] == {"missing_rating": 1, "missing_user_id": 1}
    clean = pd.read_parquet(cleaned["clean_uri"])
    assert sorted(clean["user_id"].unique()) == ["1", "3", "4"]  # "1.0" -> "1"


def test_sqlite_query_and_missing_table(tmp_path: Path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'events.db'}"
    EVENTS.to_sql("events", sa.create_engine(url), index=False)
    query = "SELECT uid AS user_id, movie AS item_id, stars AS rating, ts AS timestamp FROM events WHERE uid = 3"
    result = run_ingest({"source": "sql", "url": url, "query": query}, tmp_path / "lake", "q")
    assert result["rows"] == 2
    with pytest.raises(DataError, match="SQL table 'nope' not found"):
        run_ingest({"source": "sql", "url": url, "table": "nope"}, tmp_path / "lake", "q")
    with pytest.raises(DataError, match=r"no column for \['user_id', 'item_id', 'rating', 'timestamp'\]"):
        run_ingest({"source": "sql", "url": url, "query": "SELECT 1 AS one"}, tmp_path / "lake", "q")


def test_empty_result_still_writes_the_schema(tmp_path: Path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'events.db'}"
    EVENTS.to_sql("events", sa.create_engine(url), index=False)
    query = "SELECT uid, movie, stars, ts FROM events WHERE uid > 100"
    result = run_ingest({"source": "sql", "url": url, "query": query, "column_map": MAP}, tmp_path / "lake", "e")
    assert result["rows"] == 0
    assert list(pd.read_parquet(result["snapshot_uri"]).columns) == [*MAP.values(), "source_row"]


@pytest.fixture
def postgres_table():
    """A uniquely named table in the local PostgreSQL, dropped afterwards; skips when unreachable."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.orig}")
    name = f"recsys_events_{uuid.uuid4().hex[:10]}"
    frame = EVENTS.assign(ts=pd.to_datetime(EVENTS["ts"], unit="s", utc=True))  # a real timestamptz column
    frame.to_sql(name, engine, index=False)
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
        engine.dispose()


def test_postgres_table_round_trip(postgres_table: str, tmp_path: Path):
    config = {"source": "sql", "url": POSTGRES_URL, "table": postgres_table, "column_map": MAP, "chunksize": 3}
    result = run_ingest(config, tmp_path / "lake", "pg")
    frame = _check_snapshot(result)
    assert frame["timestamp"].iloc[0].startswith("2000-07-30T")  # timestamptz written as ISO-8601 text
    cleaned = run_cleaning({"max_rejected_fraction": 0.5}, result["snapshot_uri"], tmp_path / "lake", "pg")
    clean = pd.read_parquet(cleaned["clean_uri"]).sort_values("timestamp")
    assert clean["timestamp"].iloc[0] == 964982703  # parsed back to epoch seconds
    assert cleaned["rows_clean"] == 5
