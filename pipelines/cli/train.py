"""``recsys train``: ingest, clean, build features, train and evaluate in this process; print metrics as JSON.

The run options are generated from the trigger form's specs (:func:`pipelines.params.param_specs`),
so the command line takes the same parameters as the form, with the same defaults and bounds, and
the two cannot drift: ``--source sql --sql-url ... --sql-table ...``, ``--kcore 5``,
``--tune --n-trials 30``, ``--seed 7``, ``--gpu``. A family's settings are
``--param FAMILY.FIELD=VALUE`` (``--param ease.regularization=300``); every field left out keeps
the family's own default.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from pathlib import Path
from typing import Any

from pipelines.cli._common import key_values, tracking_uri_option

#: Form parameter -> its flags, where they are not ``--name-with-dashes`` (the names this command
#: had before its options were generated; kept so scripts and the README keep working).
FLAGS: dict[str, tuple[str, ...]] = {
    "models": ("--model",),
    "promotion_margin": ("--promotion-margin", "--margin"),
    "use_gpu": ("--gpu",),
    "k": ("-k", "--k"),
}
#: Form section -> argument group of ``recsys train --help``.
GROUPS = {None: "run", "Model": "model", "Tuning": "tuning", "Data": "data"}
#: Shorthands for ``--param MODEL.FIELD=VALUE`` when one model is selected (older option names).
SHORTHANDS: dict[str, type] = {"factors": int, "iterations": int, "regularization": float}
_JSON_TYPES: dict[str, type] = {"integer": int, "number": float, "string": str}


def add_parser(sub) -> None:
    from pipelines.params import WEIGHTINGS, param_specs

    train = sub.add_parser("train", help="ingest, clean, build features, train and evaluate; print metrics as JSON",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {section: train.add_argument_group(title) for section, title in GROUPS.items()}
    for name, spec in param_specs().items():
        section = spec.get("section")
        if section not in groups:  # a section added to the form later gets its own group
            groups[section] = train.add_argument_group(section)
        add_spec_option(groups[section], name, spec)

    model = groups["Model"]
    model.add_argument("--param", action="append", default=[], metavar="FAMILY.FIELD=VALUE",
                       help="one setting of one family, value parsed as JSON when possible (repeatable), e.g. "
                            "ease.regularization=300 or als.weighting.scheme=bm25; see the model_params section "
                            "of the trigger form for each family's fields and defaults")
    for field, kind in SHORTHANDS.items():
        model.add_argument(f"--{field}", type=kind, help=f"with one --model: shorthand for --param MODEL.{field}=VALUE")
    model.add_argument("--weighting", choices=WEIGHTINGS,
                       help="with one --model: its confidence weighting scheme (default: the family's preferred one)")
    model.add_argument("--alpha", type=float, help="with one --model: the weighting's alpha")

    data = groups["Data"]
    data.add_argument("--train", type=Path, metavar="FILE",
                      help="training interactions (CSV or Parquet) of a split made elsewhere")
    data.add_argument("--test", type=Path, metavar="FILE",
                      help="held-out interactions matching --train; without it the split is made from --train")
    data.add_argument("--column", action="append", default=[], metavar="SRC=DEST",
                      help="map a source column to user_id, item_id, rating or timestamp (repeatable), "
                           "e.g. userId=user_id")

    tracking = train.add_argument_group("tracking")
    tracking.add_argument("--register", action="store_true",
                          help="register the best model and promote it like the DAG does")
    tracking.add_argument("--registered-model", default=None, help="registered model name (default recsys)")
    tracking_uri_option(tracking)
    tracking.add_argument("--no-track", action="store_true", help="do not log to MLflow (metrics are still printed)")
    tracking.add_argument("--run-name", help="run key of the data partitions (default: cli-<timestamp>-<random>)")


def add_spec_option(group, name: str, spec: dict[str, Any]) -> None:
    """One option for one form parameter: its type, choices and help come from the spec.

    Every option defaults to None, meaning "the form's default", so :func:`from_params` sees
    only what was given on the command line.
    """
    kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    kind = next(k for k in kinds if k != "null")
    flags = FLAGS.get(name, (f"--{name.replace('_', '-')}",))
    text = spec.get("title", name)
    if spec.get("description"):
        text += f": {spec['description']}"
    if name == "model_params":
        text = "every family's settings as one JSON object, e.g. '{\"ease\": {\"regularization\": 300}}' (see --param)"
    help_text = f"{text} (default: {json.dumps(spec['default'])})".replace("%", "%%")
    options: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
    if kind == "boolean":
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, **options)
    elif kind == "array":
        items = spec["items"]
        group.add_argument(*flags, action="append", type=_JSON_TYPES[items["type"]], choices=items.get("enum"),
                           metavar="NAME" if items.get("enum") else None, **options)
    elif kind == "object":
        group.add_argument(*flags, type=_json_object, metavar="JSON", **options)
    else:
        group.add_argument(*flags, type=_JSON_TYPES[kind], choices=spec.get("enum"), **options)


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {raw!r}")
    return value


def run(args: argparse.Namespace) -> None:
    from pipelines.timing import print_timings_table

    summary = train_summary(args)
    print(json.dumps(summary, indent=2, default=str))
    print_timings_table(summary["timings"])  # on stderr, only on a terminal: piped JSON stays clean


def form_params(args: argparse.Namespace) -> dict[str, Any]:
    """The form parameters the options set (only those given), with ``--param`` and the shorthands
    folded into ``model_params``. Raises SystemExit for a ``--param`` that names no family."""
    from pipelines.params import defaults, param_specs

    params = {name: getattr(args, name) for name in param_specs() if getattr(args, name, None) is not None}
    models = params.get("models") or defaults()["models"]
    model_params: dict[str, Any] = json.loads(json.dumps(params.get("model_params") or {}))  # a deep copy
    for key, value in key_values(args.param, "--param").items():
        family, _, field = key.partition(".")
        _check_qualified(key, family, field, models)
        _set_nested(model_params.setdefault(family, {}), field.split("."), value)
    shorthands = {field: getattr(args, field) for field in SHORTHANDS if getattr(args, field) is not None}
    weighting = _weighting_shorthand(args)
    if weighting:
        shorthands["weighting"] = weighting
    if shorthands:
        flags = ", ".join(f"--{field}" for field in shorthands)
        if len(models) != 1:
            raise SystemExit(f"recsys train: {flags} only apply with one --model; with {', '.join(models)} "
                             f"use --param FAMILY.FIELD=VALUE, e.g. --param {models[0]}.{next(iter(shorthands))}=...")
        for field, value in shorthands.items():
            model_params.setdefault(models[0], {}).setdefault(field, value)  # an explicit --param wins
    if model_params:
        params["model_params"] = model_params
    return params


def _check_qualified(key: str, family: str, field: str, models: list[str]) -> None:
    from pipelines.params import families_with_field, family_catalog

    if family in family_catalog() and field:
        return
    wanted = field if family in family_catalog() else key
    having = families_with_field(wanted.split(".")[0])
    where = (f"families with a field {wanted.split('.')[0]!r}: {', '.join(having)}" if having
             else f"no family has a field {wanted.split('.')[0]!r}")
    example = ([m for m in models if m in having] or having or models)[0]
    raise SystemExit(f"recsys train: --param {key}=... must name the family, as FAMILY.FIELD=VALUE "
                     f"(e.g. --param {example}.{wanted}=...); {where}")


def _set_nested(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise SystemExit(f"recsys train: --param sets {'.'.join(path)} under a value that is not an object")
    target[path[-1]] = value


def _weighting_shorthand(args: argparse.Namespace) -> dict[str, Any]:
    """``--weighting``/``--alpha`` as a weighting entry (fields left out keep the family's preferred ones)."""
    given = {"scheme": args.weighting, "alpha": args.alpha}
    return {key: value for key, value in given.items() if value is not None}


def pipeline_config(args: argparse.Namespace):
    """The :class:`~pipelines.pipeline.PipelineConfig` the options describe (nothing runs)."""
    from pipelines.pipeline import from_params

    config = from_params(form_params(args))
    if args.registered_model:
        promotion = config.promotion.model_copy(update={"registered_model": args.registered_model})
        config = config.model_copy(update={"promotion": promotion})
    return config


def train_summary(args: argparse.Namespace) -> dict[str, Any]:
    """Run the pipeline as the options say; the JSON summary printed by ``recsys train``."""
    from pipelines.pipeline import run_pipeline, run_pipeline_on_split

    if args.test and not args.train:
        raise SystemExit("recsys train: --test needs --train")
    config = pipeline_config(args)
    run_key = args.run_name or f"{time.strftime('cli-%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"  # unique per run
    track = not args.no_track
    if args.register and not track:
        raise SystemExit("recsys train: --register needs tracking; drop --no-track")
    columns = key_values(args.column, "--column")
    if columns and not args.train:  # --path sources take the map too
        from pipelines.data.config import load_ingest_config

        ingest = load_ingest_config({**config.ingest.model_dump(), "column_map": columns})
        config = config.model_copy(update={"ingest": ingest})
    tags = {"trigger_reason": args.trigger_reason, "trigger_kind": "cli"} if args.trigger_reason else None
    if args.train:
        result = run_pipeline_on_split(config, run_key, args.train, args.test, columns=columns, track=track,
                                       register=args.register, tracking_uri=args.tracking_uri, tags=tags)
    else:
        result = run_pipeline(config, run_key, track=track, register=args.register, tracking_uri=args.tracking_uri,
                              tags=tags)
    summary = {
        "run_key": run_key,
        "models": {c["model"]: {"metrics": c["metrics"], "fitted": c.get("fitted", {}), "model_uri": c["model_uri"],
                                "run_id": c["run_id"]} for c in result["candidates"]},
        "quarantined": result["clean"]["rows_quarantined"],
        "rows": result["rows"],
        "timings": result["timings"],  # step -> {"seconds", "peak_rss_mib"}
    }
    if "promotion" in result:
        summary["promotion"] = {k: result["promotion"][k] for k in ("registered_model", "version", "status", "reason")}
    return summary
