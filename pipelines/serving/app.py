"""The online API: recommendations for one or many users, feedback events, health and readiness.

``create_app(ServeConfig(...))`` builds the FastAPI app; ``recsys serve`` runs it with uvicorn.
The app follows ``name@alias`` in the background (:mod:`pipelines.serving.follow`), records
events and one request-log row per answer off the request path (:mod:`pipelines.serving.recorder`)
and answers from precomputed arrays (:mod:`pipelines.serving.scorer`). Responses are
serialized with orjson when it is installed; the pydantic models in
:mod:`pipelines.serving.schemas` are the OpenAPI spec. Bad input is a 4xx naming the problem;
503 means no model is loaded yet.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pipelines.constants import DEFAULT_REGISTERED_MODEL, SERVING_ALIAS
from pipelines.serving import schemas
from pipelines.serving.schemas import ID_PATTERN, MAX_ID, MAX_K, MAX_SEEDS

log = logging.getLogger(__name__)

try:
    import orjson

    def _dumps(content: Any) -> bytes:
        return orjson.dumps(content)
except ImportError:  # the standard library is slower but gives the same bytes for this content
    def _dumps(content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class FastJSON(JSONResponse):
    """JSON response rendered without a pydantic pass (the content is built to the schema already).

    A JSONResponse subclass so FastAPI documents the route's response model in the OpenAPI spec.
    """

    def render(self, content: Any) -> bytes:
        return _dumps(content)


class ServeConfig(BaseModel):
    """What ``recsys serve`` follows and where it writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registered_model: str = Field(DEFAULT_REGISTERED_MODEL, min_length=1, description="MLflow registered model name")
    alias: str = Field(SERVING_ALIAS, min_length=1, description="alias followed (the version under it is served)")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; None: the platform default")
    database_url: str | None = Field(None, description="events and request log; None: the serving database default")
    poll_interval: float = Field(5.0, gt=0, le=3600, description="seconds between registry checks for a new version")
    flush_interval: float = Field(0.5, gt=0, le=60, description="seconds between writes of events and the request log")
    log_requests: bool = Field(True, description="write one request-log row per answer")
    cache_dir: Path | None = Field(None, description="downloaded versions; None: <home>/serving/models")
    blas_threads: int | None = Field(
        1, ge=1, le=256,
        description="BLAS threads of this process; one request is one small matrix-vector product, where "
                    "more threads only contend (None leaves the library default)",
    )


class ErrorLog:
    """ASGI middleware: one request-log row for each error answer (4xx/5xx) of the recommendation
    endpoints, so monitoring sees an error rate. Successful answers are logged by the endpoints
    themselves (with model, source and item count); this only watches the response status, and
    queues the row like they do (nothing is written on the request path)."""

    def __init__(self, app, config: ServeConfig) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not self.config.log_requests or not scope["path"].startswith("/recommendations"):
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            self._log(scope, 500, started)
            raise
        if status >= 400:
            self._log(scope, status, started)

    def _log(self, scope, status: int, started: float) -> None:
        from urllib.parse import unquote

        state = scope["app"].state
        recorder = getattr(state, "recorder", None)
        if recorder is None:
            return
        model = getattr(getattr(state, "follower", None), "current", None)
        get = scope["method"] == "GET"
        user = unquote(scope["path"].removeprefix("/recommendations/"))[:MAX_ID] if get else ""
        recorder.log_request({
            "at": datetime.now(timezone.utc), "request_id": uuid.uuid4().hex, "endpoint": "get" if get else "batch",
            "user_id": user, "k": 0, "source": "none", "model_name": self.config.registered_model,
            "model_version": model.version if model is not None else "", "items": 0,
            "latency_ms": (time.perf_counter() - started) * 1000.0, "status": status,
        })


NOT_READY = {503: {"model": schemas.Problem, "description": "no model version is loaded yet"}}
BAD_INPUT = {422: {"model": schemas.Problem, "description": "the request does not match the schema"}}
BAD_BODY = {**BAD_INPUT, 400: {"model": schemas.Problem, "description": "the body cannot be parsed (not UTF-8 JSON)"}}


def create_app(config: ServeConfig | None = None, follower=None, recorder=None) -> FastAPI:
    """The API app. ``follower`` / ``recorder`` default to ones built from ``config`` at startup."""
    config = config or ServeConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from pipelines.serving.follow import ChampionFollower
        from pipelines.serving.recorder import Recorder
        from pipelines.serving.tables import make_engine
        from pipelines.tracking.setup import default_tracking_uri

        if config.blas_threads is not None:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=config.blas_threads)  # process-wide, for the server's lifetime
        state = app.state
        state.follower = follower or ChampionFollower(
            config.tracking_uri or default_tracking_uri(), config.registered_model, config.alias,
            config.poll_interval, config.cache_dir,
        )
        state.recorder = recorder or Recorder(make_engine(config.database_url), config.flush_interval)
        state.follower.start()
        state.recorder.start()
        try:
            yield
        finally:
            state.follower.stop()
            state.recorder.stop()

    app = FastAPI(
        title="recsys serving API",
        version="1",
        description=__doc__,
        lifespan=lifespan,
        default_response_class=FastJSON,
    )
    app.add_middleware(ErrorLog, config=config)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return FastJSON({"detail": problems or "invalid request"}, status_code=422)

    def _not_ready(request: Request) -> Response:
        follower = request.app.state.follower
        reason = follower.last_error or "the model is still loading"
        return FastJSON({"detail": f"no model loaded for {config.registered_model}@{config.alias}: {reason}"},
                        status_code=503)

    def _answer(request: Request, model, user_id: str, k: int, seeds, endpoint: str, started: float) -> dict:
        rec = model.recommend(user_id, k, seeds)
        request_id = uuid.uuid4().hex
        payload = {
            "request_id": request_id,
            "user_id": user_id,
            "source": rec.source,
            "model": {"name": model.name, "version": model.version, "family": model.family},
            "items": model.items_payload(rec),
        }
        if config.log_requests:
            request.app.state.recorder.log_request({
                "at": datetime.now(timezone.utc), "request_id": request_id, "endpoint": endpoint,
                "user_id": user_id, "k": k, "source": rec.source, "model_name": model.name,
                "model_version": model.version, "items": len(rec.items),
                "latency_ms": (time.perf_counter() - started) * 1000.0, "status": 200,
            })
        return payload

    @app.get("/recommendations/{user_id}", response_model=schemas.Recommendations,
             responses={**NOT_READY, **BAD_INPUT}, summary="Top-k items for one user")
    async def recommend_one(
        request: Request,
        user_id: str = PathParam(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN),
        k: int = Query(10, ge=1, le=MAX_K, description="number of items"),
        seed_items: list[schemas.RawId] = Query([], max_length=MAX_SEEDS,
                                      description="for an unknown user: items they chose (repeat the parameter)"),
    ) -> Response:
        started = time.perf_counter()
        model = request.app.state.follower.current  # read once: a swap cannot change it mid-answer
        if model is None:
            return _not_ready(request)
        return FastJSON(_answer(request, model, user_id, k, seed_items, "get", started))

    @app.post("/recommendations", response_model=schemas.BatchRecommendations,
              responses={**NOT_READY, **BAD_BODY}, summary="Top-k items for many users")
    async def recommend_many(request: Request, body: schemas.BatchRequest = Body()) -> Response:
        model = request.app.state.follower.current
        if model is None:
            return _not_ready(request)
        results = [_answer(request, model, q.user_id, body.k, q.seed_items, "batch", time.perf_counter())
                   for q in body.users]  # each user's own latency in the request log
        return FastJSON({"results": results})

    @app.post("/events", response_model=schemas.EventAck, status_code=202, responses=BAD_BODY,
              summary="Record impressions and clicks")
    async def record_events(request: Request, body: schemas.EventBatch = Body()) -> Response:
        now = datetime.now(timezone.utc)
        rows = [
            {"received_at": now, "event_time": e.timestamp or now, "event_type": e.event_type, "user_id": e.user_id,
             "item_id": e.item_id, "request_id": e.request_id, "position": e.position, "model_version": e.model_version}
            for e in body.events
        ]
        request.app.state.recorder.add_events(rows)
        return FastJSON({"accepted": len(rows)}, status_code=202)

    @app.get("/health", response_model=schemas.Health, summary="The process is up")
    async def health() -> Response:
        return FastJSON({"status": "ok"})

    @app.get("/ready", response_model=schemas.Readiness,
             responses={503: {"model": schemas.Readiness, "description": "no model loaded yet"}},
             summary="A model version is loaded and answering")
    async def ready(request: Request) -> Response:
        follower = request.app.state.follower
        model = follower.current
        body = {"ready": model is not None, "registered_model": config.registered_model, "alias": config.alias,
                "model": None, "reason": follower.last_error}
        if model is not None:
            body["model"] = {"name": model.name, "version": model.version, "family": model.family}
        return FastJSON(body, status_code=200 if model is not None else 503)

    return app
