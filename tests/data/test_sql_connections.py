"""The SQL source's credentials: resolved from an Airflow connection where the read happens, never written out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.data.config import load_ingest_config
from pipelines.data.ingest import run_ingest
from pipelines.errors import ConfigError

PASSWORD = "pw-that-must-not-leak-7f3a"
EVENTS = pd.DataFrame({"user_id": ["1", "1", "2"], "item_id": ["10", "11", "10"], "rating": [4.0, 3.0, 5.0],
                       "timestamp": [1, 2, 3]})


@pytest.fixture
def events_db(tmp_path: Path) -> Path:
    import sqlalchemy as sa

    path = tmp_path / "events.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    EVENTS.to_sql("events", engine, index=False)
    engine.dispose()
    return path


@pytest.mark.parametrize("form", ["uri", "json"])
def test_conn_id_reads_the_connection_from_the_environment(events_db, tmp_path, monkeypatch, form):
    value = f"sqlite:///{events_db}" if form == "uri" else json.dumps({"conn_type": "sqlite", "host": str(events_db)})
    monkeypatch.setenv("AIRFLOW_CONN_EVENTS_DB", value)
    result = run_ingest({"source": "sql", "conn_id": "events_db", "table": "events"}, tmp_path / "lake", "c")
    assert result["rows"] == 3
    manifest = json.loads(Path(result["manifest_uri"]).read_text())
    assert manifest["source"] == "sql(conn_id=events_db, table=events)"


def test_an_undefined_connection_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    with pytest.raises(ConfigError, match="'nowhere'"):
        run_ingest({"source": "sql", "conn_id": "nowhere", "table": "events"}, tmp_path / "lake", "c")


def test_a_url_password_is_masked_in_dumps_descriptions_and_the_plan():
    from pipelines.steps import plan

    url = f"postgresql+psycopg2://reader:{PASSWORD}@127.0.0.1:5432/events"
    cfg = load_ingest_config({"source": "sql", "url": url, "table": "events"})
    assert cfg.url.get_secret_value() == url  # usable where the read happens
    for text in (json.dumps(cfg.model_dump(mode="json")), cfg.describe(), repr(cfg), str(cfg)):
        assert PASSWORD not in text
    assert "reader:***@127.0.0.1:5432/events" in cfg.describe()
    # The DAG form has no URL field at all: a run names the connection, and the plan carries only its id.
    the_plan = plan({"source": "sql", "sql_conn_id": "warehouse", "sql_table": "events"}, "manual__1")
    assert the_plan["config"]["ingest"]["conn_id"] == "warehouse"
    assert the_plan["config"]["ingest"]["url"] is None
