"""``recsys status``: the registry's versions, aliases, promotion decisions and champion metrics."""

from __future__ import annotations

import argparse
import json

from pipelines.cli._common import tracking_uri_option


def add_parser(sub) -> None:
    status = sub.add_parser("status", help="show the latest run, registered versions and the champion",
                            description="Summarise the MLflow registry: versions, aliases, promotion decisions, champion metrics.")
    status.add_argument("--registered-model", default="recsys", help="registered model name (default recsys)")
    tracking_uri_option(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> None:
    import mlflow

    from pipelines.tracking.setup import default_tracking_uri
    from pipelines.tracking.summary import format_summary, registry_summary

    mlflow.set_tracking_uri(args.tracking_uri or default_tracking_uri())
    summary = registry_summary(args.registered_model)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
