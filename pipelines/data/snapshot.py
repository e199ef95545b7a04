"""Snapshot storage helpers: Parquet row counts, content hashes, manifests.

Shared by the ingest and cleaning steps (both write their own run partition of the lake, through
:func:`pipelines.storage.write_partition`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_HASH_BLOCK = 1 << 20


def parquet_files(folder: str | Path) -> list[Path]:
    """The ``*.parquet`` files directly in ``folder``, sorted by name."""
    return sorted(Path(folder).glob("*.parquet"))


def parquet_rows(source: str | Path | list[Path]) -> int:
    """Total rows of the Parquet files in folder ``source`` (or of a list of files), from their
    footers: no data is read."""
    import pyarrow.parquet as pq

    files = source if isinstance(source, list) else parquet_files(source)
    return sum(pq.ParquetFile(path).metadata.num_rows for path in files)


def content_sha256(folder: str | Path) -> str:
    """SHA-256 over the names and bytes of the Parquet files in ``folder``, in sorted name order.

    Deterministic: the same data written the same way gives the same hash.
    """
    digest = hashlib.sha256()
    for path in parquet_files(folder):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def utc_now() -> str:
    """The current time in ISO-8601 UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented, key-sorted JSON; returns the path."""
    path = Path(path)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())
