"""What the routes need from the request: the services, and the caller's authentication.

The /v1 routes call `authenticate(request)` first thing rather than declaring it as a FastAPI
dependency: resolving a dependency graph costs more CPU per request than reading a task from the
database does (`make bench-api-cpu`: a read went from 0.41 to 0.33 ms without it). The OpenAPI
document still lists both ways of sending the key on every /v1 operation (`KEY_REQUIRED`,
`SECURITY_SCHEMES`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from aipp.api.errors import ApiError
from aipp.api.services import Services
from aipp.core.db import Principal


async def get_services(request: Request) -> Services:
    """`async`, as every dependency here: FastAPI runs a plain `def` dependency in its thread
    pool, a hand-off between threads on every request."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "HTTPBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <API key>",
    },
    "APIKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "the API key",
    },
}
# `openapi_extra` of every operation that calls `authenticate`.
KEY_REQUIRED: dict[str, Any] = {"security": [{name: []} for name in SECURITY_SCHEMES]}


def api_key(request: Request) -> str | None:
    """`Authorization: Bearer <key>` (the scheme in any case), else `X-API-Key: <key>`."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    bearer = credentials if scheme.lower() == "bearer" else ""
    return (bearer or request.headers.get("x-api-key", "")).strip() or None


def client_address(request: Request) -> str:
    """The caller's address: the last X-Forwarded-For entry (the one the load balancer added;
    earlier ones are the client's word), else the peer."""
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded.strip():
        return forwarded.rsplit(",", 1)[-1].strip()
    return request.client.host if request.client else "unknown"


def _invalid_key() -> ApiError:
    return ApiError(401, "unauthorized", "the API key is not valid", {"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request) -> tuple[Principal, Services]:
    """The caller's tenant, after the API key check and the per-key rate limit; and the
    services.

    Unknown keys cost at most one database lookup per AIPP_AUTH_NEGATIVE_CACHE_SECONDS each, and
    at most AIPP_AUTH_FAILURES_PER_MINUTE lookups per client address: past that, 429.
    """
    services: Services = request.app.state.services
    key = api_key(request)
    if key is None or len(key) > 200:
        raise ApiError(
            401,
            "unauthorized",
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            {"WWW-Authenticate": "Bearer"},
        )
    known, principal = services.cached_principal(key)
    if known and principal is None:
        raise _invalid_key()
    if not known:
        client = client_address(request)
        budget = services.failure_budget(client, take=False)
        if not budget.allowed:
            services.metrics.auth_failures_limited.inc()
            raise ApiError(
                429,
                "rate_limited",
                "too many requests with an invalid API key from this address",
                {"Retry-After": str(budget.retry_after_seconds)},
            )
        principal = await services.principal(key)
        if principal is None:
            services.failure_budget(client, take=True)
            raise _invalid_key()
    assert principal is not None
    request.state.api_key_prefix = principal.prefix  # logged with the request, never the key
    settings = services.settings
    decision = await services.take_token(principal)
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {settings.rate_limit_per_minute} requests/minute exceeded",
            {"Retry-After": str(decision.retry_after_seconds)},
        )
    return principal, services
