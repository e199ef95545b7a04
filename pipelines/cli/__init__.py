"""``recsys``: the pipeline's steps from the command line, without Airflow.

    recsys train --source synthetic --model als --register
    recsys train --train train.csv --test test.csv --model als
    recsys recommend --model-uri models:/recsys@champion --users 1 2 3 -k 10
    recsys status

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
from typing import Sequence

from pipelines.errors import RecsysError

#: subcommand name -> module under pipelines.cli (order is the order of ``recsys --help``).
SUBCOMMANDS: dict[str, str] = {
    "train": "pipelines.cli.train",
    "recommend": "pipelines.cli.recommend",
    "status": "pipelines.cli.status",
    "rollback": "pipelines.cli.rollback",
    "serve": "pipelines.cli.serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # before dask is imported: its cluster chatter is INFO by default
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(SUBCOMMANDS[args.command])
    try:
        module.run(args)
    except RecsysError as exc:
        print(f"recsys {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0
