"""``recsys``: the pipeline's steps from the command line, without Airflow.

    recsys train --source synthetic --model als --factors 64 --register
    recsys train --train train.csv --test test.csv --model als
    recsys recommend --model-uri models:/recsys@champion --users 1 2 3 -k 10

``train`` prints the metrics as JSON (and where the model was logged); ``recommend`` writes
ranked items with scores as CSV or JSON, each user's training items excluded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from pipelines.errors import RecsysError


def _key_values(pairs: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"recsys: {what} must look like KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def build_parser() -> argparse.ArgumentParser:
    from pipelines.models import model_names
    from pipelines.params import METRICS, SOURCES, SPLITS, WEIGHTINGS

    parser = argparse.ArgumentParser(prog="recsys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

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
    evaluation.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite in $RECSYS_HOME)")
    evaluation.add_argument("--no-track", action="store_true", help="do not log to MLflow (metrics are still printed)")
    evaluation.add_argument("--run-name", help="run key of the data partitions (default: cli-<timestamp>)")

    rec = sub.add_parser("recommend", help="top-k items for users from a logged or registered model",
                         description="Recommend with a model logged by 'recsys train' or registered by the DAG.")
    rec.add_argument("--model-uri", required=True, help="MLflow model URI, e.g. models:/recsys@champion or runs:/RUN_ID/model")
    rec.add_argument("--users", nargs="+", default=[], metavar="ID", help="user ids")
    rec.add_argument("--users-file", type=Path, help="file with one user id per line (or a CSV with a user_id column)")
    rec.add_argument("-k", type=int, default=10, help="items per user (default 10)")
    rec.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (default csv)")
    rec.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    rec.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite in $RECSYS_HOME)")
    status = sub.add_parser("status", help="show the latest run, registered versions and the champion",
                            description="Summarise the MLflow registry: versions, aliases, promotion decisions, champion metrics.")
    status.add_argument("--registered-model", default="recsys", help="registered model name (default recsys)")
    status.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite in $RECSYS_HOME)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def cmd_status(args: argparse.Namespace) -> None:
    import mlflow

    from pipelines.tracking.setup import default_tracking_uri
    from pipelines.tracking.summary import format_summary, registry_summary

    mlflow.set_tracking_uri(args.tracking_uri or default_tracking_uri())
    summary = registry_summary(args.registered_model)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))


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


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.pipeline import from_params, run_pipeline, run_pipeline_on_split

    if args.test and not args.train:
        raise SystemExit("recsys train: --test needs --train")
    config = from_params(_train_params(args))
    extra = _key_values(args.param, "--param")
    if extra or args.registered_model:
        config = _with_overrides(config, extra, args.registered_model)
    run_key = args.run_name or time.strftime("cli-%Y%m%dT%H%M%S")
    track = not args.no_track
    if args.register and not track:
        raise SystemExit("recsys train: --register needs tracking; drop --no-track")
    columns = _key_values(args.column, "--column")
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


def cmd_recommend(args: argparse.Namespace) -> None:
    import mlflow
    import pandas as pd

    from pipelines.tracking.setup import default_tracking_uri

    users = list(args.users)
    if args.users_file:
        users += _read_users(args.users_file)
    if not users:
        raise SystemExit("recsys recommend: give user ids with --users or --users-file")
    if args.k < 1:
        raise SystemExit(f"recsys recommend: -k must be >= 1, got {args.k}")
    mlflow.set_tracking_uri(args.tracking_uri or default_tracking_uri())
    model = mlflow.pyfunc.load_model(args.model_uri)
    recs = model.predict(pd.DataFrame({"user_id": users}), params={"k": args.k})
    if args.format == "csv":
        text = recs.to_csv(index=False)
    else:
        text = json.dumps(
            {user: group.drop(columns="user_id").to_dict("records") for user, group in recs.groupby("user_id", sort=False)},
            indent=2,
        )
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)


def _read_users(path: Path) -> list[str]:
    if not path.exists():
        raise SystemExit(f"recsys recommend: users file {path} does not exist")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if lines and "," in lines[0]:
        import pandas as pd

        frame = pd.read_csv(path, dtype=str)
        if "user_id" not in frame.columns:
            raise SystemExit(f"recsys recommend: {path} has no user_id column (columns: {', '.join(frame.columns)})")
        return frame["user_id"].tolist()
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # before dask is imported: its cluster chatter is INFO by default
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            print(json.dumps(cmd_train(args), indent=2, default=str))
        elif args.command == "recommend":
            cmd_recommend(args)
        else:
            cmd_status(args)
    except RecsysError as exc:
        print(f"recsys {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
