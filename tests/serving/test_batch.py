"""Batch scoring into SQL: real registered models, the local PostgreSQL (a throwaway database).

Shows: every user's top-K lands with scores and explanations that agree with the bundle; a
rerun changes nothing; a run that dies halfway leaves readers on the previous version, and
its retry completes without duplicates; switching back to a version already scored (a
rollback) is immediate; the DAG runs by hand with its Params on the SQLite default.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from pipelines.constants import CHAMPION_ASSET_URI
from pipelines.errors import ServingError
from pipelines.serving.batch import BatchScoringConfig, current_version, run_batch_scoring
from pipelines.serving.tables import CURRENT_VIEW, batch_runs, recommendations
from tests.serving.test_api_support import N_USERS, Registry, shared_registry

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
K = 5


@pytest.fixture(scope="module")
def registry(tmp_path_factory, _mlflow_template_db) -> Registry:
    return shared_registry(tmp_path_factory, _mlflow_template_db)


@pytest.fixture
def pg_url():
    """A fresh database on the local PostgreSQL, dropped afterwards; skips when unreachable."""
    admin = sa.create_engine(f"{POSTGRES}/test", isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"recsys_batch_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES}: {exc.orig}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _config(registry: Registry, url: str, **overrides) -> BatchScoringConfig:
    return BatchScoringConfig(**{"registered_model": registry.name, "alias": "batch", "k": K, "chunk_users": 64,
                                 "database_url": url, "tracking_uri": registry.uri, **overrides})


def _visible(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {CURRENT_VIEW}")).mappings()]


def _stored(engine, version: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(recommendations)
                            .where(recommendations.c.model_version == version)).scalar()


def test_every_user_gets_top_k_with_explanations(registry, pg_url):
    registry.set_alias("batch", registry.v1)
    result = run_batch_scoring(_config(registry, pg_url))
    assert result["status"] == "scored" and result["version"] == registry.v1
    assert (result["users"], result["rows"]) == (N_USERS, N_USERS * K)

    engine = sa.create_engine(pg_url)
    rows = _visible(engine)
    assert len(rows) == N_USERS * K and {r["model_version"] for r in rows} == {registry.v1}
    bundle = registry.bundles["als"]
    expected = bundle.recommend(["u11"], k=K)
    mine = sorted((r for r in rows if r["user_id"] == "u11"), key=lambda r: r["rank"])
    assert [r["item_id"] for r in mine] == expected["item_id"].tolist()
    assert [r["score"] for r in mine] == pytest.approx(expected["score"].tolist(), rel=1e-5)
    history = set(bundle.item_ids[bundle.seen[11].indices])
    assert all(r["because_item_id"] in history and r["explanation"] == f"because you watched {r['because_item_id']}"
               for r in mine)
    engine.dispose()


def test_reruns_crashes_and_rollbacks_never_show_a_partial_version(registry, pg_url):
    engine = sa.create_engine(pg_url)
    registry.set_alias("batch", registry.v1)
    run_batch_scoring(_config(registry, pg_url))
    again = run_batch_scoring(_config(registry, pg_url))
    assert again["status"] == "already_complete" and _stored(engine, registry.v1) == N_USERS * K

    # v2 takes the alias; its first run dies after one chunk. Readers still see v1, whole.
    registry.set_alias("batch", registry.v2)
    seen_mid_run = []

    def crash_after_first_chunk(done: int, total: int) -> None:
        seen_mid_run.append(_visible(engine))
        raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError, match="worker lost"):
        run_batch_scoring(_config(registry, pg_url), progress=crash_after_first_chunk)
    assert _stored(engine, registry.v2) == 64 * K  # the committed chunk
    assert {r["model_version"] for r in seen_mid_run[0]} == {registry.v1} and len(seen_mid_run[0]) == N_USERS * K
    assert current_version(engine, registry.name) == registry.v1
    with engine.connect() as conn:
        status = conn.execute(sa.select(batch_runs.c.status).where(batch_runs.c.model_version == registry.v2)).scalar()
    assert status == "running"

    # The retry rewrites the chunks (no duplicates) and switches readers to v2 at the end.
    retried = run_batch_scoring(_config(registry, pg_url))
    assert retried["status"] == "scored" and _stored(engine, registry.v2) == N_USERS * K
    rows = _visible(engine)
    assert {r["model_version"] for r in rows} == {registry.v2} and len(rows) == N_USERS * K

    # Rollback: v1 is still complete in the table, so switching back scores nothing.
    registry.set_alias("batch", registry.v1)
    back = run_batch_scoring(_config(registry, pg_url))
    assert back["status"] == "already_complete"
    assert {r["model_version"] for r in _visible(engine)} == {registry.v1}
    engine.dispose()


def test_old_versions_are_pruned_but_the_current_one_never(registry, pg_url):
    engine = sa.create_engine(pg_url)
    run_batch_scoring(_config(registry, pg_url, version=registry.v1, keep_versions=1))
    run_batch_scoring(_config(registry, pg_url, version=registry.v2, keep_versions=1))
    assert _stored(engine, registry.v1) == 0 and _stored(engine, registry.v2) == N_USERS * K
    assert current_version(engine, registry.name) == registry.v2
    engine.dispose()


def test_an_alias_pointing_nowhere_is_a_clear_error(registry, tmp_path):
    with pytest.raises(ServingError, match="no @nobody version"):
        run_batch_scoring(_config(registry, f"sqlite:///{tmp_path / 'serving.db'}", alias="nobody"))


@pytest.mark.slow
def test_dag_runs_by_hand_with_params_into_the_sqlite_default(registry, airflow_db, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tests.test_dag_integrity import ROOT

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    registry.set_alias("batch", registry.v1)
    dag = DagBag(dag_folder=str(ROOT / "dags" / "recsys_batch_scoring.py")).get_dag("recsys_batch_scoring")
    assert [asset.uri for asset in dag.timetable.asset_condition.objects] == [CHAMPION_ASSET_URI]
    run = dag.test(run_conf={"registered_model": registry.name, "alias": "batch", "k": 3,
                             "tracking_uri": registry.uri})
    assert run.state == "success"
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'serving.db'}")
    rows = _visible(engine)
    assert len(rows) == N_USERS * 3 and {r["model_version"] for r in rows} == {registry.v1}
    engine.dispose()
