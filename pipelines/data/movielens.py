"""MovieLens folders: the ml-latest layout (CSV with headers) and the older ML-100K layout.

ml-latest(-small): ``ratings.csv`` (userId,movieId,rating,timestamp), ``movies.csv``
(movieId,title,genres) and optionally ``tags.csv`` (userId,movieId,tag,timestamp; joined per
movie, in file order, into the ``tags`` text).

ML-100K: ``u.data`` (tab-separated user, item, rating, timestamp; no header) and ``u.item``
(pipe-separated, latin-1: id, title, release date, video release date, IMDb URL, then 19
genre flags named by ``u.genre`` when present).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pipelines.constants import GENRES, ITEM, TAGS, TITLE
from pipelines.data.config import DEFAULT_COLUMN_MAPS
from pipelines.data.files import canonical_items, read_csv_interactions
from pipelines.errors import DataError

if TYPE_CHECKING:
    import dask.dataframe as dd

NO_GENRES = "(no genres listed)"  # what ml-latest writes for a movie without genres
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
ML100K_ITEM_FIELDS = ("movie_id", "title", "release_date", "video_release_date", "imdb_url")
ML100K_COLUMNS = ["user", "item", "rating", "timestamp"]


def _required(folder: str | Path, name: str, layout: str) -> Path:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{layout} source {str(root)!r} is not a folder")
    path = root / name
    if not path.is_file():
        present = sorted(p.name for p in root.iterdir())
        raise DataError(f"{layout} folder {str(root)!r} has no {name!r}; it holds {present}")
    return path


# -- ml-latest ------------------------------------------------------------------------


def read_movielens_ratings(folder: str | Path, column_map: dict[str, str] | None = None) -> dd.DataFrame:
    """``ratings.csv`` of an ml-latest folder as canonical interactions (text columns, lazy).

    Raises:
        DataError: the folder or ``ratings.csv`` is missing, or a column is missing.
    """
    path = _required(folder, "ratings.csv", "MovieLens")
    mapping = column_map if column_map is not None else DEFAULT_COLUMN_MAPS["movielens"]
    return read_csv_interactions(path, mapping)


def aggregate_tags(tags: pd.DataFrame) -> pd.DataFrame:
    """Tag rows (movieId, tag) -> one row per movie with its tags space-joined in file order."""
    tags = tags.dropna(subset=["movieId", "tag"])
    tags = tags.assign(tag=tags["tag"].str.strip()).loc[lambda t: t["tag"] != ""]
    joined = tags.groupby("movieId", sort=False)["tag"].agg(" ".join)
    return joined.rename(TAGS).reset_index()


def read_movielens_items(folder: str | Path) -> pd.DataFrame:
    """``movies.csv`` (+ ``tags.csv`` when present) as item metadata: item_id, title, genres, tags.

    Raises:
        DataError: ``movies.csv`` is missing or lacks movieId/title/genres.
    """
    path = _required(folder, "movies.csv", "MovieLens")
    movies = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("movieId", "title", "genres") if c not in movies.columns]
    if missing:
        raise DataError(f"MovieLens {str(path)!r} lacks column(s) {missing}; available: {list(movies.columns)}")
    tags_path = Path(folder) / "tags.csv"
    if tags_path.is_file():
        tags = pd.read_csv(tags_path, dtype=str, keep_default_na=False, usecols=["movieId", "tag"])
        movies = movies.merge(aggregate_tags(tags), on="movieId", how="left")
    mapping = {"movieId": ITEM, "title": TITLE, "genres": GENRES}
    if TAGS in movies.columns:
        mapping[TAGS] = TAGS
    return canonical_items(movies, mapping, f"MovieLens {str(path)!r}")


# -- ML-100K --------------------------------------------------------------------------


def read_ml100k_ratings(folder: str | Path, column_map: dict[str, str] | None = None) -> dd.DataFrame:
    """``u.data`` of an ML-100K folder as canonical interactions (text columns, lazy).

    Raises:
        DataError: the folder or ``u.data`` is missing.
    """
    path = _required(folder, "u.data", "MovieLens 100K")
    mapping = column_map if column_map is not None else DEFAULT_COLUMN_MAPS["movielens100k"]
    return read_csv_interactions(path, mapping, "\t", header=False, names=ML100K_COLUMNS)


def ml100k_genre_names(folder: str | Path) -> tuple[str, ...]:
    """Genre names in flag order: from ``u.genre`` (name|index) when present, else the standard 19."""
    path = Path(folder) / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    frame = pd.read_csv(path, sep="|", header=None, names=["name", "index"], encoding="latin-1", dtype=str)
    frame = frame.dropna()
    return tuple(frame.sort_values("index", key=lambda s: s.astype(int))["name"])


def genres_from_flags(flags: pd.DataFrame, names: tuple[str, ...]) -> pd.Series:
    """0/1 genre flag columns -> pipe-separated names; none (or only "unknown") -> NO_GENRES."""
    values = flags.apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    joined = ["|".join(n for n, on in zip(names, row) if on and n != "unknown") for row in values]
    return pd.Series([g or NO_GENRES for g in joined], index=flags.index, dtype="str")


def read_ml100k_items(folder: str | Path) -> pd.DataFrame:
    """``u.item`` (pipe-separated, latin-1) as item metadata: item_id, title, genres, tags ("").

    Raises:
        DataError: ``u.item`` is missing or has the wrong number of fields.
    """
    path = _required(folder, "u.item", "MovieLens 100K")
    names = ml100k_genre_names(folder)
    raw = pd.read_csv(path, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False)
    expected = len(ML100K_ITEM_FIELDS) + len(names)
    if raw.shape[1] != expected:
        raise DataError(
            f"MovieLens 100K {str(path)!r} has {raw.shape[1]} fields per line; expected {expected} "
            f"({len(ML100K_ITEM_FIELDS)} descriptive + {len(names)} genre flags)"
        )
    items = pd.DataFrame(
        {
            ITEM: raw[0],
            TITLE: raw[1],
            GENRES: genres_from_flags(raw.iloc[:, len(ML100K_ITEM_FIELDS) :], names),
        }
    )
    return canonical_items(items, None, f"MovieLens 100K {str(path)!r}")
