"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from aipp.api.deps import ServicesDep
from aipp.api.errors import error_body
from aipp.api.metrics import CONTENT_TYPE
from aipp.api.responses import errors
from aipp.api.schemas import Readiness

router = APIRouter(tags=["health"])
log = logging.getLogger("aipp.api")


@router.get(
    "/healthz",
    summary="The process is alive, and the release it runs (its image's asset hash)",
    responses=errors(),
)
async def healthz(services: ServicesDep) -> dict[str, str]:
    return {"status": "ok", "release": services.settings.app_release}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=errors(
        503,
        s503="`not_ready`: a dependency is unreachable; `checks` says which (no Retry-After)",
    ),
    summary="Database, Redis, S3 and the queue are reachable",
)
async def readyz(services: ServicesDep) -> JSONResponse:
    timeout = services.settings.dependency_timeout_seconds
    probes: dict[str, Callable[[], Awaitable[None]]] = {
        "database": services.db.ping,
        "redis": services.cache.ping,
        "s3": services.storage.ping,
        "queue": services.queue.ping,
    }

    async def probe(name: str, check: Callable[[], Awaitable[None]]) -> tuple[str, str]:
        try:
            await asyncio.wait_for(check(), timeout)
        except Exception as exc:  # any failure means "not ready", and says which
            log.warning("readiness check failed", extra={"dependency": name, "err": repr(exc)})
            return name, "unavailable"
        return name, "ok"

    checks = dict(await asyncio.gather(*(probe(n, c) for n, c in probes.items())))
    down = sorted(name for name, status in checks.items() if status != "ok")
    if down:
        body = error_body("not_ready", f"unavailable: {', '.join(down)}")
        body.update({"status": "unavailable", "checks": checks})
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "checks": checks})


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (text format)",
    responses=errors(),
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
