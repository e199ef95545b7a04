"""``recsys recommend``: top-k items for users from a logged or registered model, as CSV or JSON.

Each row's ``source`` says how it was made: ``model`` (a user the model knows), ``seed_items``
or ``popularity`` (a user the model never saw). Options are checked before the model loads.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pipelines.cli._common import tracking_uri_option

log = logging.getLogger(__name__)


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
    if args.output is not None:
        _check_output(args.output)
    mlflow.set_tracking_uri(args.tracking_uri or default_tracking_uri())
    model = load_model(args.model_uri)
    recs = model.predict(pd.DataFrame({"user_id": users}), params={"k": args.k})
    fallback = int((recs.drop_duplicates("user_id")["source"] == "popularity").sum()) if "source" in recs else 0
    if fallback:
        log.warning("%d of %d user(s) are unknown to the model: they get popular items (source=popularity)",
                    fallback, len(set(users)))
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


def _check_output(path: Path) -> None:
    """Refuse an output path that cannot be written, before any work."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SystemExit(f"recsys recommend: -o {path} is a folder; give a file name")
    if not folder.is_dir():
        raise SystemExit(f"recsys recommend: cannot write -o {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise SystemExit(f"recsys recommend: cannot write -o {path}: folder {folder} is not writable")


def load_model(model_uri: str):
    """The pyfunc model at ``model_uri``.

    Raises:
        DataError: no such model, version, alias or run (names the URI and what to check).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipelines.errors import DataError

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        first = (exc.message or str(exc)).strip().splitlines()[0]
        raise DataError(
            f"cannot load model {model_uri!r}: {first}; check the name, version or alias "
            "(models:/NAME@ALIAS, runs:/RUN_ID/model) and --tracking-uri"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot load model {model_uri!r}: {exc}; check the URI and --tracking-uri") from exc


def _read_users(path: Path) -> list[str]:
    if not path.exists():
        raise SystemExit(f"recsys recommend: users file {path} does not exist")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if lines and "," in lines[0]:
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # an id "NA" is an id
        if "user_id" not in frame.columns:
            raise SystemExit(f"recsys recommend: {path} has no user_id column (columns: {', '.join(frame.columns)})")
        return frame["user_id"].tolist()
    return lines
