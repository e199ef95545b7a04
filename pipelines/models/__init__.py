"""Model families behind one interface (:class:`pipelines.models.base.Recommender`).

Families are registered by name and imported lazily, so ``import pipelines.models`` stays
cheap and a model that needs torch costs nothing until it is asked for.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import ConfigError, UnknownModelError

if TYPE_CHECKING:
    from pipelines.models.base import Recommender

# name -> "module:Class". Add a family here and it is available to the DAG, CLI and tests.
MODEL_FAMILIES: dict[str, str] = {
    "popularity": "pipelines.models.popularity:PopularityRecommender",
    "als": "pipelines.models.als:AlsRecommender",
    "content": "pipelines.models.content:ContentRecommender",
    "hybrid": "pipelines.models.hybrid:HybridRecommender",
    "item2vec": "pipelines.models.item2vec:Item2VecRecommender",
    "sequence": "pipelines.models.deep.sequence:SequenceRecommender",
    "ease": "pipelines.models.ease:EaseRecommender",
    "svd": "pipelines.models.svd:SvdRecommender",
    "nmf": "pipelines.models.nmf:NmfRecommender",
    "itemknn": "pipelines.models.itemknn:ItemKnnRecommender",
    "bpr": "pipelines.models.bpr:BprRecommender",
    "ncf": "pipelines.models.deep.ncf:NcfRecommender",
    "multvae": "pipelines.models.deep.multvae:MultVaeRecommender",
    "blend": "pipelines.models.blend:BlendRecommender",
}


def model_names() -> list[str]:
    """Every registered model family name, sorted."""
    return sorted(MODEL_FAMILIES)


def model_class(name: str) -> type["Recommender"]:
    """The class registered under ``name``; raises UnknownModelError naming the allowed values."""
    try:
        target = MODEL_FAMILIES[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; allowed: {', '.join(model_names())}"
        ) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_model(name: str, params: dict[str, Any] | None = None) -> "Recommender":
    """Build an unfitted model from its name and hyperparameters (validated by its config)."""
    from pydantic import ValidationError

    cls = model_class(name)
    try:
        config = cls.config_class(**(params or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid parameters for model {name!r}: {problems}") from None
    return cls(config)


def load_model(path: str | Path) -> "Recommender":
    """Load any saved model; the family is read from its ``model.json``."""
    meta = json.loads((Path(path) / "model.json").read_text())
    return model_class(meta["name"]).load(path)
