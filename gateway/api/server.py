"""The HTTP server: one FastAPI app for the REST API, the SMS hook, health and metrics.

Routers live beside their subsystem and are listed in `ROUTERS` ("module:attribute"); a module
that this build does not have is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import __version__
from gateway.api.common import gateway_error_response
from gateway.api.fastpath import SmsFastPath
from gateway.api.middleware import BodyLimit, Receive, Scope, SecurityHeaders, Send
from gateway.cli import module_exists
from gateway.config import parse_hostport
from gateway.errors import GatewayError
from gateway.runtime import Gateway
from gateway.workers import metrics_payload

log = logging.getLogger("mamori.api")

ROUTERS = (
    "gateway.api.subscribers:router",
    "gateway.api.sms:router",
    "gateway.api.operator:router",
    "gateway.api.pages:router",
)


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    return value


class ApiApp(FastAPI):
    """The FastAPI app with the SMS hook's fast path in front of it (gateway/api/fastpath.py):
    the hook's ordinary requests skip the framework, its middleware (the error middleware
    included: the fast path answers an unexpected failure with the same 500) and its
    telemetry; every other request is the app's. `fast_path = None`: the app alone."""

    fast_path: SmsFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast_path(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(gw: Gateway) -> ApiApp:
    app = ApiApp(
        title="mamori",
        version=__version__,
        description="Spam and fraud filtering gateway: subscriber settings, SMS hook, operators.",
    )
    app.state.gateway = gw
    app.state.ready = True

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(response: Response) -> dict[str, Any]:
        ready = bool(app.state.ready)
        if not ready:
            response.status_code = 503
        return {"ready": ready, "checks": [c.name for c in gw.pipeline.checks]}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(metrics_payload(), media_type=CONTENT_TYPE_LATEST)

    for target in ROUTERS:
        modname, _, attr = target.partition(":")
        if module_exists(modname):
            app.include_router(getattr(importlib.import_module(modname), attr))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 body, with strings made encodable: a JSON body may carry lone
        # surrogates ("\ud800") that the error echoes back and UTF-8 cannot encode (was a 500)
        return JSONResponse({"detail": _encodable(jsonable_encoder(exc.errors()))},
                            status_code=422)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return gateway_error_response(exc)

    api = gw.settings.api
    if api.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=api.cors_origins, allow_credentials=False,
            allow_methods=["GET", "PUT", "PATCH", "POST"],
            allow_headers=["Authorization", "Content-Type"], max_age=600,
        )
    app.add_middleware(BodyLimit, limits={
        "/v1/subscribers": api.max_body, "/settings": api.max_body,
        "/v1/operator": api.max_body, "/v1/operator/policies/import": api.max_import_body,
        "/v1/sms": gw.settings.limits.sms_body_max,  # the SMS hook (single and batch)
    })
    app.add_middleware(SecurityHeaders)
    app.fast_path = SmsFastPath(app.framework, app.state, gw.settings.limits.sms_body_max,
                                cors=bool(api.cors_origins))
    return app


class _Server(uvicorn.Server):
    """uvicorn inside mamori's loop: `mamori serve` owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiService:
    name = "api"

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], app: FastAPI) -> None:
        self.server = server
        self.task = task
        self.app = app

    async def stop(self) -> None:
        self.app.state.ready = False
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=10)


async def start(gw: Gateway) -> ApiService | None:
    if not gw.settings.api.listen:
        return None
    host, port = parse_hostport(gw.settings.api.listen)
    app = create_app(gw)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            lifespan="off", server_header=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve(), name="api")
    while not server.started:
        if task.done():
            task.result()  # raises the bind error
            raise RuntimeError("API server stopped during start-up")
        await asyncio.sleep(0.01)
    log.info("api listening", extra={"listen": f"{host}:{port}"})
    return ApiService(server, task, app)
