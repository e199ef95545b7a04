"""``recsys monitor``: check the serving champion for drift, live quality and service health; print JSON.

The options are generated from the monitoring form's specs
(:func:`pipelines.monitoring.config.param_specs`): the same names, defaults and bounds as the
DAG's trigger form, e.g. ``--source csv --path /data/slices --max-new-user-share 0.3``. Without
``--source`` the champion's own training source is read again. The result (see
:mod:`pipelines.monitoring.run`) goes to stdout; the check is logged to the ``monitoring``
experiment in MLflow.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipelines.cli._common import tracking_uri_option

GROUPS = {None: "check", "Data": "data", "Thresholds": "thresholds"}


def add_parser(sub) -> None:
    from pipelines.cli.train import add_spec_option
    from pipelines.monitoring.config import param_specs

    monitor = sub.add_parser("monitor", help="check the champion for drift, live quality and health; print JSON",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {section: monitor.add_argument_group(title) for section, title in GROUPS.items()}
    for name, spec in param_specs().items():
        if "enum" in spec:  # argparse lists the choices: the null that means "unset" is not one
            spec = {**spec, "enum": [value for value in spec["enum"] if value is not None]}
        add_spec_option(groups.get(spec.get("section"), groups[None]), name, spec)
    where = monitor.add_argument_group("where")
    tracking_uri_option(where)
    where.add_argument("--database-url", help="serving database with the events and request log "
                                              "(default $RECSYS_SERVING_DB or SQLite in $RECSYS_HOME)")
    where.add_argument("--lake", help="lake root for the check's ingest and clean partitions (default: the platform's)")
    where.add_argument("--window-end", help="end of the events and request-log window, ISO-8601 (default: now)")
    where.add_argument("--run-name", help="the check's key (default: cli-<timestamp>-<random>)")


def monitoring_params(args: argparse.Namespace) -> dict[str, Any]:
    """The form parameters and runtime keys the options set (only those given)."""
    from pipelines.monitoring.config import param_specs

    params = {name: getattr(args, name) for name in param_specs() if getattr(args, name, None) is not None}
    runtime = {"tracking_uri": args.tracking_uri, "database_url": args.database_url, "lake": args.lake,
               "window_end": args.window_end}
    return {**params, **{key: value for key, value in runtime.items() if value is not None}}


def run(args: argparse.Namespace) -> None:
    from pipelines.monitoring.config import from_params
    from pipelines.monitoring.run import monitor

    result = monitor(from_params(monitoring_params(args)), args.run_name)
    print(json.dumps(result, indent=2, default=str))
