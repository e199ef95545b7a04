"""Atomic, owned partitions: published whole with a manifest, never mixed between live runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipelines.errors import DataError, PartitionBusyError
from pipelines.storage import MANIFEST, require_partition, write_partition


def _publish(target: Path, text: str) -> None:
    with write_partition(target) as tmp:
        (tmp / "data.txt").write_text(text)
        (tmp / MANIFEST).write_text("{}")


def test_a_partition_appears_whole_and_replaces_the_earlier_one(tmp_path):
    target = tmp_path / "clean" / "run"
    _publish(target, "first")
    _publish(target, "second")
    assert (target / "data.txt").read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["run"]  # no temporary folder, no lock
    assert require_partition(target / "data.txt") == target  # a file or sub-folder finds its partition


def test_a_failed_write_leaves_the_earlier_partition_untouched(tmp_path):
    target = tmp_path / "run"
    _publish(target, "good")
    with pytest.raises(ZeroDivisionError):
        with write_partition(target) as tmp:
            (tmp / "data.txt").write_text("half")
            1 / 0
    with pytest.raises(RuntimeError, match="wrote no manifest.json"):
        with write_partition(target) as tmp:
            (tmp / "data.txt").write_text("no manifest")
    assert (target / "data.txt").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_readers_refuse_a_folder_without_its_manifest(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match=r"'.*half' has no manifest.json: it is incomplete .* re-run the step"):
        require_partition(tmp_path / "half")
    with pytest.raises(DataError, match="does not exist"):
        require_partition(tmp_path / "nowhere")


def test_a_live_writer_holds_the_partition_and_a_dead_one_does_not(tmp_path):
    target = tmp_path / "raw" / "run"
    target.parent.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock = target.with_name("run.lock")
        lock.write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename}))
        with pytest.raises(PartitionBusyError, match=rf"being written by process {holder.pid} .*--run-name"):
            _publish(target, "mine")
        assert not target.exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died (a killed task): its lock and half-written folder are taken over.
    (target.parent / ".run.tmp-1-dead").mkdir()
    _publish(target, "retry")
    assert (target / "data.txt").read_text() == "retry"
    assert sorted(p.name for p in target.parent.iterdir()) == ["run"]
