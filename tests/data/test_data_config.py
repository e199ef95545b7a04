"""IngestConfig: defaults per source and messages that name the field and its range."""

from __future__ import annotations

import pytest

from pipelines.data.config import IngestConfig, load_ingest_config
from pipelines.errors import ConfigError


def test_defaults_are_a_valid_synthetic_source():
    cfg = load_ingest_config(None)
    assert cfg.source == "synthetic"
    assert (cfg.n_users, cfg.n_items, cfg.interactions_per_user, cfg.n_factors, cfg.seed) == (1000, 500, 40, 8, 42)
    assert cfg.n_partitions is None
    assert load_ingest_config(cfg) is cfg


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("n_users", 0, "n_users must be in [1, 1000000000], got 0"),
        ("n_items", -5, "n_items must be in [1, 10000000], got -5"),
        ("n_factors", 1000, "n_factors must be in [1, 256], got 1000"),
        ("n_partitions", 0, "n_partitions must be in [1, 100000], got 0"),
        ("chunksize", 0, "chunksize must be in [1, 10000000], got 0"),
        ("seed", -1, "seed must be in [0, "),
        ("delimiter", ";;", "delimiter must be exactly one character"),
    ],
)
def test_out_of_range_fields_are_named_with_their_range(field, value, expected):
    with pytest.raises(ConfigError) as info:
        load_ingest_config({field: value})
    assert expected in str(info.value)
    assert "invalid ingest config" in str(info.value)


def test_interactions_per_user_cannot_exceed_items():
    with pytest.raises(ConfigError, match=r"interactions_per_user must be in \[1, n_items=50\], got 60"):
        load_ingest_config({"n_items": 50, "interactions_per_user": 60})


@pytest.mark.parametrize("source", ["csv", "parquet", "movielens", "movielens100k"])
def test_file_sources_need_a_path(source):
    with pytest.raises(ConfigError, match=f"path is required for source='{source}'"):
        load_ingest_config({"source": source})


def test_sql_needs_url_and_exactly_one_of_table_or_query():
    with pytest.raises(ConfigError, match="exactly one of conn_id"):
        load_ingest_config({"source": "sql", "table": "t"})
    with pytest.raises(ConfigError, match="exactly one of conn_id"):
        load_ingest_config({"source": "sql", "table": "t", "conn_id": "warehouse", "url": "sqlite://"})
    with pytest.raises(ConfigError, match="exactly one of table or query"):
        load_ingest_config({"source": "sql", "url": "sqlite://", "table": "t", "query": "select 1"})
    with pytest.raises(ConfigError, match="exactly one of table or query"):
        load_ingest_config({"source": "sql", "url": "sqlite://"})
    assert load_ingest_config({"source": "sql", "url": "sqlite://", "query": "select 1"}).query == "select 1"


def test_unknown_fields_and_sources_are_rejected():
    with pytest.raises(ConfigError, match="n_user"):
        load_ingest_config({"n_user": 10})
    with pytest.raises(ConfigError, match="source"):
        load_ingest_config({"source": "excel", "path": "x"})


def test_column_map_defaults_per_source():
    assert IngestConfig(source="csv", path="x").effective_column_map() is None  # detect by aliases
    assert IngestConfig(source="movielens", path="x").effective_column_map()["movieId"] == "item_id"
    assert IngestConfig(source="csv", path="x", column_map={"u": "user_id"}).effective_column_map() == {"u": "user_id"}


def test_describe_hides_sql_passwords():
    cfg = IngestConfig(source="sql", url="postgresql+psycopg2://bob:s3cret@db:5432/x", table="events")
    assert "s3cret" not in cfg.describe()
    assert "events" in cfg.describe()
