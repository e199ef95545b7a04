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
                "itemknn": {}, "popularity": {}}[family]
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
