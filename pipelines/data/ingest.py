"""The ingest step: read a source into the run's immutable snapshot in the lake.

``raw/<key>/interactions/part.NNNNN.parquet``  canonical columns + ``source_row``
``raw/<key>/items.parquet``                    item metadata, when the source has it
``raw/<key>/manifest.json``                    rows, sha256, source, items_rows, created_at
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.data.config import IngestConfig, load_ingest_config
from pipelines.data.scheduling import ROW_GROUP_ROWS, compute
from pipelines.data.snapshot import content_sha256, parquet_files, parquet_rows, utc_now, write_json
from pipelines.errors import DataError
from pipelines.paths import run_dir
from pipelines.storage import MANIFEST, write_partition

if TYPE_CHECKING:
    import dask.dataframe as dd

log = logging.getLogger(__name__)

STAGE = "raw"


def interactions_frame(cfg: IngestConfig) -> dd.DataFrame:
    """The source's interactions as a lazy Dask frame (every source but SQL, which streams).

    Raises:
        DataError: the source is missing or lacks a required column.
    """
    if cfg.source == "synthetic":
        from pipelines.data.synthetic import synthetic_interactions

        return synthetic_interactions(cfg)
    if cfg.source == "csv":
        from pipelines.data.files import read_csv_interactions

        return read_csv_interactions(cfg.path, cfg.effective_column_map(), cfg.delimiter)
    if cfg.source == "parquet":
        from pipelines.data.files import read_parquet_interactions

        return read_parquet_interactions(cfg.path, cfg.effective_column_map())
    if cfg.source == "movielens":
        from pipelines.data.movielens import read_movielens_ratings

        return read_movielens_ratings(cfg.path, cfg.effective_column_map())
    if cfg.source == "movielens100k":
        from pipelines.data.movielens import read_ml100k_ratings

        return read_ml100k_ratings(cfg.path, cfg.effective_column_map())
    raise ValueError(f"source {cfg.source!r} is not read as a Dask frame")


def items_frame(cfg: IngestConfig) -> pd.DataFrame | None:
    """Item metadata of the source (item_id, title, genres, tags), or None when it has none.

    Raises:
        DataError: a metadata file is missing or lacks an item id column.
    """
    if cfg.source == "synthetic":
        from pipelines.data.synthetic import synthetic_items

        return synthetic_items(cfg)
    if cfg.source == "movielens":
        from pipelines.data.movielens import read_movielens_items

        return read_movielens_items(cfg.path)
    if cfg.source == "movielens100k":
        from pipelines.data.movielens import read_ml100k_items

        return read_ml100k_items(cfg.path)
    if cfg.items_path:
        from pipelines.data.files import read_items_file

        return read_items_file(cfg.items_path, cfg.effective_column_map(), cfg.delimiter)
    return None


def _part_name(index: int) -> str:
    return f"part.{index:05d}.parquet"


def write_interactions(cfg: IngestConfig, out_dir: Path, client: Any = None) -> None:
    """Write the source's interactions under ``out_dir`` with one Dask computation (SQL: chunked).

    Raises:
        DataError: the source cannot be read or parsed (names the source).
    """
    if cfg.source == "sql":
        from pipelines.data.sql import write_sql_interactions

        write_sql_interactions(cfg, out_dir)
        return
    ddf = interactions_frame(cfg)
    write = ddf.to_parquet(
        out_dir, write_index=False, name_function=_part_name, compute=False, write_metadata_file=False,
        row_group_size=ROW_GROUP_ROWS,
    )
    try:
        compute(write, client=client)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise DataError(f"cannot parse {cfg.describe()}: {reason}") from exc


def run_ingest(
    config: IngestConfig | dict[str, Any], out_root: str | Path | None, run_key: str, client: Any = None
) -> dict[str, Any]:
    """Ingest the configured source into ``<out_root>/raw/<run_key>/`` (replacing any earlier output).

    The partition is written beside its place and renamed into it with its manifest (see
    :mod:`pipelines.storage`): readers never see a half-written snapshot.

    Args:
        config: an :class:`IngestConfig` or a dict of its fields.
        out_root: the lake root (None: the platform's lake).
        run_key: the run's key; the step owns ``raw/<run_key>``.
        client: optional ``distributed.Client``; default: the active client or local threads.

    Returns:
        ``{"snapshot_uri", "items_uri", "manifest_uri", "rows", "sha256"}``; ``snapshot_uri`` is
        the interactions folder, ``items_uri`` None when the source has no item metadata.

    Raises:
        ConfigError: invalid config (names the field and its allowed range).
        DataError: missing input, missing columns, unreadable data.
        PartitionBusyError: another live process is writing this run's partition.
    """
    cfg = load_ingest_config(config)
    target = run_dir(STAGE, run_key, out_root)
    log.info("ingesting %s into %s", cfg.describe(), target)
    with write_partition(target) as root:
        interactions_dir = root / "interactions"
        write_interactions(cfg, interactions_dir, client)
        rows = parquet_rows(interactions_dir)
        sha256 = content_sha256(interactions_dir)
        items = items_frame(cfg)
        if items is not None:
            items.to_parquet(root / "items.parquet", index=False)
        settings = cfg.model_dump(mode="json")
        if cfg.url:
            settings["url"] = cfg.describe()  # never write a password into the lake
        write_json(
            root / MANIFEST,
            {
                "rows": rows,
                "sha256": sha256,
                "source": cfg.describe(),
                "items_rows": None if items is None else len(items),
                "created_at": utc_now(),
                "run_key": run_key,
                "files": [path.name for path in parquet_files(interactions_dir)],
                "config": settings,
            },
        )
    interactions_dir, manifest_uri = target / "interactions", target / MANIFEST
    items_uri = None if items is None else target / "items.parquet"
    log.info("ingested %d rows (sha256 %s) from %s", rows, sha256[:12], cfg.describe())
    return {
        "snapshot_uri": str(interactions_dir),
        "items_uri": None if items_uri is None else str(items_uri),
        "manifest_uri": str(manifest_uri),
        "rows": rows,
        "sha256": sha256,
    }
