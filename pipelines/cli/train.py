"""``recsys train``: ingest, clean, build features, train and evaluate in this process; print metrics as JSON."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pipelines.cli._common import key_values, tracking_uri_option


def add_parser(sub) -> None:
    from pipelines.models import model_names
    from pipelines.params import METRICS, SOURCES, SPLITS, WEIGHTINGS

    train = sub.add_parser("train", help="ingest, clean, build features, train and evaluate; print metrics as JSON",
                           description="Run the training pipeline's steps in this process and print the metrics as JSON.")
    data = train.add_argument_group("data")
    data.add_argument("--source", choices=SOURCES, default="synthetic", help="data source (default: synthetic)")
    data.add_argument("--path", help="file or folder of a csv, parquet or movielens source")
    data.add_argument("--train", type=Path, metavar="FILE", help="training interactions (CSV or Parquet) of a split made elsewhere")
    data.add_argument("--test", type=Path, metavar="FILE", help="held-out interactions matching --train; without it the split below is used")
    data.add_argument("--column", action="append", default=[], metavar="SRC=DEST",
                      help="map a source column to user_id, item_id, rating or timestamp (repeatable), e.g. userId=user_id")
    data.add_argument("--synthetic-users", type=int, default=1000, help="users of the synthetic source (default 1000)")
    data.add_argument("--synthetic-items", type=int, default=500, help="items of the synthetic source (default 500)")
    data.add_argument("--split", choices=SPLITS, default="stratified", help="how the held-out split is made (default stratified)")
    data.add_argument("--test-fraction", type=float, default=0.25, help="held-out fraction per user (default 0.25)")
    data.add_argument("--max-rejected-fraction", type=float, default=0.05, help="fail when more rows than this are quarantined (default 0.05)")

    model = train.add_argument_group("model")
    model.add_argument("--model", action="append", choices=model_names(), metavar="NAME",
                       help=f"model to train, repeatable (default als); one of: {', '.join(model_names())}")
    model.add_argument("--factors", type=int, help="latent factors (factorization models)")
    model.add_argument("--iterations", type=int, help="training iterations")
    model.add_argument("--regularization", type=float, help="L2 regularization")
    model.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="any other hyperparameter of the model(s), value parsed as JSON when possible")
    model.add_argument("--weighting", choices=WEIGHTINGS, help="confidence weighting of the training matrix")
    model.add_argument("--alpha", type=float, help="weighting strength alpha")
    model.add_argument("--gpu", action="store_true", help="use the GPU when present (falls back to CPU with a warning)")
    model.add_argument("--seed", type=int, default=42, help="seed of every stochastic step (default 42)")

    evaluation = train.add_argument_group("evaluation and tracking")
    evaluation.add_argument("-k", type=int, default=10, help="cut-off K of the metrics (default 10)")
    evaluation.add_argument("--metric", choices=METRICS, default="ndcg", help="metric compared for promotion (default ndcg)")
    evaluation.add_argument("--margin", type=float, default=0.0, help="improvement needed to take the champion alias (default 0)")
    evaluation.add_argument("--register", action="store_true", help="register the best model and promote it like the DAG does")
    evaluation.add_argument("--registered-model", default=None, help="registered model name (default recsys)")
    tracking_uri_option(evaluation)
    evaluation.add_argument("--no-track", action="store_true", help="do not log to MLflow (metrics are still printed)")
    evaluation.add_argument("--run-name", help="run key of the data partitions (default: cli-<timestamp>)")


def run(args: argparse.Namespace) -> None:
    from pipelines.timing import print_timings_table

    summary = train_summary(args)
    print(json.dumps(summary, indent=2, default=str))
    print_timings_table(summary["timings"])  # on stderr, only on a terminal: piped JSON stays clean


def _train_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {
        "source": args.source, "path": args.path or "", "models": args.model or ["als"], "k": args.k,
        "metric": args.metric, "promotion_margin": args.margin, "use_gpu": args.gpu, "seed": args.seed,
        "split": args.split, "test_fraction": args.test_fraction, "max_rejected_fraction": args.max_rejected_fraction,
        "synthetic_users": args.synthetic_users, "synthetic_items": args.synthetic_items,
    }
    for name in ("factors", "iterations", "regularization", "weighting", "alpha"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    return params


def train_summary(args: argparse.Namespace) -> dict[str, Any]:
    """Run the pipeline as the options say; the JSON summary printed by ``recsys train``."""
    from pipelines.pipeline import from_params, run_pipeline, run_pipeline_on_split

    if args.test and not args.train:
        raise SystemExit("recsys train: --test needs --train")
    config = from_params(_train_params(args))
    extra = key_values(args.param, "--param")
    if extra or args.registered_model:
        config = _with_overrides(config, extra, args.registered_model)
    run_key = args.run_name or time.strftime("cli-%Y%m%dT%H%M%S")
    track = not args.no_track
    if args.register and not track:
        raise SystemExit("recsys train: --register needs tracking; drop --no-track")
    columns = key_values(args.column, "--column")
    if args.train:
        result = run_pipeline_on_split(config, run_key, args.train, args.test, columns=columns,
                                       track=track, register=args.register, tracking_uri=args.tracking_uri)
    else:
        result = run_pipeline(config, run_key, track=track, register=args.register, tracking_uri=args.tracking_uri)
    summary = {
        "run_key": run_key,
        "models": {c["model"]: {"metrics": c["metrics"], "model_uri": c["model_uri"], "run_id": c["run_id"]}
                   for c in result["candidates"]},
        "quarantined": result["clean"]["rows_quarantined"],
        "timings": result["timings"],  # step -> {"seconds", "peak_rss_mib"}
    }
    if "promotion" in result:
        summary["promotion"] = {k: result["promotion"][k] for k in ("registered_model", "version", "status", "reason")}
    return summary


def _with_overrides(config, extra: dict[str, Any], registered_model: str | None):
    from pipelines.pipeline import model_params_for
    from pipelines.training.config import TrainConfig

    candidates = tuple(
        TrainConfig(**{**c.model_dump(), "params": {**c.params, **model_params_for(c.model, extra)}})
        for c in config.candidates
    )
    unknown = set(extra) - {key for c in config.candidates for key in model_params_for(c.model, extra)}
    if unknown:
        raise SystemExit(f"recsys train: --param {', '.join(sorted(unknown))} is not a parameter of any selected model")
    update: dict[str, Any] = {"candidates": candidates}
    if registered_model:
        update["promotion"] = config.promotion.model_copy(update={"registered_model": registered_model})
    return config.model_copy(update=update)
