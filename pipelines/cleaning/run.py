"""The cleaning step: typed columns, quarantine with reasons, dedup, k-core, a report.

``clean/<key>/interactions/*.parquet``  user_id, item_id, rating (float64), timestamp (int64 s)
``clean/<key>/quarantine/*.parquet``    rejected rows: original values as text, source_row, reason
``clean/<key>/report.json``             rows_in = rows_clean + rows_quarantined
                                        + duplicates_dropped + kcore_dropped, reasons {reason: n}
``clean/<key>/manifest.json``           the counts and files, written last (see pipelines.storage)

Lines the ingest could not read (``parse_error``: too many fields, undecodable bytes) are
quarantined with that reason like any other bad row, so every input row is accounted for.

The data work is one Dask computation. With k-core there is a second: the core is a fixed
point, found in NumPy on the deduplicated (user, item) pairs that the first computation brings
into memory, then applied while rewriting the deduplicated rows.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.cleaning.config import CleaningConfig, load_cleaning_config
from pipelines.cleaning.dedup import keep_latest_frame
from pipelines.cleaning.kcore import in_core, kcore_members
from pipelines.cleaning.rules import annotate_partition, annotated_meta, quarantine_partition, valid_partition
from pipelines.constants import INTERACTION_COLUMNS, ITEM, REASON, SOURCE_ROW, TIMESTAMP, USER
from pipelines.data.scheduling import ROW_GROUP_ROWS, compute, read_lake
from pipelines.data.files import PARSE_ERROR
from pipelines.data.snapshot import parquet_files, parquet_rows, utc_now, write_json
from pipelines.errors import DataError, RejectedFractionError
from pipelines.paths import run_dir
from pipelines.storage import MANIFEST, require_partition, write_partition

if TYPE_CHECKING:
    import dask.dataframe as dd

log = logging.getLogger(__name__)

STAGE = "clean"
_COUNT_KEYS = ("rows_in", "rows_clean", "rows_quarantined", "duplicates_dropped", "kcore_dropped")
_STAGING = "_deduplicated"  # dedup output awaiting the k-core filter; removed afterwards


def snapshot_files(snapshot_uri: str | Path) -> list[Path]:
    """The interaction files of a snapshot: ``snapshot_uri`` is the ``interactions`` folder
    (as ingest returns it) or the snapshot's root holding one.

    Raises:
        DataError: no Parquet file there (names the URI).
    """
    root = require_partition(snapshot_uri, what="snapshot")
    folder = root / "interactions" if (root / "interactions").is_dir() else root
    files = parquet_files(folder) if folder.is_dir() else []
    if not files:
        raise DataError(f"snapshot {str(snapshot_uri)!r} has no interaction parquet files (looked in {folder})")
    return files


def read_snapshot(files: list[Path], where: str) -> dd.DataFrame:
    """The snapshot as a lazy frame, checked for the canonical columns and ``source_row``.

    Raises:
        DataError: a column is missing (names the snapshot, the missing and available columns).
    """
    raw = read_lake(files)
    missing = [c for c in (*INTERACTION_COLUMNS, SOURCE_ROW) if c not in raw.columns]
    if missing:
        raise DataError(f"snapshot {where}: missing column(s) {missing}; available columns: {list(raw.columns)}")
    extra = [PARSE_ERROR] if PARSE_ERROR in raw.columns else []
    return raw[[*INTERACTION_COLUMNS, SOURCE_ROW, *extra]]


def annotate_read_partition(frame: pd.DataFrame, rating_min: float, rating_max: float, latest_allowed: int) -> pd.DataFrame:
    """:func:`annotate_partition`, then the ingest's ``parse_error`` (when present) as the reason:
    a line that could not be read is quarantined for that, whatever its fields look like."""
    out = annotate_partition(frame.drop(columns=[PARSE_ERROR], errors="ignore"), rating_min, rating_max, latest_allowed)
    if PARSE_ERROR in frame.columns:
        errors = frame[PARSE_ERROR]
        unreadable = (errors.notna() & (errors != "")).to_numpy()
        if unreadable.any():
            out[REASON] = out[REASON].where(~unreadable, errors)
            out[TIMESTAMP] = out[TIMESTAMP].where(~unreadable, 0)
    return out


def _write(frame: dd.DataFrame, folder: Path) -> Any:
    return frame.to_parquet(folder, write_index=False, compute=False, write_metadata_file=False,
                            row_group_size=ROW_GROUP_ROWS)


def _write_kcore(staged: Path, out: Path, pairs: pd.DataFrame, k: int, client: Any) -> None:
    """Write the rows in ``staged`` that belong to the k-core of ``pairs`` to ``out``; remove ``staged``."""
    users, items = kcore_members(pairs, k)
    frame = read_lake(parquet_files(staged), client)
    compute(_write(frame.map_partitions(in_core, users, items, meta=frame._meta), out), client=client)
    shutil.rmtree(staged)


def top_reasons(reasons: dict[str, int], n: int = 3) -> str:
    """'reason=count, ...' for the ``n`` most frequent reasons."""
    return ", ".join(f"{reason}={count}" for reason, count in list(reasons.items())[:n]) or "none"


def check_rejected_fraction(report: dict[str, Any], cfg: CleaningConfig, where: str, quarantine_uri: str) -> None:
    """Raise when the quarantined fraction of ``report`` exceeds the ceiling.

    Raises:
        RejectedFractionError: naming the snapshot, the counts, the fraction vs the ceiling,
            the top 3 reasons with counts, and where the quarantined rows are.
    """
    if report["rejected_fraction"] <= cfg.max_rejected_fraction:
        return
    raise RejectedFractionError(
        f"cleaning {where} quarantined {report['rows_quarantined']} of {report['rows_in']} rows "
        f"({report['rejected_fraction']:.2%}), above the ceiling max_rejected_fraction="
        f"{cfg.max_rejected_fraction:g} ({cfg.max_rejected_fraction:.2%}); top reasons: "
        f"{top_reasons(report['reasons'])}; quarantined rows are in {quarantine_uri}"
    )


def run_cleaning(
    config: CleaningConfig | dict[str, Any] | None,
    snapshot_uri: str | Path,
    out_root: str | Path | None,
    run_key: str,
    client: Any = None,
) -> dict[str, Any]:
    """Clean an ingest snapshot into ``<out_root>/clean/<run_key>/`` (replacing earlier output).

    Args:
        config: a :class:`CleaningConfig` or a dict of its fields.
        snapshot_uri: the snapshot's interactions folder (``run_ingest``'s ``snapshot_uri``).
        out_root: the lake root (None: the platform's lake).
        run_key: the run's key; the step owns ``clean/<run_key>``.
        client: optional ``distributed.Client``; default: the active client or local threads.

    Returns:
        ``{"clean_uri", "quarantine_uri", "report_uri", "rows_in", "rows_clean",
        "rows_quarantined", "duplicates_dropped", "kcore_dropped", "reasons"}``.

    Raises:
        ConfigError: invalid config.
        DataError: the snapshot is missing or lacks columns.
        RejectedFractionError: more rows quarantined than ``max_rejected_fraction`` allows
            (raised after the quarantine, the clean rows and the report are written).
    """
    cfg = load_cleaning_config(config)
    files = snapshot_files(snapshot_uri)
    where = repr(str(snapshot_uri))
    raw = read_snapshot(files, where)
    target = run_dir(STAGE, run_key, out_root)
    reference_time = cfg.reference_time if cfg.reference_time is not None else int(time.time())
    with write_partition(target) as root:
        report = _clean_into(cfg, raw, files, root, reference_time, client)
        report["snapshot_uri"] = str(snapshot_uri)
        write_json(root / "report.json", report)
        write_json(root / MANIFEST, {
            **{key: report[key] for key in (*_COUNT_KEYS, "reasons", "passed", "created_at")},
            "run_key": run_key,
            "files": {part: [p.name for p in parquet_files(root / part)] for part in ("interactions", "quarantine")},
        })
    clean_dir, quarantine_dir, report_uri = target / "interactions", target / "quarantine", target / "report.json"
    log.info("cleaned %s: %s", where, {k: report[k] for k in ("rows_in", "rows_clean", "rows_quarantined")})
    check_rejected_fraction(report, cfg, where, str(quarantine_dir))
    return {
        "clean_uri": str(clean_dir),
        "quarantine_uri": str(quarantine_dir),
        "report_uri": str(report_uri),
        **{key: report[key] for key in _COUNT_KEYS},
        "reasons": report["reasons"],
    }


def _clean_into(cfg: CleaningConfig, raw: dd.DataFrame, files: list[Path], root: Path, reference_time: int,
                client: Any) -> dict[str, Any]:
    """The data work of :func:`run_cleaning`, written under ``root``; returns the report."""
    clean_dir, quarantine_dir, staged_dir = root / "interactions", root / "quarantine", root / _STAGING
    meta = annotated_meta()
    annotated = raw.map_partitions(
        annotate_read_partition,
        cfg.rating_min,
        cfg.rating_max,
        reference_time + cfg.allow_future_seconds,
        meta=meta,
    )
    valid = annotated.map_partitions(valid_partition, meta=valid_partition(meta))
    quarantined = annotated.map_partitions(quarantine_partition, meta=quarantine_partition(meta))
    kept = keep_latest_frame(valid) if cfg.dedup else valid
    use_kcore = cfg.kcore > 1  # every user and item has at least one interaction
    lazy = [
        _write(quarantined, quarantine_dir),
        _write(kept[list(INTERACTION_COLUMNS)], staged_dir if use_kcore else clean_dir),
        annotated[REASON].value_counts(split_out=1),  # a tree reduction: a shuffle for 8 reasons costs seconds
    ]
    if use_kcore:
        lazy.append(kept[[USER, ITEM]])  # the pairs the k-core is computed on, in memory
    results = compute(*lazy, client=client)
    reason_counts = results[2]
    if use_kcore:
        rows_deduplicated = parquet_rows(staged_dir)
        _write_kcore(staged_dir, clean_dir, results[3], cfg.kcore, client)

    # Counts come from the Parquet footers: exact, and no second pass over the data.
    rows_in = parquet_rows(files)
    rows_quarantined = parquet_rows(quarantine_dir)
    rows_clean = parquet_rows(clean_dir)
    if not use_kcore:
        rows_deduplicated = rows_clean
    reasons = {str(r): int(n) for r, n in sorted(reason_counts.items(), key=lambda item: (-item[1], item[0]))}
    report = {
        "rows_in": rows_in,
        "rows_clean": rows_clean,
        "rows_quarantined": rows_quarantined,
        "duplicates_dropped": rows_in - rows_quarantined - rows_deduplicated,
        "kcore_dropped": rows_deduplicated - rows_clean,
        "reasons": reasons,
        "rejected_fraction": rows_quarantined / rows_in if rows_in else 0.0,
        "max_rejected_fraction": cfg.max_rejected_fraction,
        "reference_time": reference_time,
        "config": cfg.model_dump(mode="json"),
        "created_at": utc_now(),
    }
    report["passed"] = report["rejected_fraction"] <= cfg.max_rejected_fraction
    return report
