"""The FastAPI application: `aipp.api.main:app` (uvicorn)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import Scope

from aipp.api.deps import SECURITY_SCHEMES
from aipp.api.errors import install_error_handlers
from aipp.api.hot import HotRoutes
from aipp.api.metrics import Metrics
from aipp.api.middleware import LimitsAndMetrics
from aipp.api.routes import health, tasks
from aipp.api.schemas import CreateTaskRequest
from aipp.api.services import Services
from aipp.core.audio import accepted_content_types
from aipp.core.config import Settings, get_settings
from aipp.core.logging import configure_logging

# Multipart bodies carry some framing around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def body_limit(settings: Settings) -> Callable[[Scope], int]:
    """The largest body a request may send: a multipart create carries the file (spooled to
    disk by the form parser, streamed on to S3); everything else is small JSON or nothing."""
    multipart = settings.max_multipart_bytes + MULTIPART_OVERHEAD_BYTES

    def limit(scope: Scope) -> int:
        if scope.get("method") == "POST" and scope.get("path") == "/v1/tasks":
            for name, value in scope.get("headers", ()):
                if name == b"content-type" and value.lower().startswith(b"multipart/form-data"):
                    return multipart
        return settings.max_json_body_bytes

    return limit


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        app.state.services = await Services.start(settings, metrics)
        try:
            yield
        finally:
            await app.state.services.close()

    app = FastAPI(
        title="AI Processing Platform — task API",
        version="1.0.0",
        description="Upload audio, get a transcript and an LLM summary, asynchronously.",
        lifespan=lifespan,
        # The API's metrics are Prometheus (`/metrics`) and its logs JSON lines; FastAPI's own
        # OpenTelemetry instrumentation would only look for a configured provider per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(tasks.router)
    app.include_router(health.router)
    # Added first, so it runs inside LimitsAndMetrics (Starlette nests the last added outermost).
    app.add_middleware(HotRoutes, routes=app.router.routes)
    app.add_middleware(
        LimitsAndMetrics,
        metrics=metrics,
        max_header_bytes=settings.max_header_bytes,
        body_limit=body_limit(settings),
    )
    _document_request_bodies(app, settings)
    return app


def _document_request_bodies(app: FastAPI, settings: Settings) -> None:
    """POST /v1/tasks reads its body by content type, so its JSON schema is added by hand; so
    are the ways of sending the API key (the /v1 routes check it themselves: `authenticate`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = copy.deepcopy(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
            defs = CreateTaskRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            # The limits this deployment enforces, from its settings.
            defs["properties"]["content_type"]["enum"] = list(
                accepted_content_types(settings.allowed_content_types)
            )
            defs["properties"]["size_bytes"]["maximum"] = settings.max_upload_bytes
            schema.setdefault("components", {}).setdefault("schemas", {})
            schema["components"]["schemas"]["CreateTaskRequest"] = defs
            schema["components"]["securitySchemes"] = SECURITY_SCHEMES
            body = schema["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]
            multipart = body["multipart/form-data"]["schema"]["properties"]["file"]
            multipart["maxLength"] = settings.max_multipart_bytes
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


app = create_app()
