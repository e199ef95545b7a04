"""The training DAG against an external Dask cluster: `dask scheduler` and two `dask worker`s.

The processes are started here on loopback, each in its own process group, and stopped by PID.
The DAG runs under ``dag.test()`` with ``RECSYS_DASK_SCHEDULER`` pointing at the scheduler (what
a deployment sets); afterwards the scheduler itself says which work it ran: the data steps'
tasks and each candidate's ``fit-<model>`` task. The champion's metrics must equal a local fit
of the same candidate on the same feature set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import psutil
import pytest

from tests.integration.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"source": "synthetic", "synthetic_users": 300, "synthetic_items": 150, "interactions_per_user": 20,
         "models": ["als"], "model_params": {"als": {"factors": 8, "iterations": 5}}}


def _group_processes(groups: list[int]) -> list[psutil.Process]:
    left = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) in groups:
                left.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return left


@pytest.fixture
def external_cluster(tmp_path):
    """(scheduler address, worker names): a scheduler and two single-thread workers, stopped after."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    log = open(tmp_path / "dask.log", "w")
    common = {"stdout": log, "stderr": subprocess.STDOUT, "start_new_session": True, "env": env, "cwd": tmp_path}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", "127.0.0.1:0"], **common)]
    names = ["ext-worker-1", "ext-worker-2"]
    procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                                "--dashboard-address", "127.0.0.1:0", "--name", name], **common) for name in names]
    groups = [proc.pid for proc in procs]  # start_new_session: each PID leads its own group
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout="2s") as client:
                    if len(client.scheduler_info()["workers"]) == len(names):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "dask.log").read_text()[-3000:]
            time.sleep(0.5)
        yield address, names
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
        deadline = time.monotonic() + 10
        while _group_processes(groups) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_processes(groups) == [], "dask processes left behind"


def _ran_on(address: str) -> dict[str, dict[str, int]]:
    """Task prefix -> {state: tasks that entered it}, straight from the scheduler."""
    from distributed import Client

    with Client(address, timeout="10s") as client:
        return client.run_on_scheduler(
            lambda dask_scheduler: {name: dict(p.state_counts) for name, p in dask_scheduler.task_prefixes.items()}
        )


def test_dag_runs_data_steps_and_fits_on_the_external_cluster(airflow_db, mlflow_home, external_cluster, monkeypatch,
                                                              tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.pipeline import from_params
    from pipelines.training.run import run_training

    address, _ = external_cluster
    monkeypatch.setenv("RECSYS_DASK_SCHEDULER", address)
    monkeypatch.delenv("RECSYS_FIT_ON", raising=False)
    assert _ran_on(address) == {}

    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("recsys_training")
    when = datetime(2026, 4, 1, tzinfo=timezone.utc)
    run = dag.test(run_conf=SMALL, logical_date=when, run_after=when)
    assert run.state == "success", run.state

    ran = _ran_on(address)
    done = {name: states.get("memory", 0) for name, states in ran.items()}  # tasks that finished there
    print("tasks finished on the external scheduler, by prefix:", done)
    assert done["synthetic-interactions"] >= 1, done  # ingest
    assert done["annotate_read_partition"] >= 1 and done["keep_latest"] >= 1, done  # cleaning
    assert done["local_codes"] >= 1, done  # features: the id encoding
    assert done["fit-als"] == 1 and done["fit-popularity"] == 1, done  # one fit task per candidate
    assert not any(states.get("erred") for states in ran.values()), ran

    # The champion is the ALS fit the cluster made; a local fit of the same candidate agrees.
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("recsys", "champion")
    tracked = client.get_run(champion.run_id).data
    assert tracked.tags["recsys.model"] == "als"
    candidate = next(c for c in from_params(SMALL).candidates if c.model == "als")
    local = run_training(candidate, tracked.tags["features_uri"], str(tmp_path / "local"), "local-als",
                         dask={"fit_on": "local"})
    assert local["fit_on"] == "local"
    assert tracked.metrics["ndcg_at_10"] == pytest.approx(local["metrics"]["ndcg@10"], abs=1e-9)
    assert tracked.metrics["recall_at_10"] == pytest.approx(local["metrics"]["recall@10"], abs=1e-9)
    assert Path(tracked.tags["features_uri"]).is_relative_to(Path(os.environ["RECSYS_HOME"]))
