"""``recsys rollback``: move the serving alias back to the previous champion, recording who and why."""

from __future__ import annotations

import argparse
import getpass
import json

from pipelines.cli._common import tracking_uri_option


def add_parser(sub) -> None:
    rollback = sub.add_parser(
        "rollback", help="move @champion back to the previous champion",
        description="Move the champion alias back to the version that held it before (again to walk further back). "
                    "Outside Airflow no Asset event is emitted: batch scoring follows on its next run; "
                    "trigger the recsys_rollback DAG to have it follow at once.",
    )
    rollback.add_argument("--reason", required=True, help="why (written on both versions)")
    rollback.add_argument("--by", default=None, help="who rolls back (default: the current user)")
    rollback.add_argument("--registered-model", default="recsys", help="registered model name (default recsys)")
    tracking_uri_option(rollback)
    rollback.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> None:
    from pipelines.tracking.rollback import rollback_champion

    done = rollback_champion(args.registered_model, by=args.by or getpass.getuser(), reason=args.reason,
                             tracking_uri=args.tracking_uri)
    if args.json:
        print(json.dumps(done.model_dump(), indent=2))
    else:
        print(f"{done.registered_model} @{done.alias}: v{done.from_version} -> v{done.to_version} "
              f"(by {done.by} at {done.at}; champion history now {','.join(done.history)})")
