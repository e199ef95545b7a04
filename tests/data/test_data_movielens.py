"""MovieLens folders: the real ml-latest-small (skipped when absent) and tiny ML-100K fixtures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.data.ingest import run_ingest
from pipelines.data.movielens import NO_GENRES, aggregate_tags, read_ml100k_items, read_ml100k_ratings
from pipelines.errors import DataError


def test_ml_latest_small_snapshot(movielens_dir: Path, lake: Path):
    result = run_ingest({"source": "movielens", "path": str(movielens_dir)}, lake, "ml-latest")
    assert result["rows"] == 100_836
    frame = pd.read_parquet(result["snapshot_uri"])
    assert frame["user_id"].nunique() == 610
    assert frame["source_row"].tolist() == list(range(100_836))
    assert frame.iloc[0][["user_id", "item_id", "rating", "timestamp"]].tolist() == ["1", "1", "4.0", "964982703"]
    items = pd.read_parquet(result["items_uri"])
    assert len(items) == 9_742
    toy_story = items.set_index("item_id").loc["1"]
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["genres"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert "pixar" in toy_story["tags"].split()

    from pipelines.cleaning.run import run_cleaning

    cleaned = run_cleaning({}, result["snapshot_uri"], lake, "ml-latest")
    assert (cleaned["rows_clean"], cleaned["rows_quarantined"], cleaned["duplicates_dropped"]) == (100_836, 0, 0)


def test_tags_are_joined_per_movie_in_file_order():
    tags = pd.DataFrame({"movieId": ["1", "2", "1", "1"], "tag": ["pixar", "board game", " fun ", ""]})
    joined = aggregate_tags(tags).set_index("movieId")["tags"]
    assert joined.to_dict() == {"1": "pixar fun", "2": "board game"}


@pytest.fixture
def ml100k(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    flags = {
        "242": [0, 0, 0, 0, 0, 1, 0, 0, 1] + [0] * 10,  # Comedy, Drama
        "302": [0] * 16 + [1, 0, 0],  # Thriller
        "377": [1] + [0] * 18,  # unknown only
    }
    titles = {"242": "Kolya (1996)", "302": "L.A. Confidential (1997)", "377": "Café Society (1995)"}
    lines = [
        "|".join([movie, titles[movie], "24-Jan-1997", "", "http://us.imdb.com/x", *map(str, flags[movie])])
        for movie in flags
    ]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return folder


def test_ml100k_ratings_and_items(ml100k: Path):
    frame = read_ml100k_ratings(ml100k).compute()
    assert frame[["user_id", "item_id", "rating", "timestamp"]].iloc[1].tolist() == ["186", "302", "3", "891717742"]
    assert frame["source_row"].tolist() == [0, 1, 2]
    items = read_ml100k_items(ml100k).set_index("item_id")
    assert items.loc["242", "genres"] == "Comedy|Drama"
    assert items.loc["302", "genres"] == "Thriller"
    assert items.loc["377", "genres"] == NO_GENRES
    assert items.loc["377", "title"] == "Café Society (1995)"  # latin-1 decoded


def test_ml100k_genre_names_come_from_u_genre(ml100k: Path):
    names = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
             "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
             "War", "Noir-Western"]  # fmt: skip
    (ml100k / "u.genre").write_text("".join(f"{name}|{i}\n" for i, name in enumerate(names)) + "\n")
    (ml100k / "u.item").write_text("9|X (1990)|01-Jan-1990||url|" + "|".join(["0"] * 18 + ["1"]) + "\n")
    assert read_ml100k_items(ml100k).iloc[0]["genres"] == "Noir-Western"


def test_ml100k_ingest_writes_items(ml100k: Path, lake: Path):
    result = run_ingest({"source": "movielens100k", "path": str(ml100k)}, lake, "ml100k")
    assert result["rows"] == 3
    assert len(pd.read_parquet(result["items_uri"])) == 3


def test_missing_movielens_files_are_named(tmp_path: Path):
    (tmp_path / "other.csv").write_text("x\n")
    with pytest.raises(DataError, match=r"has no 'u.data'; it holds \['other.csv'\]"):
        read_ml100k_ratings(tmp_path)
    with pytest.raises(DataError, match="has no 'ratings.csv'"):
        run_ingest({"source": "movielens", "path": str(tmp_path)}, tmp_path / "lake", "missing")
    (tmp_path / "u.item").write_text("1|Only two fields\n")
    with pytest.raises(DataError, match="has 2 fields per line; expected 24"):
        read_ml100k_items(tmp_path)
