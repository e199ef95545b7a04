"""Shared by the serving tests: real models trained on planted data, logged and registered in MLflow.

(No tests here; the name keeps it among the serving API test files.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from tests.conftest import planted_interactions

N_USERS, N_ITEMS = 200, 80


def planted_matrix(seed: int = 0) -> sp.csr_matrix:
    rows = planted_interactions(n_users=N_USERS, n_items=N_ITEMS, per_user=12, seed=seed)
    users, items = zip(*rows)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (users, items)), shape=(N_USERS, N_ITEMS))


def trained_bundle(family: str = "als", seed: int = 0, **params):
    """A fitted bundle with users u0.. and items i0.. (raw ids are strings, as after ingest)."""
    from pipelines.models import create_model
    from pipelines.serving.bundle import RecommenderBundle

    defaults = {"als": {"factors": 8, "iterations": 8, "regularization": 1.0, "seed": seed},
                "svd": {"factors": 8, "seed": seed}}.get(family, {})
    train = planted_matrix(seed)
    model = create_model(family, {**defaults, **params}).fit(train)
    return RecommenderBundle(model=model, user_ids=[f"u{u}" for u in range(N_USERS)],
                             item_ids=[f"i{i}" for i in range(N_ITEMS)], seen=train)


def register_bundle(bundle, folder: Path, name: str, alias: str | None = "champion") -> str:
    """Log ``bundle`` as the platform's pyfunc, register it under ``name`` and (optionally) point ``alias`` at it."""
    import mlflow

    from pipelines.tracking.pyfunc import log_bundle_model
    from pipelines.tracking.setup import configure_mlflow

    _, experiment_id = configure_mlflow()
    bundle_dir = bundle.save(folder)
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_bundle_model(bundle_dir, example_users=list(bundle.user_ids[:3]))
    version = str(mlflow.register_model(info.model_uri, name).version)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    return version


class Registry:
    """A throwaway MLflow tracking store with two registered versions of one model."""

    def __init__(self, root: Path, template_db: Path | None = None, name: str = "recsys-test") -> None:
        import os
        import shutil

        import mlflow
        import mlflow.tracking.fluent as fluent

        self.root, self.name = root, name
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        if template_db is not None:  # an already migrated database: creating one costs seconds
            shutil.copy(template_db, root / "mlflow.db")
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = self.uri
        try:
            self.bundles = {"als": trained_bundle("als"), "itemknn": trained_bundle("itemknn")}
            self.v1 = register_bundle(self.bundles["als"], root / "b-als", name)
            self.v2 = register_bundle(self.bundles["itemknn"], root / "b-itemknn", name, alias=None)
        finally:  # leave the session's tracking store as other tests expect it
            if previous is not None:
                os.environ["MLFLOW_TRACKING_URI"] = previous
                mlflow.set_tracking_uri(previous)
            fluent._active_experiment_id = None

    def set_alias(self, alias: str, version: str) -> None:
        import mlflow

        mlflow.MlflowClient(self.uri).set_registered_model_alias(self.name, alias, version)


class LiveServer:
    """The API app under a real uvicorn server on a free loopback port, in a background thread."""

    def __init__(self, app) -> None:
        import socket
        import threading

        import uvicorn

        self.app = app
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> dict:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{self.url}/ready", timeout=5)
                if answer.status_code == 200:
                    return answer.json()
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.url} not ready after {timeout} s")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self._sock.close()


_SHARED: dict[str, Registry] = {}


def shared_registry(tmp_path_factory, template_db: Path) -> Registry:
    """One Registry per test session (registering costs seconds); tests move their own aliases only."""
    if "registry" not in _SHARED:
        _SHARED["registry"] = Registry(tmp_path_factory.mktemp("registry"), template_db)
    return _SHARED["registry"]
