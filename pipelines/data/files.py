"""CSV and Parquet sources read lazily with Dask, mapped onto the canonical columns.

CSV is read with ``dtype=str`` so that bad values ("four", "2020-13-45") reach the cleaning
step intact instead of failing the read. Each row gets ``source_row``: its 0-based position
over all input files in order, computed in the same pass as the read (a cumulative sum over
partitions), so it is exact without reading the data twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.constants import GENRES, INTERACTION_COLUMNS, ITEM, ITEM_COLUMNS, SOURCE_ROW, TAGS, TITLE
from pipelines.data.columns import resolve_column_map
from pipelines.errors import DataError

if TYPE_CHECKING:
    import dask.dataframe as dd

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


def input_files(path: str | Path, suffixes: tuple[str, ...], kind: str) -> list[str]:
    """The files to read: ``path`` itself, or the files in folder ``path`` with ``suffixes``, sorted.

    Raises:
        DataError: ``path`` does not exist, or the folder holds no matching file.
    """
    root = Path(path)
    if root.is_file():
        return [str(root)]
    if not root.exists():
        raise DataError(f"{kind} source {str(root)!r} does not exist")
    files = sorted(str(p) for p in root.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
    if not files:
        raise DataError(f"{kind} folder {str(root)!r} holds no file ending in {list(suffixes)}")
    return files


def describe_files(files: list[str]) -> str:
    """How error messages name the input: the file, or the folder and the number of files."""
    if len(files) == 1:
        return files[0]
    return f"{Path(files[0]).parent} ({len(files)} files: {Path(files[0]).name}, ...)"


def _ones(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(np.ones(len(frame), dtype=np.int64), index=frame.index, name=SOURCE_ROW)


def add_source_row(ddf: dd.DataFrame) -> dd.DataFrame:
    """Add ``source_row`` (int64): each row's 0-based position over all partitions in order."""
    ones = ddf.map_partitions(_ones, meta=pd.Series([], dtype="int64", name=SOURCE_ROW))
    return ddf.assign(**{SOURCE_ROW: ones.cumsum() - 1})


def canonical_frame(ddf: dd.DataFrame, column_map: dict[str, str] | None, where: str) -> dd.DataFrame:
    """Keep and rename the mapped columns to ``user_id, item_id, rating, timestamp``, add ``source_row``.

    Raises:
        DataError: a mapped or required column is missing (names ``where``, the missing and
            the available columns).
    """
    mapping = resolve_column_map(list(ddf.columns), column_map, where)
    by_target = {target: source for source, target in mapping.items()}
    ddf = ddf[[by_target[col] for col in INTERACTION_COLUMNS]]
    ddf = ddf.rename(columns={by_target[col]: col for col in INTERACTION_COLUMNS})
    return add_source_row(ddf)


def read_csv_interactions(
    path: str | Path,
    column_map: dict[str, str] | None = None,
    delimiter: str = ",",
    *,
    header: bool = True,
    names: list[str] | None = None,
    encoding: str = "utf-8",
) -> dd.DataFrame:
    """Interactions from a CSV file or a folder of CSV files, every column read as text.

    ``header=False`` with ``names`` reads header-less files (ML-100K ``u.data``).

    Raises:
        DataError: no input file, or a mapped/required column is missing.
    """
    import dask.dataframe as dd

    files = input_files(path, CSV_SUFFIXES, "CSV")
    options: dict[str, Any] = {"sep": delimiter, "dtype": str, "encoding": encoding, "blocksize": "64MiB"}
    if not header:
        options.update(header=None, names=names)
    try:
        ddf = dd.read_csv(files if len(files) > 1 else files[0], **options)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read CSV {describe_files(files)}: {exc}") from exc
    return canonical_frame(ddf, column_map, f"CSV {describe_files(files)}")


def read_parquet_interactions(path: str | Path, column_map: dict[str, str] | None = None) -> dd.DataFrame:
    """Interactions from a Parquet file or folder; columns keep the types the file gives them.

    Raises:
        DataError: no input file, or a mapped/required column is missing.
    """
    import dask.dataframe as dd

    files = input_files(path, PARQUET_SUFFIXES, "Parquet")
    try:
        ddf = dd.read_parquet(files, index=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read Parquet {describe_files(files)}: {exc}") from exc
    return canonical_frame(ddf, column_map, f"Parquet {describe_files(files)}")


def canonical_items(frame: pd.DataFrame, column_map: dict[str, str] | None, where: str) -> pd.DataFrame:
    """Item metadata with ``item_id, title, genres, tags`` as text; absent columns become "".

    Raises:
        DataError: no item id column (names ``where`` and the available columns).
    """
    item_map = None
    if column_map is not None:  # reuse the interaction map's item id entry, e.g. movieId -> item_id
        item_map = {src: dst for src, dst in column_map.items() if dst in ITEM_COLUMNS and src in frame.columns}
        item_map = item_map or None  # nothing of the map applies here: detect by aliases
    mapping = resolve_column_map(frame.columns, item_map, where, required=(ITEM,), optional=(TITLE, GENRES, TAGS))
    out = frame[list(mapping)].rename(columns=mapping)
    for col in ITEM_COLUMNS:
        if col not in out.columns:
            out[col] = ""
    out = out[list(ITEM_COLUMNS)].astype("str")
    out[ITEM] = out[ITEM].str.strip()
    for col in (TITLE, GENRES, TAGS):
        out[col] = out[col].fillna("")
    return out.reset_index(drop=True)


def read_items_file(path: str | Path, column_map: dict[str, str] | None = None, delimiter: str = ",") -> pd.DataFrame:
    """Item metadata from a CSV or Parquet file (small: read into memory with pandas).

    Raises:
        DataError: the file is missing, unreadable, or has no item id column.
    """
    source = Path(path)
    if not source.is_file():
        raise DataError(f"items file {str(source)!r} does not exist")
    try:
        if source.name.lower().endswith(PARQUET_SUFFIXES):
            frame = pd.read_parquet(source)
        else:
            frame = pd.read_csv(source, sep=delimiter, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read items file {str(source)!r}: {exc}") from exc
    return canonical_items(frame, column_map, f"items file {str(source)!r}")
