"""``recsys serve``: the online API, following the champion of the tracking store."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli._common import tracking_uri_option
from pipelines.constants import DEFAULT_REGISTERED_MODEL, SERVING_ALIAS


def add_parser(sub) -> None:
    serve = sub.add_parser(
        "serve", help="serve recommendations over HTTP from the @champion version",
        description="Run the online API (FastAPI + uvicorn). It loads the version under REGISTERED_MODEL@ALIAS, "
                    "checks the registry every --poll-interval seconds and swaps in a new version without dropping "
                    "a request. OpenAPI spec at /openapi.json, docs at /docs.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--registered-model", default=DEFAULT_REGISTERED_MODEL,
                       help=f"registered model name (default {DEFAULT_REGISTERED_MODEL})")
    serve.add_argument("--alias", default=SERVING_ALIAS, help=f"alias to follow (default {SERVING_ALIAS})")
    tracking_uri_option(serve)
    serve.add_argument("--database-url", help="SQLAlchemy URL for events and the request log "
                                              "(default $RECSYS_SERVING_DB or SQLite in $RECSYS_HOME)")
    serve.add_argument("--poll-interval", type=float, default=5.0, help="seconds between registry checks (default 5)")
    serve.add_argument("--cache-dir", type=Path, help="where downloaded versions are kept (default $RECSYS_HOME/serving/models)")
    serve.add_argument("--no-request-log", action="store_true", help="do not write a request-log row per answer")
    serve.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                       help="uvicorn log level (default warning)")


def run(args: argparse.Namespace) -> None:
    import os
    import socket

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a download bar per model swap is noise

    import uvicorn

    from pipelines.errors import ConfigError
    from pipelines.serving.app import ServeConfig, create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    try:
        config = ServeConfig(
            registered_model=args.registered_model, alias=args.alias, tracking_uri=args.tracking_uri,
            database_url=args.database_url, poll_interval=args.poll_interval, cache_dir=args.cache_dir,
            log_requests=not args.no_request_log,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid serve options: {exc}") from None
    sock = socket.create_server((args.host, args.port))  # bound here so port 0 can be reported
    host, port = sock.getsockname()[:2]
    print(f"recsys serve: {config.registered_model}@{config.alias} on http://{host}:{port} (docs at /docs)", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level=args.log_level, access_log=False))
    server.run(sockets=[sock])
