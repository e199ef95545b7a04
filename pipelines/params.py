"""The trigger-form parameters of the training DAG, as plain JSON-schema dicts.

The DAG file wraps each entry in ``airflow.sdk.Param``, the CLI generates its options from the
same entries (:mod:`pipelines.cli.train`), and :func:`pipelines.pipeline.from_params` turns the
submitted values into the step configs, which validate them again, so the form, the REST API
and the CLI refuse the same bad input.

Model hyperparameters are not flat knobs: ``model_params`` holds, per family, only what a run
changes (``{"ease": {"regularization": 300}}``); everything else is the family's own default,
defined once, in its pydantic config. The form needs each family's JSON schema, but importing
the families costs seconds (NumPy, SciPy, pandas) and the DAG processor reads this module on
every parse, so the schemas are generated from the configs into ``model_params_schema.json``
(``python -m pipelines.params`` rewrites it; a test fails while it is stale).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from pipelines.errors import ConfigError
from pipelines.models import model_names

SOURCES = ["synthetic", "movielens", "movielens100k", "csv", "parquet", "sql"]
SPLITS = ["stratified", "random", "temporal_last_n", "temporal_cutoff"]
WEIGHTINGS = ["none", "linear", "log", "bm25"]
METRICS = ["ndcg", "map", "precision", "recall", "hit_rate"]

#: Generated from the families' configs by :func:`build_family_catalog`; never edited by hand.
FAMILY_CATALOG_FILE = Path(__file__).with_name("model_params_schema.json")

#: Key of a family's ``model_params`` entry that sets the confidence weighting of its training
#: matrix (:class:`pipelines.features.weighting.WeightingConfig` fields). Per family, not a shared
#: knob: families were tuned with different schemes (itemknn on BM25, the others binary), so one
#: scheme and one ``alpha`` for every selected family is the flatness ``model_params`` removes.
#: Unset, a family uses its ``preferred_weighting``; fields given replace only those fields of it.
WEIGHTING_KEY = "weighting"

#: Run parameters that were flat model knobs; refused with a pointer to ``model_params``.
REMOVED_PARAMS = ("factors", "iterations", "regularization", "weighting", "alpha")

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
            "default": None, "type": ["null", "string"], "title": "Source path",
            "description": "Needed by csv, parquet, movielens and movielens100k: an absolute file or folder path "
                           "on the workers. Leave empty for synthetic and sql.",
        },
        "models": {
            "default": ["als"], "type": "array", "items": {"type": "string", "enum": models},
            "examples": models, "minItems": 1, "uniqueItems": True, "title": "Models to train",
            "description": "Candidates trained on the same split; popularity is always added as the baseline. "
                           "Each runs with its own defaults, listed under 'Model' with what to change there.",
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
        "use_gpu": {
            "default": None, "type": ["null", "boolean"], "title": "Use the GPU",
            "description": "On: every family that can use a GPU asks for one (CPU with a warning when absent). "
                           "Off: CPU for all. Unset: each family's own default device.",
        },
        "trigger_reason": {
            "default": None, "type": ["null", "string"], "maxLength": 500, "title": "Why this run",
            "description": "Recorded on the run's MLflow parent run (tag trigger_reason) and in its plan. The "
                           "monitoring DAG fills it when it asks for a retrain; unset: the kind of trigger "
                           "(manual, schedule, new interactions) is recorded.",
        },
        # -- model hyperparameters: per family, overrides only ------------------------
        "model_params": model_params_spec(),
        "seed": {
            "default": None, "type": ["null", "integer"], "minimum": 0, "maximum": 2**31 - 1, "title": "Random seed",
            "section": "Model",
            "description": "Seeds the synthetic data, the split, tuning and every model (a family's own seed in "
                           "model_params wins). Unset: each step's and each family's default.",
        },
        "warm_start": {
            "default": None, "type": ["null", "boolean"], "title": "Warm start from the champion", "section": "Model",
            "description": "On: a candidate of the champion's family starts from the champion's parameters for the users "
                           "and items both share (families that can: "
                           + ", ".join(name for name, entry in family_catalog().items() if entry["warm_start"])
                           + "), then trains as configured; others fit cold, with the reason in their run's tags. "
                           "Off or unset: every fit starts cold.",
        },
        # -- tuning ----------------------------------------------------------------
        "tune": {
            "default": False, "type": "boolean", "title": "Tune hyperparameters (Optuna)", "section": "Tuning",
            "description": "Each candidate is tuned on a validation split carved from train, then refit and tested once.",
        },
        "n_trials": {"default": 20, "type": "integer", "minimum": 1, "maximum": 500, "title": "Trials per model", "section": "Tuning"},
        # -- data ------------------------------------------------------------------
        "split": {"default": "stratified", "type": "string", "enum": SPLITS, "title": "Split", "section": "Data"},
        "stratify_by": {
            "default": "user", "type": "string", "enum": ["user", "item"], "title": "Stratify the split by", "section": "Data",
            "description": "With the stratified split: hold out the test fraction of each user's rows (user) or of each "
                           "item's rows (item, the Microsoft Recommenders MovieLens benchmark protocol).",
        },
        "split_cutoff": {
            "default": None, "type": ["null", "string"], "title": "Split cut-off (temporal_cutoff)", "section": "Data",
            "description": "Needed by the temporal_cutoff split: epoch seconds or an ISO date/time (naive = UTC); "
                           "interactions at or after it are held out. The monitoring DAG sets it to the end of the "
                           "champion's snapshot, so the candidate and the champion are scored on the newest data.",
        },
        "max_cold_fraction": {
            "default": 0.5, "type": "number", "minimum": 0.0, "maximum": 1.0, "title": "Max cold fraction",
            "section": "Data",
            "description": "Fail the run when more than this share of the held-out rows belongs to users or items "
                           "absent from training (they are dropped and counted, not scored).",
        },
        "test_fraction": {"default": 0.25, "type": "number", "exclusiveMinimum": 0.0, "exclusiveMaximum": 1.0, "title": "Test fraction", "section": "Data"},
        "synthetic_users": {"default": 1000, "type": "integer", "minimum": 10, "maximum": 100_000_000, "title": "Synthetic users", "section": "Data",
            "description": "synthetic only: number of users generated."},
        "synthetic_items": {"default": 500, "type": "integer", "minimum": 10, "maximum": 10_000_000, "title": "Synthetic items", "section": "Data",
            "description": "synthetic only: number of items generated."},
        "interactions_per_user": {"default": 40, "type": "integer", "minimum": 1, "maximum": 10_000, "title": "Synthetic interactions per user", "section": "Data",
            "description": "synthetic only: mean interactions per user (at most the item count)."},
        # Optional fields are nullable: a non-null string type would make the form mark them
        # required and disable Trigger for the sources that do not use them.
        "sql_conn_id": {
            "default": None, "type": ["null", "string"], "title": "SQL connection id (sql source)", "section": "Data",
            "description": "Needed by sql: the id of an Airflow connection (Admin > Connections, or an "
                           "AIRFLOW_CONN_<ID> variable) holding the database URL. The URL and its password "
                           "never enter the form, XCom or MLflow.",
        },
        "sql_table": {
            "default": None, "type": ["null", "string"], "title": "SQL table", "section": "Data",
            "description": "sql only: the table to read (schema.table allowed); give this or a query.",
        },
        "sql_query": {
            "default": None, "type": ["null", "string"], "title": "SQL query", "section": "Data",
            "description": "sql only: a SELECT to read instead of a table.",
        },
        "max_rejected_fraction": {"default": 0.05, "type": "number", "minimum": 0.0, "maximum": 1.0, "title": "Max rejected fraction", "section": "Data"},
        "kcore": {"default": 0, "type": "integer", "minimum": 0, "maximum": 1000, "title": "k-core filter (0 = off)", "section": "Data"},
    }


def defaults() -> dict[str, Any]:
    """The default value of every parameter."""
    return {name: spec["default"] for name, spec in param_specs().items()}


# -- per-family settings -------------------------------------------------------------


def model_params_spec() -> dict[str, Any]:
    """The ``model_params`` Param: one property per family, each the family config's JSON schema.

    ``additionalProperties: false`` at both levels, so Airflow refuses (HTTP 400 through the REST
    API) a family or a field that does not exist, and a value outside a field's bounds.
    """
    catalog = family_catalog()
    return {
        "default": {},
        "type": "object",
        "title": "Model settings (per family)",
        "section": "Model",
        "properties": {name: copy.deepcopy(entry["schema"]) for name, entry in catalog.items()},
        "additionalProperties": False,
        "description_md": families_markdown(catalog),
    }


def families_markdown(catalog: Mapping[str, Mapping[str, Any]]) -> str:
    """What the form says about each family: its one-line summary and its defaults."""
    lines = [
        "Only what you change, per family; every other value is the family's own default. "
        'Example: `{"ease": {"regularization": 300}, "als": {"factors": 128, '
        '"weighting": {"scheme": "bm25", "alpha": 1}}}`. '
        "`weighting` changes only the fields given of the family's preferred weighting (below). "
        "A family must be selected in *Models to train* (popularity is always trained).",
        "",
    ]
    for name, entry in catalog.items():
        runtime = set(entry["runtime_options"])
        values = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in entry["defaults"].items() if k not in runtime)
        preferred = dict(entry["preferred_weighting"])
        weighting = preferred.pop("scheme", "none")
        if preferred:
            weighting += " (" + ", ".join(f"{k}={json.dumps(v)}" for k, v in preferred.items()) + ")"
        line = f"- **{name}**: {entry['summary']}. Defaults: {values}; weighting `{weighting}`"
        if runtime:
            line += f"; runtime options: {', '.join(sorted(runtime))}"
        lines.append(line + ".")
    return "\n".join(lines)


@lru_cache(maxsize=1)
def family_catalog() -> dict[str, dict[str, Any]]:
    """Every family's summary, defaults, preferred weighting and settings schema (from the generated file)."""
    return json.loads(FAMILY_CATALOG_FILE.read_text())


def build_family_catalog() -> dict[str, dict[str, Any]]:
    """The catalog computed from the families' classes (imports every family; for the generator and tests)."""
    from pipelines.features.weighting import WeightingConfig
    from pipelines.models import model_class

    weighting_schema = _plain_schema(WeightingConfig.model_json_schema())
    catalog: dict[str, dict[str, Any]] = {}
    for name in model_names():
        cls = model_class(name)
        config = cls.config_class
        schema = _plain_schema(config.model_json_schema())
        if WEIGHTING_KEY in schema["properties"]:
            raise ConfigError(f"model {name!r}: its config has a field {WEIGHTING_KEY!r}, which model_params reserves")
        preferred = cls.preferred_weighting
        schema["properties"][WEIGHTING_KEY] = {
            **weighting_schema,
            "title": "Confidence weighting of the training matrix",
            "default": WeightingConfig(**preferred).model_dump(mode="json"),
        }
        schema["title"] = name
        catalog[name] = {
            "summary": cls.summary.rstrip("."),
            "defaults": config().model_dump(mode="json"),
            "runtime_options": sorted(config.runtime_options),
            "preferred_weighting": dict(preferred),
            "warm_start": bool(cls.warm_start_fields),
            "schema": schema,
        }
    return catalog


def _plain_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with ``$ref`` inlined and the class docstring dropped.

    Inlined because the schema is nested under ``model_params`` (a ``#/$defs`` reference would
    point at the wrong root); the docstring because the form shows ``description_md`` instead.
    An optional field (pydantic's ``anyOf: [X, {"type": "null"}]``) becomes X with ``"null"``
    added to its type: the form renders it as one nullable input, and a refusal names the
    field's path (jsonschema's best match of an ``anyOf`` would drop it).
    """
    defs = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = defs[node["$ref"].rsplit("/", 1)[-1]]
                return inline({**target, **{k: v for k, v in node.items() if k != "$ref"}})
            options = node.get("anyOf")
            if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
                (kept,) = [option for option in options if option != {"type": "null"}]
                if isinstance(kept.get("type"), str):
                    rest = {k: v for k, v in node.items() if k != "anyOf"}
                    return inline({**kept, **rest, "type": [kept["type"], "null"]})
            return {k: inline(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    plain = inline(schema)
    plain.pop("description", None)
    return plain


def families_with_field(field: str) -> list[str]:
    """Families whose ``model_params`` accept ``field`` (for messages that suggest the right key)."""
    return [name for name, entry in family_catalog().items() if field in entry["schema"]["properties"]]


# -- validation as the form does it ------------------------------------------------------


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse unknown keys, and values their Param schema refuses, as Airflow's form does.

    ``None`` means "the default" and is not checked. Raises ConfigError naming each parameter
    (and, inside ``model_params``, the family and the field).
    """
    specs = param_specs()
    removed = [key for key in params if key in REMOVED_PARAMS and key not in specs]
    if removed:
        raise ConfigError(
            f"{', '.join(removed)}: no longer run parameters; set them per family in model_params, "
            f'e.g. {{"als": {{"{removed[0]}": ...}}}} (each family has its own defaults)'
        )
    unknown = sorted(set(params) - set(specs))
    if unknown:
        raise ConfigError(f"unknown run parameter(s) {', '.join(unknown)}; known: {', '.join(specs)}")
    problems = [
        problem
        for name, value in params.items()
        if value is not None
        for problem in schema_problems(name, value, specs[name])
    ]
    if problems:
        raise ConfigError("invalid parameters: " + "; ".join(problems))


def schema_problems(name: str, value: Any, spec: Mapping[str, Any]) -> list[str]:
    """What ``airflow.sdk.Param(**spec).resolve(value)`` would refuse, one line per problem.

    The schema is the spec without ``default`` and ``description``, as Param builds it, checked
    with ``jsonschema.validate``'s validator (the draft named by the schema, else the latest)
    and a format checker.
    """
    from jsonschema import FormatChecker, validators

    schema = {key: val for key, val in spec.items() if key not in ("default", "description")}
    validator = validators.validator_for(schema)(schema, format_checker=FormatChecker())
    out = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join([name, *(str(part) for part in error.absolute_path)])
        out.append(f"{where}: {error.message}")
    return out


if __name__ == "__main__":  # python -m pipelines.params: regenerate model_params_schema.json
    FAMILY_CATALOG_FILE.write_text(json.dumps(build_family_catalog(), indent=1, allow_nan=False) + "\n")
    print(f"wrote {FAMILY_CATALOG_FILE}")
