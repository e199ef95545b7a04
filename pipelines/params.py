"""The trigger-form parameters of the training DAG, as plain JSON-schema dicts.

The DAG file wraps each entry in ``airflow.sdk.Param``; :func:`pipelines.pipeline.from_params`
turns the submitted values into the step configs, which validate them again, so the form,
the REST API and the CLI refuse the same bad input. Kept free of heavy imports: the DAG
processor reads this module on every parse.
"""

from __future__ import annotations

from typing import Any

from pipelines.models import model_names

SOURCES = ["synthetic", "movielens", "movielens100k", "csv", "parquet", "sql"]
SPLITS = ["stratified", "random", "temporal_last_n", "temporal_cutoff"]
WEIGHTINGS = ["auto", "none", "linear", "log", "bm25"]
METRICS = ["ndcg", "map", "precision", "recall", "hit_rate"]


def param_specs() -> dict[str, dict[str, Any]]:
    """name -> {"default": value, **JSON-schema keywords for airflow.sdk.Param}."""
    models = model_names()
    return {
        # -- most used: outside sections so they show first in the form -------------
        "source": {
            "default": "synthetic", "type": "string", "enum": SOURCES, "title": "Data source",
            "description": "Where interactions come from. 'synthetic' generates seeded data with planted tastes.",
        },
        "path": {
            "default": "", "type": "string", "title": "Source path",
            "description": "File or folder for csv, parquet and movielens sources (absolute path).",
        },
        "models": {
            "default": ["als"], "type": "array", "items": {"type": "string", "enum": models},
            "examples": models, "minItems": 1, "uniqueItems": True, "title": "Models to train",
            "description": "Candidates trained on the same split; popularity is always added as the baseline.",
        },
        "k": {"default": 10, "type": "integer", "minimum": 1, "maximum": 1000, "title": "K (cut-off of the metrics)"},
        "metric": {
            "default": "ndcg", "type": "string", "enum": METRICS, "title": "Promotion metric",
            "description": "Compared at K between the candidate and the current champion.",
        },
        "promotion_margin": {
            "default": 0.0, "type": "number", "minimum": 0.0, "maximum": 1.0, "title": "Promotion margin",
            "description": "Absolute improvement over the champion (or popularity) needed to take the alias.",
        },
        "require_approval": {
            "default": False, "type": "boolean", "title": "Require approval before promotion",
            "description": "A better model waits for a person to approve its model card before it takes the champion alias.",
        },
        "use_gpu": {"default": False, "type": "boolean", "title": "Use the GPU (falls back to CPU when absent)"},
        # -- model hyperparameters -----------------------------------------------
        "factors": {"default": 64, "type": "integer", "minimum": 1, "maximum": 1024, "title": "Latent factors", "section": "Model"},
        "iterations": {"default": 15, "type": "integer", "minimum": 1, "maximum": 500, "title": "Iterations", "section": "Model"},
        "regularization": {"default": 10.0, "type": "number", "minimum": 0.0, "maximum": 1000.0, "title": "L2 regularization", "section": "Model"},
        "weighting": {
            "default": "auto", "type": "string", "enum": WEIGHTINGS, "title": "Confidence weighting", "section": "Model",
            "description": "auto: each model's preferred weighting (tuned on MovieLens); else one scheme for all models.",
        },
        "alpha": {"default": 1.0, "type": "number", "minimum": 0.0, "maximum": 10000.0, "title": "Weighting alpha", "section": "Model"},
        "seed": {"default": 42, "type": "integer", "minimum": 0, "maximum": 2**31 - 1, "title": "Random seed", "section": "Model"},
        # -- tuning ----------------------------------------------------------------
        "tune": {
            "default": False, "type": "boolean", "title": "Tune hyperparameters (Optuna)", "section": "Tuning",
            "description": "Each candidate is tuned on a validation split carved from train, then refit and tested once.",
        },
        "n_trials": {"default": 20, "type": "integer", "minimum": 1, "maximum": 500, "title": "Trials per model", "section": "Tuning"},
        # -- data ------------------------------------------------------------------
        "split": {"default": "stratified", "type": "string", "enum": SPLITS, "title": "Split", "section": "Data"},
        "test_fraction": {"default": 0.25, "type": "number", "exclusiveMinimum": 0.0, "exclusiveMaximum": 1.0, "title": "Test fraction", "section": "Data"},
        "synthetic_users": {"default": 1000, "type": "integer", "minimum": 10, "maximum": 100_000_000, "title": "Synthetic users", "section": "Data"},
        "synthetic_items": {"default": 500, "type": "integer", "minimum": 10, "maximum": 10_000_000, "title": "Synthetic items", "section": "Data"},
        "interactions_per_user": {"default": 40, "type": "integer", "minimum": 1, "maximum": 10_000, "title": "Synthetic interactions per user", "section": "Data"},
        "sql_url": {"default": "", "type": "string", "title": "SQLAlchemy URL (sql source)", "section": "Data"},
        "sql_table": {"default": "", "type": "string", "title": "SQL table (or give a query)", "section": "Data"},
        "sql_query": {"default": "", "type": "string", "title": "SQL query", "section": "Data"},
        "max_rejected_fraction": {"default": 0.05, "type": "number", "minimum": 0.0, "maximum": 1.0, "title": "Max rejected fraction", "section": "Data"},
        "kcore": {"default": 0, "type": "integer", "minimum": 0, "maximum": 1000, "title": "k-core filter (0 = off)", "section": "Data"},
    }


def defaults() -> dict[str, Any]:
    """The default value of every parameter."""
    return {name: spec["default"] for name, spec in param_specs().items()}
