"""How the data steps compute on Dask: partitions sized from the workers' memory, and a worker
stuck at its memory limit failing the step with the limit named instead of hanging it."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from pipelines.cleaning.run import run_cleaning
from pipelines.compute.dask_cluster import dask_client
from pipelines.data import scheduling
from pipelines.data.ingest import run_ingest
from pipelines.errors import ConfigError, WorkerMemoryError

SYNTHETIC = {"source": "synthetic", "n_users": 6000, "n_items": 800, "interactions_per_user": 40, "seed": 3}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A 240k-row synthetic snapshot, written in row groups of ROW_GROUP_ROWS."""
    import pyarrow.parquet as pq

    lake = tmp_path_factory.mktemp("lake")
    ingested = run_ingest(SYNTHETIC, lake, "snap")
    files = sorted((lake / "raw" / "snap" / "interactions").glob("*.parquet"))
    groups = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
    assert groups == sum(-(-pq.ParquetFile(f).metadata.num_rows // scheduling.ROW_GROUP_ROWS) for f in files) > len(files)
    return lake, ingested


def _clean_rows(result) -> pd.DataFrame:
    frame = pd.read_parquet(result["clean_uri"])
    return frame.sort_values(["user_id", "item_id"]).reset_index(drop=True)


def test_smaller_partitions_give_the_same_clean_output(snapshot, tmp_path, monkeypatch):
    lake, ingested = snapshot
    whole = run_cleaning({}, ingested["snapshot_uri"], tmp_path / "a", "k")
    monkeypatch.setattr(scheduling, "rows_per_partition", lambda client=None: scheduling.ROW_GROUP_ROWS)
    assert scheduling.read_lake(sorted((lake / "raw" / "snap" / "interactions").glob("*.parquet"))).npartitions == 3
    split = run_cleaning({}, ingested["snapshot_uri"], tmp_path / "b", "k")
    counts = ("rows_in", "rows_clean", "rows_quarantined", "duplicates_dropped", "kcore_dropped")
    assert {k: whole[k] for k in counts} == {k: split[k] for k in counts}
    pd.testing.assert_frame_equal(_clean_rows(whole), _clean_rows(split))


def test_partition_rows_follow_the_workers_memory():
    assert scheduling.rows_per_partition() == scheduling.MAX_PARTITION_ROWS  # no cluster: no limit to follow
    with dask_client({"memory_limit": "64GiB", "threads_per_worker": 2}) as client:
        assert scheduling.rows_per_partition(client) == scheduling.MAX_PARTITION_ROWS
    with dask_client({"memory_limit": "100MiB", "threads_per_worker": 2}) as client:  # below what the process uses
        assert scheduling.rows_per_partition(client) == scheduling.ROW_GROUP_ROWS
    with dask_client({"memory_limit": "64GiB", "threads_per_worker": 1}) as client:
        used = next(iter(client.scheduler_info()["workers"].values()))["metrics"]["memory"]
    limit = int((used + 600 * 2**20) / 0.8)  # ~600 MiB to spare below the pause threshold, one thread
    with dask_client({"memory_limit": str(limit), "threads_per_worker": 1}) as client:
        rows = scheduling.rows_per_partition(client)
    assert scheduling.ROW_GROUP_ROWS < rows < scheduling.MAX_PARTITION_ROWS
    assert rows == pytest.approx(600 * 2**20 / scheduling.WORKING_BYTES_PER_ROW, rel=0.25)


def test_a_worker_stuck_at_its_memory_limit_fails_the_step_and_names_the_limit(snapshot, tmp_path):
    """A limit below what the worker process already holds: the worker pauses and would wait forever."""
    _, ingested = snapshot
    started = time.monotonic()
    with dask_client({"memory_limit": "100MiB", "memory_stall_timeout": 3}) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                w.get("status") == "paused" for w in client.scheduler_info()["workers"].values()):
            time.sleep(0.2)
        with pytest.raises(WorkerMemoryError) as caught:
            run_cleaning({}, ingested["snapshot_uri"], tmp_path, "stuck")
        assert not client.who_has(), "the cancelled computation left results on the cluster"
    message = str(caught.value)
    assert "paused at their memory limit" in message and "of limit 100.00 MiB" in message
    assert "DaskConfig.memory_limit" in message and "dask worker --memory-limit" in message
    assert isinstance(caught.value, ConfigError)  # a retry would stall again: the task fails fast
    assert time.monotonic() - started < 60
    assert not (tmp_path / "clean" / "stuck").exists()  # nothing half-written is published
