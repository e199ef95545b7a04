"""The model as an MLflow pyfunc: user ids in, ranked items with scores out.

``predict`` calls the same :class:`RecommenderBundle` code that evaluation and batch scoring
use, and the ``pipelines`` package ships with the model (``code_paths``), so a registered
version loads in any environment with the pinned dependencies. The model is logged as
models-from-code (:mod:`pipelines.tracking.recommender_model`): no pickled object in the
artifacts, and loading runs only this package's code.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from pipelines.constants import ITEM, RANK, SCORE, USER

DEFAULT_K = 10
BUNDLE_ARTIFACT = "bundle"
MODEL_CODE = Path(__file__).with_name("recommender_model.py")
SEED_ITEMS = "seed_items"  # optional input column: a new user's items (list or 'a|b|c')


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around a model bundle.

    Input: a frame with a ``user_id`` column (and optionally ``k`` per row and ``seed_items``),
    or a list of ids. Params: ``k`` (default 10). Output: ``user_id, rank, item_id, score, source``, best
    first, each user's training items excluded. A user the model does not know is folded in
    from their ``seed_items`` (a list of item ids or a '|'-separated string; the seeds are not
    recommended back) and, without seeds, given the popular items; ``source`` says which
    (``model``, ``seed_items``, ``popularity``).
    """

    def load_context(self, context: Any) -> None:
        from pipelines.serving.bundle import RecommenderBundle

        self.bundle = RecommenderBundle.load(context.artifacts[BUNDLE_ARTIFACT])

    # No type hints on predict: MLflow reads them as a schema and warns on every load that
    # ``Any`` is not one; the signature below is the schema.
    def predict(self, context, model_input, params=None):
        frame = _as_frame(model_input)
        k = int((params or {}).get("k") or DEFAULT_K)
        if "k" in frame.columns and frame["k"].notna().any():
            k = int(frame["k"].dropna().iloc[0])
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        seeds = frame[SEED_ITEMS].tolist() if SEED_ITEMS in frame.columns else None
        return self.bundle.recommend(frame[USER].astype(str).tolist(), k=k, seed_items=seeds)


def _as_frame(model_input: Any) -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        if USER not in model_input.columns:
            raise ValueError(f"input needs a {USER!r} column; got {list(model_input.columns)}")
        return model_input
    if isinstance(model_input, dict):
        return pd.DataFrame(model_input)
    return pd.DataFrame({USER: list(model_input)})


def model_signature():
    """Input ``user_id`` (optional ``k`` and ``seed_items``), param ``k``, output the ranked frame.

    ``seed_items`` is declared a string column: MLflow passes object columns through unchanged,
    so a list of ids per row is accepted as well as a '|'-separated string.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema(
            [ColSpec("string", USER), ColSpec("long", "k", required=False), ColSpec("string", SEED_ITEMS, required=False)]
        ),
        outputs=Schema(
            [ColSpec("string", USER), ColSpec("long", RANK), ColSpec("string", ITEM), ColSpec("double", SCORE),
             ColSpec("string", "source")]
        ),
        params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]),
    )


def _requirements() -> list[str]:
    names = ["numpy", "pandas", "scipy", "pyarrow", "pydantic", "scikit-learn", "mlflow"]
    return [f"{name}=={version(name)}" for name in names]


def log_bundle_model(bundle_dir: str | Path, example_users: list[str], name: str = "model") -> Any:
    """Log ``bundle_dir`` as a pyfunc model (models-from-code) in the active run; returns MLflow's ModelInfo."""
    package_dir = Path(__file__).resolve().parents[1]
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(MODEL_CODE),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        code_paths=[str(package_dir)],
        signature=model_signature(),
        input_example=pd.DataFrame({USER: [str(u) for u in example_users[:3]]}),
        pip_requirements=_requirements(),
    )
