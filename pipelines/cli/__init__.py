"""``recsys``: the pipeline's steps from the command line, without Airflow.

    recsys train --source synthetic --model als --register
    recsys train --train train.csv --test test.csv --model als
    recsys recommend --model-uri models:/recsys@champion --users 1 2 3 -k 10
    recsys status
    recsys land new-ratings.csv
    recsys monitor --source csv --path /data/slices

Each subcommand lives in its own module of this package (``train``, ``recommend``,
``status``, ...) with an ``add_parser(subparsers)`` and a ``run(args)``; this module only
builds the parser and dispatches. Imports stay inside the subcommands so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from typing import Sequence

from pipelines.errors import ConfigError, DataError, RecsysError

#: subcommand name -> module under pipelines.cli (order is the order of ``recsys --help``).
SUBCOMMANDS: dict[str, str] = {
    "train": "pipelines.cli.train",
    "recommend": "pipelines.cli.recommend",
    "status": "pipelines.cli.status",
    "rollback": "pipelines.cli.rollback",
    "serve": "pipelines.cli.serve",
    "land": "pipelines.cli.land",
    "monitor": "pipelines.cli.monitor",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; every error is one line on stderr (``-v``: the traceback first).

    Exit status: 0 done, 2 bad input (data, configuration, options, a path or model that is
    not there), 1 a failure of the work itself.
    """
    args = build_parser().parse_args(argv)
    if not args.verbose:  # before dask is imported: its cluster chatter is INFO by default
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        quiet_library_chatter()
        if sys.stderr.isatty():  # bars on a terminal only; a pipe or a log file stays quiet
            os.environ.setdefault("RECSYS_PROGRESS", "1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(SUBCOMMANDS[args.command])
    try:
        module.run(args)
    except KeyboardInterrupt:
        print(f"recsys {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # a subcommand's own check of its options: a message, or a status
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        message, status = str(exc.code).removeprefix("recsys: "), 2
        message = message.removeprefix(f"recsys {args.command}: ")
        return _fail(args, message, status, show_traceback=False)
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence: one line, not a traceback
        message, status = describe_error(exc)
        return _fail(args, message, status)
    return 0


def _fail(args: argparse.Namespace, message: str, status: int, show_traceback: bool = True) -> int:
    if args.verbose and show_traceback:
        traceback.print_exc(file=sys.stderr)
    elif status == 1:
        message += " (run with -v for the traceback)"
    print(f"recsys {args.command}: {one_line(message)}", file=sys.stderr)
    return status


def one_line(text: str, limit: int = 600) -> str:
    """``text`` on one line (whitespace runs collapsed), cut at ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_BAD_INPUT_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
_MLFLOW_BAD_INPUT_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND", "BAD_REQUEST"}


def describe_error(exc: BaseException) -> tuple[str, int]:
    """The one-line message (problem and fix) and the exit status for an error of a subcommand."""
    if isinstance(exc, (ConfigError, DataError)):
        return str(exc), 2
    if isinstance(exc, RecsysError):
        return str(exc), 1
    if type(exc).__module__.startswith("mlflow"):
        code = str(getattr(exc, "error_code", ""))
        first = str(getattr(exc, "message", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if code in _MLFLOW_BAD_INPUT_CODES:
            return f"MLflow: {first} (check the model URI, the alias and --tracking-uri)", 2
        return f"MLflow failed: {first} (check that the tracking server at --tracking-uri is reachable)", 1
    if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
        return f"invalid configuration: {exc.errors()[0].get('msg', exc)} (see --help for the allowed values)", 2
    if isinstance(exc, _BAD_INPUT_OS_ERRORS):
        where = f" {exc.filename!s}" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or type(exc).__name__}:{where} (check the path and its permissions)", 2
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc} (check free disk space and the paths given)", 1
    return f"{type(exc).__name__}: {exc}", 1


def quiet_library_chatter() -> None:
    """Keep Dask's shuffle and cluster warnings and MLflow's notices (about their own internals,
    not the user's data) out of a quiet run's stderr; ``-v`` shows them."""
    import warnings

    for name in ("distributed.shuffle", "distributed.shuffle._scheduler_plugin", "distributed.worker",
                 "distributed.nanny", "distributed.scheduler", "distributed.core"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"distributed\..*")
    warnings.filterwarnings("ignore", module=r"dask\..*")
    warnings.filterwarnings("ignore", module=r"mlflow\..*")
