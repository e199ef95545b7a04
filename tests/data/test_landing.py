"""The landing folder: files and feedback events become batches of one schema, each landed whole and once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from pipelines.data.feedback import HIGH_WATER_FILE, high_water_mark, ingest_feedback_events
from pipelines.data.landing import land_file, land_frame, landed_files, landed_flag, landing_folder, read_landed
from pipelines.errors import DataError

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _ratings_csv(path, rows):
    pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"]).to_csv(path, index=False)
    return path


def test_a_landed_file_is_one_text_batch_that_a_training_source_reads(tmp_path, lake):
    from pipelines.data.ingest import run_ingest

    first = land_file(_ratings_csv(tmp_path / "a.csv", [(1, 10, 4.5, 100), (2, 11, 3.0, 200)]), lake)
    flag = landed_flag(lake)
    assert flag.is_file()  # the training DAG's Asset watcher consumes it
    flag.unlink()
    parquet = tmp_path / "b.parquet"
    pd.DataFrame({"user_id": [3], "item_id": [12], "rating": [5.0], "timestamp": [300]}).to_parquet(parquet)
    second = land_file(parquet, lake, signal=False)
    assert not flag.exists()
    assert first["path"] == second["path"] == str(landing_folder(lake)) and first["rows"] == 2
    files = landed_files(landing_folder(lake))
    assert [str(f) for f in files] == sorted([first["file"], second["file"]])
    for file in files:  # one schema for every batch, whatever the input's types
        assert [str(t) for t in pd.read_parquet(file).dtypes] == ["string"] * 4
    typed = read_landed(landing_folder(lake))
    assert typed.sort_values("timestamp")["user_id"].tolist() == ["1", "2", "3"]
    assert typed["timestamp"].dtype == "int64" and typed["rating"].tolist() == [4.5, 3.0, 5.0]
    # The folder is a training source: source=parquet, path=<landing folder>.
    snapshot = run_ingest({"source": first["source"], "path": first["path"]}, tmp_path / "other-lake", "run-1")
    assert snapshot["rows"] == 3


def test_a_file_with_unreadable_lines_is_refused_whole(tmp_path, lake):
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,10,4,100\n2,11,3,200,extra\n3,12,5,300\n")
    with pytest.raises(DataError, match=r"1 line\(s\) cannot be read.*data row 1.*malformed_line"):
        land_file(bad, lake)
    assert landed_files(landing_folder(lake)) == [] and not landed_flag(lake).exists()
    with pytest.raises(DataError, match="does not exist"):
        land_file(tmp_path / "missing.csv", lake)
    with pytest.raises(DataError, match=r"no column for \['rating'\]"):
        land_file(_no_rating(tmp_path), lake)
    assert landed_files(landing_folder(lake)) == []


def _no_rating(tmp_path):
    path = tmp_path / "norating.csv"
    path.write_text("userId,movieId,timestamp\n1,2,3\n")
    return path


def test_a_failed_write_leaves_neither_the_batch_nor_a_temporary_file(lake):
    from pipelines.storage import write_file

    target = landing_folder(lake) / "batch.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with write_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(landing_folder(lake).iterdir()) == []


def _events_engine(tmp_path):
    from pipelines.serving.tables import make_engine

    url = f"sqlite:///{tmp_path / 'serving.db'}"
    return url, make_engine(url)


def _post(engine, rows):
    from pipelines.serving.tables import events

    with engine.begin() as conn:
        conn.execute(events.insert(), [
            {"received_at": received, "event_time": received, "event_type": kind, "user_id": user, "item_id": item}
            for kind, user, item, received in rows
        ])


def test_clicks_are_landed_exactly_once_across_reruns_and_a_crash(tmp_path, lake):
    url, engine = _events_engine(tmp_path)
    early = NOW - timedelta(minutes=10)
    _post(engine, [("impression", "u1", "i1", early), ("click", "u1", "i1", early), ("impression", "u2", "i2", early),
                   ("click", "u2", "i3", early + timedelta(seconds=1))])
    first = ingest_feedback_events({"click_rating": 2.0}, lake, url, now=NOW)
    assert (first["rows"], first["events_read"], first["first_event_id"], first["last_event_id"]) == (2, 4, 1, 4)
    assert not landed_flag(lake).exists()  # its DAG task emits the Asset event (with the rows) itself
    landed = pd.read_parquet(first["file"])
    assert landed["user_id"].tolist() == ["u1", "u2"] and landed["rating"].tolist() == ["2.0", "2.0"]
    assert landed["timestamp"].astype(int).tolist() == [int(early.timestamp()), int(early.timestamp()) + 1]

    again = ingest_feedback_events({}, lake, url, now=NOW)  # a rerun: nothing new, nothing written
    assert (again["rows"], again["events_read"], again["file"]) == (0, 0, None)

    # A crash after the batch was renamed into place but before the state file was written:
    (landing_folder(lake) / HIGH_WATER_FILE).unlink()
    assert high_water_mark(landing_folder(lake)) == 4  # the batch's name still says where it ended
    _post(engine, [("impression", "u3", "i4", early), ("impression", "u3", "i5", early)])
    only_impressions = ingest_feedback_events({}, lake, url, now=NOW)
    assert (only_impressions["rows"], only_impressions["file"], only_impressions["last_event_id"]) == (0, None, 6)
    _post(engine, [("click", "u3", "i4", early)])
    third = ingest_feedback_events({}, lake, url, now=NOW)
    assert (third["rows"], third["first_event_id"], third["last_event_id"]) == (1, 7, 7)  # the impressions are not re-read
    every_click = read_landed(landing_folder(lake))
    assert sorted(zip(every_click["user_id"], every_click["item_id"])) == [("u1", "i1"), ("u2", "i3"), ("u3", "i4")]
    engine.dispose()


def test_events_newer_than_the_settle_time_wait_for_the_next_run(tmp_path, lake):
    url, engine = _events_engine(tmp_path)
    _post(engine, [("click", "u1", "i1", NOW - timedelta(minutes=5)), ("click", "u2", "i2", NOW - timedelta(seconds=1)),
                   ("click", "u3", "i3", NOW - timedelta(minutes=5))])  # a lower id may still commit before id 2
    first = ingest_feedback_events({"settle_seconds": 30}, lake, url, now=NOW)
    assert (first["rows"], first["last_event_id"]) == (1, 1)
    later = ingest_feedback_events({"settle_seconds": 30}, lake, url, now=NOW + timedelta(minutes=1))
    assert (later["rows"], later["first_event_id"], later["last_event_id"]) == (2, 2, 3)
    engine.dispose()


def test_landing_nothing_is_refused(lake):
    with pytest.raises(DataError, match="no row"):
        land_frame(pd.DataFrame(columns=["user_id", "item_id", "rating", "timestamp"]), lake)
