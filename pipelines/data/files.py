"""CSV and Parquet sources read lazily with Dask, mapped onto the canonical columns.

CSV is read with ``dtype=str`` so that bad values ("four", "2020-13-45") reach the cleaning
step intact instead of failing the read, and with no NA words, so an id spelled "NA" or "null"
stays an id. A line that cannot be read (too many fields, bytes that are not text) becomes a
row with a ``parse_error``, which cleaning quarantines with that reason. Each row gets ``source_row``: its 0-based position
over all input files in order, computed in the same pass as the read (a cumulative sum over
partitions), so it is exact without reading the data twice.
"""

from __future__ import annotations

import csv
import io
import warnings
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
DATA_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
CSV_BLOCKSIZE = 64 * 2**20  # bytes of whole lines per parsed block (one Dask task each)

PARSE_ERROR = "parse_error"  # snapshot column: why a line could not be read as a row (else missing)
MALFORMED_LINE = "malformed_line"  # more fields than the header
UNDECODABLE_BYTES = "undecodable_bytes"  # bytes that are not text in the file's encoding


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
    present = [p for p in root.iterdir() if p.is_file() and not p.name.startswith((".", "_"))]
    files = sorted(str(p) for p in present if p.name.lower().endswith(suffixes))
    if not files:
        raise DataError(f"{kind} folder {str(root)!r} holds no file ending in {list(suffixes)}")
    # A folder of one source holds one format: reading only part of it would drop rows silently.
    others = sorted(p.name for p in present if p.name.lower().endswith(DATA_SUFFIXES) and str(p) not in files)
    if others:
        raise DataError(
            f"{kind} folder {str(root)!r} also holds {others[:3]} of another format; "
            "put each format in its own folder"
        )
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
    extra = [PARSE_ERROR] if PARSE_ERROR in ddf.columns else []
    ddf = ddf[[by_target[col] for col in INTERACTION_COLUMNS] + extra]
    ddf = ddf.rename(columns={by_target[col]: col for col in INTERACTION_COLUMNS})
    return add_source_row(ddf)


def _open_bytes(path: str) -> Any:
    if path.lower().endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def _split_line(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def read_header(path: str, delimiter: str, encoding: str) -> list[str]:
    """The column names on the first line of CSV ``path`` (a UTF-8 byte-order mark is dropped).

    Raises:
        DataError: the file is empty, its first line is blank or cannot be decoded.
    """
    with _open_bytes(path) as handle:
        first = handle.readline()
    if not first.strip():
        raise DataError(
            f"CSV {path!r} is empty or starts with a blank line: it needs a header line "
            "(e.g. user_id,item_id,rating,timestamp)"
        )
    try:
        text = first.decode("utf-8-sig" if encoding.replace("_", "-").lower() == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"CSV {path!r}: the header line is not {encoding} text ({exc.reason} at byte {exc.start})") from None
    return [name.strip() for name in _split_line(text.rstrip("\r\n"), delimiter)]


def _parse_lines(data: bytes, columns: list[str], delimiter: str, encoding: str) -> pd.DataFrame:
    """Line by line, for a block the fast parser refused: each bad line becomes a row with a reason."""
    width = len(columns)
    rows: list[list[str]] = []
    errors: list[str | None] = []
    for raw in data.split(b"\n"):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue  # blank lines are not rows (as for the fast parser)
        error = None
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            text, error = raw.decode(encoding, errors="replace"), UNDECODABLE_BYTES
        fields = _split_line(text, delimiter)
        if len(fields) > width:
            error = error or MALFORMED_LINE
        rows.append((fields + [""] * width)[:width])
        errors.append(error)
    frame = pd.DataFrame(rows, columns=columns, dtype="str") if rows else _empty(columns).drop(columns=PARSE_ERROR)
    frame = frame.where(frame != "")  # an empty field is missing, as for the fast parser
    frame[PARSE_ERROR] = pd.Series(errors, index=frame.index, dtype="str")
    return frame


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({col: pd.Series([], dtype="str") for col in [*columns, PARSE_ERROR]})


def parse_csv_block(data: bytes, columns: list[str], delimiter: str, encoding: str, skip_header: bool) -> pd.DataFrame:
    """One block of a CSV file (whole lines) as text columns plus ``parse_error``.

    The C parser reads a clean block; a block with a line of too many fields or bytes that are
    not ``encoding`` text is re-read line by line, and each such line becomes a row whose
    ``parse_error`` names the problem (``malformed_line``, ``undecodable_bytes``) so cleaning
    quarantines it at its position instead of the whole read failing. Only an empty field is
    missing: ids spelled "NA", "null" or "None" stay ids.
    """
    if skip_header:
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    if not data.strip():
        return _empty(columns)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # pandas would drop fields silently
            frame = pd.read_csv(
                io.BytesIO(data), sep=delimiter, header=None, index_col=False, dtype=str,
                keep_default_na=False, na_values=[""], encoding=encoding, on_bad_lines="error", skip_blank_lines=True,
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError):
        return _parse_lines(data, columns, delimiter, encoding)
    if frame.shape[1] > len(columns):  # the block's first line set the width: it has extra fields
        return _parse_lines(data, columns, delimiter, encoding)
    frame = frame.set_axis(columns[: frame.shape[1]], axis=1).reindex(columns=columns)
    frame[PARSE_ERROR] = pd.Series(pd.NA, index=frame.index, dtype="str")
    return frame


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

    Each file is cut into blocks of whole lines read in parallel (:func:`parse_csv_block`);
    malformed lines and undecodable bytes become rows with a ``parse_error`` instead of
    failing the read. ``header=False`` with ``names`` reads header-less files (ML-100K ``u.data``).

    Raises:
        DataError: no input file, an empty file, files with different headers, or a
            mapped/required column is missing.
    """
    import dask
    import dask.dataframe as dd
    from dask.bytes import read_bytes

    files = input_files(path, CSV_SUFFIXES, "CSV")
    where = f"CSV {describe_files(files)}"
    if header:
        columns = read_header(files[0], delimiter, encoding)
        for other in files[1:]:
            if (theirs := read_header(other, delimiter, encoding)) != columns:
                raise DataError(f"CSV {other!r} has columns {theirs}, but {files[0]!r} has {columns}: one layout per folder")
    else:
        columns = list(names or [])
    if len(set(columns)) != len(columns):
        raise DataError(f"{where}: the header repeats a column name: {columns}")
    resolve_column_map(columns, column_map, where)  # fail on missing columns before any work
    parse = dask.delayed(parse_csv_block, pure=True)
    parts = []
    for file in files:
        compressed = file.lower().endswith(".gz")
        _, blocks = read_bytes(
            file, delimiter=b"\n", blocksize=None if compressed else CSV_BLOCKSIZE, sample=False,
            compression="gzip" if compressed else None,
        )
        parts += [parse(block, columns, delimiter, encoding, header and i == 0) for i, block in enumerate(blocks[0])]
    ddf = dd.from_delayed(parts, meta=_empty(columns), verify_meta=False)
    return canonical_frame(ddf, column_map, where)


def read_parquet_interactions(path: str | Path, column_map: dict[str, str] | None = None) -> dd.DataFrame:
    """Interactions from a Parquet file or folder; columns keep the types the file gives them.

    Raises:
        DataError: no input file, or a mapped/required column is missing.
    """
    import dask.dataframe as dd

    import pyarrow.parquet as pq

    files = input_files(path, PARQUET_SUFFIXES, "Parquet")
    for file in files:  # footers only: a truncated or empty file is named before any work
        try:
            pq.ParquetFile(file)
        except (OSError, ValueError) as exc:
            raise DataError(f"Parquet {file!r} is not a readable Parquet file ({exc})") from None
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
