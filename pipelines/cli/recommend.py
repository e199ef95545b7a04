"""``recsys recommend``: top-k items for users from a logged or registered model, as CSV or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.cli._common import tracking_uri_option


def add_parser(sub) -> None:
    rec = sub.add_parser("recommend", help="top-k items for users from a logged or registered model",
                         description="Recommend with a model logged by 'recsys train' or registered by the DAG.")
    rec.add_argument("--model-uri", required=True, help="MLflow model URI, e.g. models:/recsys@champion or runs:/RUN_ID/model")
    rec.add_argument("--users", nargs="+", default=[], metavar="ID", help="user ids")
    rec.add_argument("--users-file", type=Path, help="file with one user id per line (or a CSV with a user_id column)")
    rec.add_argument("-k", type=int, default=10, help="items per user (default 10)")
    rec.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (default csv)")
    rec.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    tracking_uri_option(rec)


def run(args: argparse.Namespace) -> None:
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
