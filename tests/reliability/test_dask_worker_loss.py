"""A Dask worker killed in the middle of cleaning: the run finishes with the same clean rows.

Real worker processes (the project's own ``dask_client`` with ``processes=True``, forked
workers under nannies on loopback); one worker is SIGKILLed while the cleaning computation has
tasks in flight. Dask recomputes what the dead worker held; the snapshot hash, the report and
the clean rows must equal those of an undisturbed run on the same snapshot.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest

from pipelines.cleaning.run import run_cleaning
from pipelines.compute.dask_cluster import DaskConfig, dask_client
from pipelines.data.ingest import run_ingest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SOURCE = {"source": "synthetic", "n_users": 2500, "n_items": 300, "interactions_per_user": 30, "n_partitions": 16}
CLEANING = {"kcore": 20, "max_rejected_fraction": 1.0, "reference_time": 2_000_000_000}


def _kill_a_busy_worker(client, pids: dict[str, int], done: threading.Event, killed: list[int]) -> None:
    """Wait until some worker is running cleaning tasks, then SIGKILL that worker's process."""
    while not done.is_set():
        busy = [addr for addr, tasks in client.processing().items() if tasks and addr in pids]
        if busy:
            pid = pids[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.01)


def _clean_rows(result) -> pd.DataFrame:
    frame = pd.read_parquet(result["clean_uri"])
    return frame.sort_values(["user_id", "item_id"]).reset_index(drop=True)


def test_killing_a_worker_mid_cleaning_gives_the_same_result(tmp_path):
    lake = tmp_path / "lake"
    with dask_client(DaskConfig(processes=True, n_workers=2, threads_per_worker=1)) as client:
        calm_in = run_ingest(SOURCE, lake, "calm", client=client)
        calm = run_cleaning(CLEANING, calm_in["snapshot_uri"], lake, "calm", client=client)

        storm_in = run_ingest(SOURCE, lake, "storm", client=client)
        done, killed = threading.Event(), []
        pids = client.run(os.getpid)  # worker address -> process id
        killer = threading.Thread(target=_kill_a_busy_worker, args=(client, pids, done, killed), daemon=True)
        killer.start()
        try:
            storm = run_cleaning(CLEANING, storm_in["snapshot_uri"], lake, "storm", client=client)
        finally:
            done.set()
            killer.join(10)
    assert killed, "no worker was busy while cleaning ran: the test disturbed nothing"
    assert storm_in["sha256"] == calm_in["sha256"]
    counts = ("rows_in", "rows_clean", "rows_quarantined", "duplicates_dropped", "kcore_dropped", "reasons")
    assert {k: storm[k] for k in counts} == {k: calm[k] for k in counts}
    assert calm["kcore_dropped"] > 0 and calm["duplicates_dropped"] >= 0
    pd.testing.assert_frame_equal(_clean_rows(storm), _clean_rows(calm))
