"""CSV and Parquet sources: column mapping, exact source rows, clear errors for missing columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_fixtures import write_csv

from pipelines.data.files import add_source_row, read_csv_interactions, read_items_file, read_parquet_interactions
from pipelines.data.ingest import run_ingest
from pipelines.errors import DataError

CANONICAL = ["user_id", "item_id", "rating", "timestamp", "source_row"]


def test_csv_column_map_renames_and_keeps_text(tmp_path):
    path = write_csv(
        tmp_path / "events.csv",
        """
        uid,product,stars,when,extra
        7,a1,4.5,964982703,x
        8,a2,four,2020-01-01,y
        """,
    )
    ddf = read_csv_interactions(path, {"uid": "user_id", "product": "item_id", "stars": "rating", "when": "timestamp"})
    frame = ddf.compute()
    assert list(frame.columns) == [*CANONICAL[:4], "parse_error", "source_row"]
    assert frame["rating"].tolist() == ["4.5", "four"]  # bad values survive to cleaning
    assert frame["source_row"].tolist() == [0, 1]


def test_csv_aliases_are_detected_without_a_map_and_delimiter_is_used(tmp_path):
    path = write_csv(
        tmp_path / "events.tsv",
        """
        userId\tmovieId\trating\ttimestamp
        1\t10\t4.0\t964982703
        """,
    )
    frame = read_csv_interactions(path, None, "\t").compute()
    assert frame.iloc[0][["user_id", "item_id", "rating"]].tolist() == ["1", "10", "4.0"]


def test_missing_mapped_column_names_file_missing_and_available(tmp_path):
    path = write_csv(tmp_path / "events.csv", "u,i,r,t\n1,2,3,4\n")
    with pytest.raises(DataError) as info:
        read_csv_interactions(path, {"user": "user_id", "i": "item_id", "r": "rating", "t": "timestamp"})
    message = str(info.value)
    assert str(path) in message and "['user']" in message and "['u', 'i', 'r', 't']" in message


def test_missing_canonical_column_is_reported_with_aliases(tmp_path):
    path = write_csv(tmp_path / "events.csv", "user_id,item_id,rating\n1,2,3\n")
    expected = r"no column for \['timestamp'\].*available columns: \['user_id', 'item_id', 'rating'\]"
    with pytest.raises(DataError, match=expected):
        read_csv_interactions(path)


def test_malformed_line_becomes_a_row_with_its_parse_error(tmp_path, lake):
    path = write_csv(tmp_path / "events.csv", "user_id,item_id,rating,timestamp\n1,2,3,4\n1,2,3,4,5\n7,NA,1,2\n")
    result = run_ingest({"source": "csv", "path": str(path)}, lake, "malformed")
    frame = pd.read_parquet(result["snapshot_uri"])
    assert result["rows"] == 3 and frame["source_row"].tolist() == [0, 1, 2]
    assert frame["parse_error"].tolist()[1] == "malformed_line" and frame["parse_error"].isna().tolist() == [True, False, True]
    assert frame["item_id"].tolist()[2] == "NA"  # an id, not a missing value


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_csv_interactions(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no file ending in"):
        read_parquet_interactions(tmp_path / "empty")


def test_source_row_is_exact_across_files_and_partitions(tmp_path):
    folder = tmp_path / "events"
    for index, rows in enumerate([3, 1, 4]):
        lines = "".join(f"u{index},i{r},1,{r}\n" for r in range(rows))
        write_csv(folder / f"part{index}.csv", "user_id,item_id,rating,timestamp\n" + lines)
    frame = read_csv_interactions(folder).compute()
    assert frame["source_row"].tolist() == list(range(8))
    assert frame["user_id"].tolist() == ["u0"] * 3 + ["u1"] + ["u2"] * 4

    import dask.dataframe as dd

    many = dd.from_pandas(pd.DataFrame({"x": np.arange(103)}), npartitions=7)
    assert add_source_row(many).compute()["source_row"].tolist() == list(range(103))


def test_parquet_keeps_types_and_maps_columns(tmp_path):
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {"customer": [1, 2], "sku": ["a", "b"], "score": [4.0, 2.5], "ts": np.array([10, 20], dtype="int64")}
    ).to_parquet(path)
    frame = read_parquet_interactions(
        path, {"customer": "user_id", "sku": "item_id", "score": "rating", "ts": "timestamp"}
    ).compute()
    assert list(frame.columns) == CANONICAL
    assert frame["rating"].dtype == np.float64 and frame["source_row"].tolist() == [0, 1]


def test_items_file_is_mapped_and_filled(tmp_path):
    path = write_csv(tmp_path / "movies.csv", "movieId,title\n10,Heat (1995)\n11,\n")
    items = read_items_file(path, {"userId": "user_id", "movieId": "item_id"})
    assert list(items.columns) == ["item_id", "title", "genres", "tags"]
    assert items["item_id"].tolist() == ["10", "11"]
    assert items["genres"].tolist() == ["", ""]
    with pytest.raises(DataError, match="items file .* does not exist"):
        read_items_file(tmp_path / "none.csv")


def test_ingest_csv_with_items_path(tmp_path: Path, lake: Path):
    events = write_csv(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n2,11,3.0,964982704\n")
    movies = write_csv(tmp_path / "m.csv", "movieId,title,genres\n10,Heat (1995),Crime|Thriller\n")
    result = run_ingest({"source": "csv", "path": str(events), "items_path": str(movies)}, lake, "csv-run")
    assert result["rows"] == 2
    items = pd.read_parquet(result["items_uri"])
    assert items.iloc[0].tolist() == ["10", "Heat (1995)", "Crime|Thriller", ""]
