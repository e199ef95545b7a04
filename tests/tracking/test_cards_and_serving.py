"""Registered versions carry a model card, hold no pickle, and serve under ``mlflow models serve``.

One small pipeline runs twice (same data, so the second version ties and stays challenger):
the second version's card compares it with champion v1 on the same held-out data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipelines.data.config import IngestConfig
from pipelines.pipeline import PipelineConfig, run_pipeline
from pipelines.training.config import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory, _mlflow_template_db):
    """Two pipeline runs registered in a fresh tracking database; yields (uri, first run, second run)."""
    import mlflow.tracking.fluent as fluent

    root = tmp_path_factory.mktemp("cards")
    shutil.copy(_mlflow_template_db, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv("RECSYS_ARTIFACT_ROOT", str(root / "artifacts"))
    patch.setenv("RECSYS_HOME", str(root / "home"))
    patch.setattr(fluent, "_active_experiment_id", None, raising=False)
    mlflow.set_tracking_uri(uri)
    config = PipelineConfig(
        ingest=IngestConfig(source="synthetic", n_users=200, n_items=100, interactions_per_user=20),
        candidates=(TrainConfig(model="itemknn", params={"neighbours": 50}),),  # clearly above popularity here
    )
    first = run_pipeline(config, "cards-1", out_root=str(root / "lake"), register=True, tracking_uri=uri)
    second = run_pipeline(config, "cards-2", out_root=str(root / "lake"), register=True, tracking_uri=uri)
    yield uri, first, second
    patch.undo()


def test_the_card_tells_a_reviewer_what_the_version_is(registry):
    uri, first, second = registry
    client = mlflow.MlflowClient(uri)
    assert first["promotion"]["status"] == "promoted" and second["promotion"]["status"] == "kept_as_challenger"
    v1, v2 = first["promotion"]["version"], second["promotion"]["version"]
    mv = client.get_model_version("recsys", v2)
    card, tags = mv.description, mv.tags
    lineage = {"sha": second["ingest"]["sha256"], "rows": second["ingest"]["rows"]}

    assert card.startswith("**Kept as @challenger**")
    assert lineage["sha"] in card and f"rows in {lineage['rows']}" in card and "rows quarantined" in card
    assert "split: " in card and "stratified" in card
    assert "family: `itemknn`" in card and "neighbours=50" in card
    assert "fit in " in card and "cpu" in card
    assert f"| metric | this version | champion v{v1} |" in card and "| ndcg@10 **\u2190** |" in card
    run_id = mv.run_id
    assert f"runs:/{run_id}/plots/loss_curve.png" in card and f"/runs/{run_id}/artifacts/plots/loss_curve.png" in card

    assert tags["card.family"] == "itemknn" and tags["card.baseline"] == f"champion v{v1}"
    assert tags["card.data.snapshot_sha256"] == lineage["sha"] and tags["card.hp.neighbours"] == "50"
    assert tags["card.hardware.cores"].isdigit()
    # The champion, re-evaluated on the same held-out data, scores what it scored when it trained.
    champion_at_training = float(client.get_model_version("recsys", v1).tags["card.metric.ndcg_at_10"])
    assert float(tags["card.baseline.ndcg_at_10"]) == pytest.approx(champion_at_training, abs=1e-6)
    found = client.search_model_versions("name = 'recsys' and tags.`card.family` = 'itemknn'")
    assert {str(m.version) for m in found} == {v1, v2}


def test_the_registered_model_is_code_and_data_not_a_pickle(registry, tmp_path):
    uri, first, _ = registry
    version = first["promotion"]["version"]
    local = Path(mlflow.artifacts.download_artifacts(f"models:/recsys/{version}", dst_path=str(tmp_path),
                                                     tracking_uri=uri))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], sorted(files)
    assert "recommender_model.py" in files
    assert any(f.startswith("artifacts/") and f.endswith("/bundle.json") for f in files), sorted(files)
    loaded = mlflow.pyfunc.load_model(str(local))
    assert type(loaded.unwrap_python_model()).__name__ == "RecommenderPyfunc"
    recs = loaded.predict(pd.DataFrame({"user_id": ["0", "1"]}), params={"k": 3})
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score", "source"] and len(recs) == 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_mlflow_models_serve_answers_from_the_registered_champion(registry, tmp_path):
    import requests

    uri, first, _ = registry
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", "models:/recsys@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        answer = requests.post(f"http://127.0.0.1:{port}/invocations",
                               json={"dataframe_split": {"columns": ["user_id"], "data": [["0"], ["1"]]},
                                     "params": {"k": 4}}, timeout=30)
        assert answer.status_code == 200, answer.text[:1000]
        rows = answer.json()["predictions"]
        assert len(rows) == 8 and {r["user_id"] for r in rows} == {"0", "1"}
        assert all(isinstance(r["item_id"], str) and r["score"] is not None for r in rows)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
