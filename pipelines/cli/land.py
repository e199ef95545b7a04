"""``recsys land FILE``: add a file of new interactions to the lake's landing folder.

The file (CSV or Parquet, the same column names and aliases as a training source) is checked,
written as one new batch of ``$RECSYS_HOME/lake/interactions`` in one atomic step, and the
landing flag is touched: the training DAG's Asset watcher turns that into an event of the
interactions Asset within seconds, which schedules a training run on the landed data (and
the next monitoring run compares it with the champion's snapshot). Nothing needs to reach
Airflow from here; ``--no-signal`` lands quietly (the next cron or monitoring run sees it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.cli._common import key_values


def add_parser(sub) -> None:
    land = sub.add_parser("land", help="add a CSV or Parquet file of new interactions to the lake (schedules training)",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    land.add_argument("file", type=Path, help="CSV or Parquet file: user id, item id, rating, timestamp")
    land.add_argument("--column", action="append", default=[], metavar="SRC=DEST",
                      help="map a source column to user_id, item_id, rating or timestamp (repeatable)")
    land.add_argument("--delimiter", default=",", help="CSV field separator (default ',')")
    land.add_argument("--lake", type=Path, help="lake root (default $RECSYS_HOME/lake)")
    land.add_argument("--no-signal", action="store_true",
                      help="do not touch the landing flag (no Asset event: no training run starts for this file)")


def run(args: argparse.Namespace) -> None:
    from pipelines.data.landing import land_file

    columns = key_values(args.column, "--column") or None
    landed = land_file(args.file, args.lake, column_map=columns, delimiter=args.delimiter, signal=not args.no_signal)
    landed["signalled"] = not args.no_signal
    print(json.dumps(landed, indent=2))
