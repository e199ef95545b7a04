"""Column names and other constants shared by every step."""

from __future__ import annotations

# Canonical interaction columns (after ingest). Ids are strings so any source fits.
USER = "user_id"
ITEM = "item_id"
RATING = "rating"
TIMESTAMP = "timestamp"
INTERACTION_COLUMNS = (USER, ITEM, RATING, TIMESTAMP)

# Contiguous integer encodings built by the features step.
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"

# Item metadata columns.
TITLE = "title"
GENRES = "genres"  # pipe-separated, MovieLens style: "Action|Comedy"
TAGS = "tags"  # space-joined free text
ITEM_COLUMNS = (ITEM, TITLE, GENRES, TAGS)

# Quarantine.
REASON = "reason"
SOURCE_ROW = "source_row"

# Output of recommend().
RANK = "rank"
SCORE = "score"

SERVING_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
DEFAULT_REGISTERED_MODEL = "recsys"
DEFAULT_EXPERIMENT = "recsys_training"

# Environment variables the platform reads.
ENV_HOME = "RECSYS_HOME"
ENV_DASK_SCHEDULER = "RECSYS_DASK_SCHEDULER"
ENV_DASK_CONN_ID = "RECSYS_DASK_CONN_ID"  # Airflow connection of the scheduler (DaskConfig.scheduler_conn_id)
ENV_FIT_ON = "RECSYS_FIT_ON"  # where candidate fits run: auto, local or cluster (DaskConfig.fit_on)
ENV_DEVICE = "RECSYS_DEVICE"
ENV_THREADS = "RECSYS_THREADS"  # CPU threads of a fit (BLAS, torch); default: the cores this process may use
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"

# Airflow Asset updated when the serving alias moves (promotion, approval, rollback); the batch
# scoring DAG is scheduled on it. A URI string so pipelines/ needs no Airflow import.
CHAMPION_ASSET_URI = "recsys://registry/champion"

# Airflow Asset updated when new interactions land in the lake (``recsys land``, the
# ``recsys_ingest_events`` DAG); the training DAG is scheduled on it (its cron as a fallback).
INTERACTIONS_ASSET_URI = "recsys://lake/interactions"
# Airflow Asset the monitoring DAG updates when a check asks for retraining; its event's extra
# carries the training run's conf (data, held-out split, trigger_reason). Training is scheduled on it too.
RETRAIN_ASSET_URI = "recsys://monitoring/retrain"
