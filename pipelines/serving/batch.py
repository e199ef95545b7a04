"""Batch scoring: the champion's top-K for every known user, written to SQL.

Rows are keyed by (model, version, user, rank) and each chunk of users is deleted and
re-inserted in one transaction, so a retried or repeated run never duplicates a row. A
version is written while ``recsys_batch_runs`` says ``running``; readers query the
``recsys_current_recommendations`` view, which follows ``recsys_current_batch``, and that
pointer moves to the new version in the same transaction that marks it complete: readers
see the old version whole until the new one is whole. A version already complete (say after
a rollback) is only switched to, not scored again. The last ``keep_versions`` complete
versions stay in the table so switching back costs nothing; older ones are deleted.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from pipelines.constants import DEFAULT_REGISTERED_MODEL, SERVING_ALIAS

log = logging.getLogger(__name__)

#: Called after each committed chunk with (users written so far, users in total).
ProgressCallback = Callable[[int, int], None]


class BatchScoringConfig(BaseModel):
    """Which model version to score, how many items per user, and where the rows go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registered_model: str = Field(DEFAULT_REGISTERED_MODEL, min_length=1, description="MLflow registered model name")
    alias: str = Field(SERVING_ALIAS, min_length=1, description="alias whose version is scored")
    version: str | None = Field(None, description="score this version instead of the alias's (e.g. a backfill)")
    k: int = Field(10, ge=1, le=1000, description="items per user")
    chunk_users: int = Field(2048, ge=1, le=1_000_000, description="users scored and committed per transaction")
    keep_versions: int = Field(3, ge=1, le=100, description="complete versions kept in the table, the current one included")
    database_url: str | None = Field(None, description="SQLAlchemy URL; None: $RECSYS_SERVING_DB or SQLite in the platform home")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; None: the platform default")


def param_specs() -> dict[str, dict[str, Any]]:
    """The batch scoring DAG's trigger-form parameters (JSON schema per field, with its default)."""
    fields = BatchScoringConfig.model_fields
    optional = {"type": ["null", "string"], "default": None}
    return {
        "registered_model": {"default": fields["registered_model"].default, "type": "string", "minLength": 1,
                             "title": "Registered model", "description": fields["registered_model"].description},
        "alias": {"default": fields["alias"].default, "type": "string", "minLength": 1, "title": "Alias",
                  "description": fields["alias"].description},
        "k": {"default": fields["k"].default, "type": "integer", "minimum": 1, "maximum": 1000, "title": "Items per user"},
        "version": {**optional, "title": "Version (optional)", "description": fields["version"].description,
                    "section": "Advanced"},
        "chunk_users": {"default": fields["chunk_users"].default, "type": "integer", "minimum": 1, "maximum": 1_000_000,
                        "title": "Users per chunk", "description": fields["chunk_users"].description, "section": "Advanced"},
        "keep_versions": {"default": fields["keep_versions"].default, "type": "integer", "minimum": 1, "maximum": 100,
                          "title": "Versions kept", "description": fields["keep_versions"].description,
                          "section": "Advanced"},
        "database_url": {**optional, "title": "Database URL (optional)",
                         "description": fields["database_url"].description, "section": "Advanced"},
        "tracking_uri": {**optional, "title": "MLflow tracking URI (optional)",
                         "description": fields["tracking_uri"].description, "section": "Advanced"},
    }


def score_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """The DAG task's body: validate the run's params into the config and score; returns the summary."""
    from pydantic import ValidationError

    from pipelines.errors import ConfigError

    known = {key: params[key] for key in BatchScoringConfig.model_fields if key in params}
    try:
        config = BatchScoringConfig(**{key: value for key, value in known.items() if value not in (None, "")})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid batch scoring parameters: {problems}") from None
    return run_batch_scoring(config)


def run_batch_scoring(config: BatchScoringConfig, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Score every user of the version under ``config.alias`` (or ``config.version``) into SQL.

    Returns {"registered_model", "version", "status" ("scored" or "already_complete"), "users",
    "rows", "seconds"}. Raises ServingError when the alias points nowhere.
    """
    import mlflow

    from pipelines.errors import ServingError
    from pipelines.serving.registry import alias_version, load_version
    from pipelines.serving.scorer import ServingModel
    from pipelines.serving.tables import make_engine
    from pipelines.tracking.setup import default_tracking_uri

    started = time.perf_counter()
    uri = config.tracking_uri or default_tracking_uri()
    name = config.registered_model
    version = config.version or alias_version(mlflow.MlflowClient(uri, registry_uri=uri), name, config.alias)
    if version is None:
        raise ServingError(f"registered model {name!r} has no @{config.alias} version to score (tracking store {uri})")
    engine = make_engine(config.database_url)
    try:
        done = _completed(engine, name, version)
        if done is not None and done["k"] == config.k:
            switch_current(engine, name, version, config.keep_versions)
            log.info("%s v%s already scored (%d rows): switched to it", name, version, done["rows"])
            return _result(name, version, "already_complete", done["users"], done["rows"], started)
        model = ServingModel(load_version(uri, name, version), name, version)
        users, rows = write_version(engine, model, config.k, config.chunk_users, progress)
        switch_current(engine, name, version, config.keep_versions, users=users, rows=rows)
    finally:
        engine.dispose()
    log.info("scored %s v%s: %d users, %d rows", name, version, users, rows)
    return _result(name, version, "scored", users, rows, started)


def write_version(
    engine, model, k: int, chunk_users: int, progress: ProgressCallback | None = None
) -> tuple[int, int]:
    """Write ``model``'s top-``k`` for all its users in chunks; returns (users, rows). Leaves the version ``running``."""
    import sqlalchemy as sa

    from pipelines.serving.tables import batch_runs, recommendations

    name, version = model.name, model.version
    user_ids = model.bundle.user_ids
    with engine.begin() as conn:
        conn.execute(sa.delete(batch_runs).where(batch_runs.c.model_name == name, batch_runs.c.model_version == version))
        conn.execute(sa.insert(batch_runs).values(model_name=name, model_version=version, status="running", k=k,
                                                  users=len(user_ids), rows=0, started_at=_now()))
    total = 0
    for start in range(0, len(user_ids), chunk_users):
        block = user_ids[start : start + chunk_users]
        rows = score_rows(model, block, k)
        with engine.begin() as conn:
            conn.execute(sa.delete(recommendations).where(
                recommendations.c.model_name == name, recommendations.c.model_version == version,
                recommendations.c.user_id.in_(block.tolist())))
            if rows:
                conn.execute(sa.insert(recommendations), rows)
        total += len(rows)
        if progress is not None:
            progress(start + len(block), len(user_ids))
    return len(user_ids), total


def score_rows(model, user_ids, k: int) -> list[dict[str, Any]]:
    """The table rows of one block of known users: top-``k`` with scores and explanations."""
    from pipelines.serving.scorer import SOURCE_MODEL

    bundle = model.bundle
    user_idx = bundle.user_index(user_ids)
    items, scores = bundle.recommend_indices(user_idx, k)
    rows = []
    base = {"model_name": model.name, "model_version": model.version, "source": SOURCE_MODEL}
    item_ids = model.item_ids
    for row, (user, idx) in enumerate(zip(user_ids.tolist(), user_idx.tolist())):
        valid = items[row] >= 0
        recs, vals = items[row][valid], scores[row][valid]
        because = model.because_items(model.history(idx), recs) if idx >= 0 else [-1] * len(recs)
        for rank, (item, score, near) in enumerate(zip(recs.tolist(), vals.tolist(), list(because)), 1):
            near = int(near)
            rows.append({**base, "user_id": user, "rank": rank, "item_id": item_ids[item], "score": float(score),
                         "explanation": model.explanation(SOURCE_MODEL, near),
                         "because_item_id": item_ids[near] if near >= 0 else None})
    return rows


def switch_current(engine, name: str, version: str, keep_versions: int, users: int | None = None,
                   rows: int | None = None) -> None:
    """Mark ``version`` complete and make it the one readers see, in one transaction; prune old versions."""
    import sqlalchemy as sa

    from pipelines.serving.tables import batch_runs, current_batch, recommendations

    now = _now()
    with engine.begin() as conn:
        done = {"status": "complete", "completed_at": now}
        if users is not None:
            done.update(users=users, rows=rows)
        # completed_at doubles as "last made current", so pruning keeps the versions switched to most recently.
        conn.execute(sa.update(batch_runs).where(batch_runs.c.model_name == name, batch_runs.c.model_version == version)
                     .values(**done))
        conn.execute(sa.delete(current_batch).where(current_batch.c.model_name == name))
        conn.execute(sa.insert(current_batch).values(model_name=name, model_version=version, switched_at=now))
    with engine.begin() as conn:
        complete = conn.execute(
            sa.select(batch_runs.c.model_version).where(batch_runs.c.model_name == name, batch_runs.c.status == "complete")
            .order_by(batch_runs.c.completed_at.desc())
        ).scalars().all()
        stale = [v for v in complete[keep_versions:] if v != version]
        if stale:
            conn.execute(sa.delete(recommendations).where(recommendations.c.model_name == name,
                                                          recommendations.c.model_version.in_(stale)))
            conn.execute(sa.delete(batch_runs).where(batch_runs.c.model_name == name,
                                                     batch_runs.c.model_version.in_(stale)))
            log.info("pruned batch recommendations of %s versions %s", name, stale)


def current_version(engine, name: str) -> str | None:
    """The version readers of the current-recommendations view see, or None."""
    import sqlalchemy as sa

    from pipelines.serving.tables import current_batch

    with engine.connect() as conn:
        return conn.execute(sa.select(current_batch.c.model_version).where(current_batch.c.model_name == name)).scalar()


def _completed(engine, name: str, version: str) -> dict[str, Any] | None:
    import sqlalchemy as sa

    from pipelines.serving.tables import batch_runs

    with engine.connect() as conn:
        row = conn.execute(sa.select(batch_runs).where(
            batch_runs.c.model_name == name, batch_runs.c.model_version == version, batch_runs.c.status == "complete"
        )).mappings().first()
    return dict(row) if row else None


def _result(name: str, version: str, status: str, users: int, rows: int, started: float) -> dict[str, Any]:
    return {"registered_model": name, "version": str(version), "status": status, "users": int(users),
            "rows": int(rows), "seconds": round(time.perf_counter() - started, 3)}


def _now() -> datetime:
    return datetime.now(timezone.utc)
